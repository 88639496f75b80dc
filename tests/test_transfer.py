"""Mouse-to-human transfer estimators on small real subsets, and the study's bookkeeping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from ephys2tx.errors import Ephys2txError
from ephys2tx.evaluation.crossval import cross_validate
from ephys2tx.evaluation.splits import DonorKFold
from ephys2tx.evaluation.transfer_study import run_transfer_study
from ephys2tx.models.transfer import TransferClassifier, coral_loss, domain_loss

TINY = dict(width=8, hidden=8, max_epochs=3, patience=2, head_epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def mouse_small(mouse_cells):
    return pd.concat(g.head(60) for _, g in mouse_cells.groupby("label")).reset_index(drop=True)


@pytest.fixture(scope="module")
def human_small(human_cells):
    return pd.concat(g.head(30) for _, g in human_cells.groupby("label")).reset_index(drop=True)


def test_coral_loss_is_zero_only_for_matching_covariances():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, 6, generator=gen)
    assert float(coral_loss(a, a)) == 0.0
    assert float(coral_loss(a, 3 * a)) > 0.0


def test_domain_loss_reverses_the_gradient_for_the_encoder():
    gen = torch.Generator().manual_seed(0)
    discriminator = torch.nn.Linear(4, 1)
    source = torch.randn(16, 4, generator=gen, requires_grad=True)
    target = torch.randn(16, 4, generator=gen) + 2.0
    loss = domain_loss(discriminator, source, target)
    loss.backward()
    # the discriminator descends the loss; the representation gets the opposite gradient
    (w,) = torch.autograd.grad(
        torch.nn.functional.binary_cross_entropy_with_logits(
            discriminator(source).squeeze(-1), torch.zeros(16)
        )
        / 2,
        source,
    )
    np.testing.assert_allclose(source.grad.numpy(), -w.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("method", "source_init"),
    [("finetune", False), ("joint", False), ("align", False), ("adversarial", True)],
)
def test_tiny_transfer_fit(method, source_init, mouse_small, human_small):
    y = human_small["label"].to_numpy()
    params = dict(method=method, source_init=source_init, **TINY)
    model = TransferClassifier(source=mouse_small, **params).fit(human_small, y)
    proba = model.predict_proba(human_small)
    assert proba.shape == (len(human_small), 4)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert list(model.classes_) == sorted(set(y))
    # human-only families stay in the model although mouse never measures them
    assert "peak_freq_chirp" in model.used_features()
    assert not model.source_standardizer_.known_[model.layout_.all_columns.index("peak_freq_chirp")]
    attention = model.attention(human_small)
    assert np.allclose(attention.sum(axis=1), 1.0, atol=1e-5)
    again = TransferClassifier(source=mouse_small, **params).fit(human_small, y)
    np.testing.assert_array_equal(proba, again.predict_proba(human_small))


def test_transfer_clones_and_cross_validates_on_human_folds(mouse_small, human_small):
    model = TransferClassifier(source=mouse_small, method="finetune", **TINY)
    copy = clone(model)
    assert copy.get_params()["method"] == "finetune"
    assert copy.source.shape == mouse_small.shape
    folds = DonorKFold(5, 1).cell_folds(human_small, "label")[:2]
    result = cross_validate(model, human_small, "label", folds, progress=False)
    # only human cells are ever scored
    assert set(result.predictions["specimen_id"]) <= set(human_small["specimen_id"])
    assert not set(result.predictions["specimen_id"]) & set(mouse_small["specimen_id"])


@pytest.mark.slow
def test_study_learning_curve_and_paired_differences(mouse_small, human_small, tmp_path):
    import json

    from ephys2tx.models.bilstm import BiLSTMClassifier
    from ephys2tx.study.outputs import write_study

    folds = DonorKFold(5, 1).cell_folds(human_small, "label")[:2]
    variants = {
        "bilstm_human": BiLSTMClassifier(width=8, hidden=8, max_epochs=2, patience=1),
        "transfer_finetune": TransferClassifier(source=mouse_small, **TINY),
    }
    study = run_transfer_study(human_small, variants, folds, (0.5, 1.0), progress=False)
    # every network fit of every share in one pool of 2 workers: the same results, same order
    pooled = run_transfer_study(human_small, variants, folds, (0.5, 1.0), progress=False, n_jobs=2)
    assert (
        list(pooled.results)
        == list(study.results)
        == [(name, share) for share in (0.5, 1.0) for name in variants]
    )
    for key, result in study.results.items():
        pd.testing.assert_frame_equal(result.predictions, pooled.results[key].predictions)
    curve = study.learning_curve()
    assert len(curve) == 4 and curve["n"].eq(2).all()
    paired = study.paired()
    assert paired["variant"].eq("transfer_finetune").all() and len(paired) == 2
    # the same test cells at every fraction
    p50 = study.results[("bilstm_human", 0.5)].predictions["specimen_id"]
    p100 = study.results[("bilstm_human", 1.0)].predictions["specimen_id"]
    assert sorted(p50) == sorted(p100)
    assert set(study.attention) == set(variants)
    write_study(study, tmp_path, {"protocol": "grouped"})
    for name in variants:  # each variant's metrics at the full share, counts from its folds
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert (metrics["n_folds"], metrics["n_repeats"], metrics["fraction"]) == (2, 1, 1.0)


def test_transfer_without_source_is_a_clear_error(human_small):
    with pytest.raises(Ephys2txError, match="source"):
        TransferClassifier(**TINY).fit(human_small, human_small["label"].to_numpy())
    with pytest.raises(Ephys2txError, match="method"):
        TransferClassifier(source=human_small, method="magic").fit(
            human_small, human_small["label"].to_numpy()
        )


def test_folds_in_parallel_give_the_same_predictions_and_attention(mouse_small, human_small):
    from ephys2tx.evaluation.transfer_study import cross_validate_attention

    folds = DonorKFold(5, 1).cell_folds(human_small, "label")[:2]
    model = TransferClassifier(source=mouse_small, method="align", **TINY)
    serial, att_serial = cross_validate_attention(
        model, human_small, "label", folds, progress=False
    )
    parallel, att_parallel = cross_validate_attention(
        model, human_small, "label", folds, progress=False, n_jobs=2
    )
    pd.testing.assert_frame_equal(serial.predictions, parallel.predictions)
    pd.testing.assert_frame_equal(att_serial, att_parallel)
    assert len(att_serial) == sum(len(f.test) for f in folds)


def test_pretraining_is_stored_once_and_gives_the_same_numbers(
    mouse_small, human_small, monkeypatch
):
    from ephys2tx.models import transfer

    calls = []
    real = TransferClassifier._pretrain

    def counted(self, *args):
        calls.append(1)
        return real(self, *args)

    monkeypatch.setattr(TransferClassifier, "_pretrain", counted)
    y = human_small["label"].to_numpy()
    params = dict(method="finetune", random_state=7, **TINY)  # a key no other test stores

    def fit(**extra):
        transfer._PRETRAINED.clear()  # as in a new process: only the stored network is left
        model = TransferClassifier(source=mouse_small, **params, **extra).fit(human_small, y)
        return model.predict_proba(human_small)

    first = fit()
    second = fit()
    assert calls == [1]  # the second fit read the stored network
    np.testing.assert_array_equal(first, second)
    third = fit(pretrain_cache=False)  # pretrained again: the same network, the same numbers
    assert calls == [1, 1]
    np.testing.assert_array_equal(first, third)
