"""Attention BiLSTM over feature families: one token per family, missing families masked.

Each family has its own encoder to a common width (linear over [values, observed mask]
for scalar families, a small 1-D convolution for vector families). A family with no
observed value is replaced by a learned "missing" embedding for the BiLSTM and gets zero
attention weight, so its (imputed) values can never reach the prediction.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedGroupKFold

from ..errors import Ephys2txError, import_extra
from .family_tensors import FamilyLayout, FamilyTensors, Standardizer, to_tensors
from .network_params import NETWORK

# torch comes with the `nn` extra; a core install predicts with the default model without it
torch = import_extra("torch", "nn", "training or loading a network")
nn = torch.nn


class FamilyEncoder(nn.Module):
    """One family's [values, observed] to a token of width `width`."""

    def __init__(self, n_features: int, length: int, width: int, dropout: float):
        super().__init__()
        self.is_vector = length > 0
        if self.is_vector:
            self.net = nn.Sequential(
                nn.Conv1d(2, 8, kernel_size=7, stride=3, padding=3),
                nn.GELU(),
                nn.AdaptiveAvgPool1d(8),
                nn.Flatten(),
                nn.Linear(64, width),
            )
        else:
            self.net = nn.Sequential(nn.Linear(2 * n_features, width), nn.GELU())
        self.drop = nn.Dropout(dropout)

    def forward(self, values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        if self.is_vector:
            return self.drop(self.net(torch.stack([values, observed], dim=1)))
        return self.drop(self.net(torch.cat([values, observed], dim=1)))


class FamilyAttentionNet(nn.Module):
    """Family encoders -> BiLSTM over family tokens -> masked additive attention -> heads."""

    def __init__(
        self,
        layout: FamilyLayout,
        n_classes: list[int],
        width: int = 32,
        hidden: int = 32,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.slices = layout.slices
        self.encoders = nn.ModuleList(
            FamilyEncoder(b - a, length, width, dropout)
            for (a, b), length in zip(self.slices, layout.lengths, strict=True)
        )
        n_fam = len(self.slices)
        self.identity = nn.Parameter(0.1 * torch.randn(n_fam, width))
        self.missing = nn.Parameter(0.1 * torch.randn(n_fam, width))
        self.lstm = nn.LSTM(width, hidden, batch_first=True, bidirectional=True)
        self.att_proj = nn.Linear(2 * hidden, hidden)
        self.att_score = nn.Linear(hidden, 1, bias=False)
        self.drop = nn.Dropout(dropout)
        self.heads = nn.ModuleList(nn.Linear(2 * hidden, k) for k in n_classes)

    def represent(
        self, values: torch.Tensor, observed: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell representation (n, 2*hidden) and attention weights (n, families)."""
        tokens = []
        for f, ((a, b), enc) in enumerate(zip(self.slices, self.encoders, strict=True)):
            encoded = enc(values[:, a:b], observed[:, a:b])
            # absent family: the learned missing embedding, never its imputed values
            token = torch.where(present[:, f : f + 1], encoded, self.missing[f].expand_as(encoded))
            tokens.append(token + self.identity[f])
        states, _ = self.lstm(torch.stack(tokens, dim=1))
        scores = self.att_score(torch.tanh(self.att_proj(states))).squeeze(-1)
        # a cell with no family at all attends uniformly instead of producing NaN
        mask = present | ~present.any(dim=1, keepdim=True)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        return (weights.unsqueeze(-1) * states).sum(dim=1), weights

    def forward(
        self, values: torch.Tensor, observed: torch.Tensor, present: torch.Tensor, head: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rep, weights = self.represent(values, observed, present)
        return self.heads[head](self.drop(rep)), weights


def as_torch(data: FamilyTensors) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(data.values),
        torch.from_numpy(data.observed),
        torch.from_numpy(np.ascontiguousarray(data.present)),
    )


def drop_features(
    values: torch.Tensor, observed: torch.Tensor, rate: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmentation: hide a random share of observed features, as if unmeasured."""
    if rate <= 0:
        return values, observed
    keep = (torch.rand(observed.shape, generator=generator) >= rate).float()
    observed = observed * keep
    return values * observed, observed


@contextmanager
def torch_determinism(seed: int, n_threads: int) -> Iterator[None]:
    """Seeded, single-process, deterministic torch; global settings restored afterwards."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(n_threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Balanced weights n / (k * count); a class absent from training gets weight 0."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    w = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


@dataclass
class Recipe:
    """One training stage: optimizer, schedule and early stopping."""

    lr: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    patience: int
    feature_dropout: float


def train_stage(
    net: nn.Module,
    n_train: int,
    batch_loss: Callable[[np.ndarray, torch.Generator], torch.Tensor],
    val_loss: Callable[[], float] | None,
    recipe: Recipe,
    rng: np.random.Generator,
    parameters=None,
) -> dict:
    """Mini-batch AdamW with early stopping on `val_loss`; restores the best weights."""
    params = [p for p in (parameters if parameters is not None else net.parameters())]
    # foreach: one kernel per step for all ~50 small tensors, not one each; the same
    # weights bit for bit as the per-tensor loop on CPU (checked), faster fits (docs/development.md)
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, foreach=True)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    best, best_epoch, best_state, waited = np.inf, 0, None, 0
    history = []
    for epoch in range(recipe.max_epochs):
        net.train()
        order = rng.permutation(n_train)
        for start in range(0, n_train, recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            if len(idx) < 2:
                continue
            opt.zero_grad()
            batch_loss(idx, gen).backward()
            opt.step()
        if val_loss is None:
            continue
        net.eval()
        with torch.no_grad():
            loss = float(val_loss())
        history.append(loss)
        if loss < best - 1e-4:
            best, best_epoch, waited = loss, epoch + 1, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            waited += 1
            if waited >= recipe.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    else:
        best_epoch = recipe.max_epochs
    return {"best_epoch": best_epoch, "best_val_loss": float(best), "val_loss": history}


def inner_splits(
    y: np.ndarray, groups: np.ndarray | None, fraction: float, n_splits: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n_splits` (train, validation) row splits, grouped by donor like the test folds.

    The validation parts are disjoint folds of one stratified group K-fold with
    K = round(1 / fraction), so ensemble members together validate on different donors.
    """
    idx = np.arange(len(y))
    if groups is None:
        groups = idx  # no donors given: each cell its own group
    k = min(max(2, int(round(1 / fraction))) if fraction > 0 else 0, len(np.unique(groups)))
    if k < 2:
        return [(idx, idx[:0])] * n_splits
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # small training sets: a rare class misses some folds
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        splits = list(splitter.split(idx, y, groups))
    return [splits[i % k] for i in range(n_splits)]


def supervised_loss(
    net: FamilyAttentionNet,
    data: FamilyTensors,
    y: np.ndarray,
    weights: torch.Tensor,
    head: int,
    feature_dropout: float,
) -> Callable[[np.ndarray, torch.Generator], torch.Tensor]:
    """Class-weighted cross-entropy on a batch of rows of `data`."""
    values, observed, present = as_torch(data)
    target = torch.from_numpy(y.astype(np.int64))
    loss_fn = nn.CrossEntropyLoss(weight=weights)

    def loss(idx: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        t = torch.from_numpy(idx)
        v, o = drop_features(values[t], observed[t], feature_dropout, gen)
        logits, _ = net(v, o, present[t], head)
        return loss_fn(logits, target[t])

    return loss


def eval_loss(
    net: FamilyAttentionNet, data: FamilyTensors, y: np.ndarray, weights: torch.Tensor, head: int
) -> Callable[[], float]:
    values, observed, present = as_torch(data)
    target = torch.from_numpy(y.astype(np.int64))
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    return lambda: float(loss_fn(net(values, observed, present, head)[0], target))


@dataclass(eq=False, repr=False)  # the parameters as fields: scikit-learn's __init__, written once
class BiLSTMClassifier(ClassifierMixin, BaseEstimator):
    """scikit-learn classifier over a cell table's feature families.

    `fit(X, y)` takes a DataFrame with canonical feature columns (and optional vector
    columns `<family>__<i>`); when X carries `groups_column` (default "donor") the inner
    early-stopping split is grouped by it, so `cross_validate` can pass the whole table.
    `n_members` networks, each early-stopped on a different donor-grouped validation
    fold, are averaged: every training cell is used, and small data gets less variance.
    """

    width: int = NETWORK.width
    hidden: int = NETWORK.hidden
    dropout: float = 0.3
    lr: float = NETWORK.lr
    weight_decay: float = 0.05
    batch_size: int = 64
    max_epochs: int = NETWORK.max_epochs
    patience: int = 40
    feature_dropout: float = 0.1
    validation_fraction: float = NETWORK.validation_fraction
    n_members: int = 1
    scaling: str = "quantile"
    families: tuple[str, ...] | None = None
    groups_column: str | None = "donor"
    random_state: int = 0
    n_threads: int = 1

    # -- helpers shared with the transfer estimators ---------------------------------
    @property
    def recipe(self) -> Recipe:
        return Recipe(
            self.lr,
            self.weight_decay,
            self.batch_size,
            self.max_epochs,
            self.patience,
            self.feature_dropout,
        )

    def _groups(self, X: pd.DataFrame, groups) -> np.ndarray | None:
        if groups is not None:
            return np.asarray(groups).astype(str)
        if self.groups_column and self.groups_column in X.columns:
            return X[self.groups_column].astype(str).to_numpy()
        return None

    def _encode_labels(self, y) -> np.ndarray:
        y = np.asarray(y)
        if pd.isna(y).any():
            raise Ephys2txError("training labels contain missing values; drop unlabelled cells")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise Ephys2txError("training needs at least two classes; check the label column")
        return np.searchsorted(self.classes_, y)

    def _new_net(self, n_classes: list[int]) -> FamilyAttentionNet:
        return FamilyAttentionNet(self.layout_, n_classes, self.width, self.hidden, self.dropout)

    def _prepare(self, X: pd.DataFrame, y, groups) -> tuple[np.ndarray, np.ndarray | None]:
        if not isinstance(X, pd.DataFrame):
            raise Ephys2txError(
                f"{type(self).__name__} needs a DataFrame with named feature columns"
            )
        codes = self._encode_labels(y)
        self.layout_ = FamilyLayout.from_table(X, self.families)
        self.feature_names_in_ = np.asarray(self.layout_.all_columns, dtype=object)
        return codes, self._groups(X, groups)

    def _fit_supervised(
        self,
        net: FamilyAttentionNet,
        data: FamilyTensors,
        codes: np.ndarray,
        train: np.ndarray,
        val: np.ndarray,
        rng: np.random.Generator,
        head: int = 0,
        recipe: Recipe | None = None,
        parameters=None,
        penalty: Callable[[], torch.Tensor] | None = None,
    ) -> dict:
        """One early-stopped stage of class-weighted training of `net` on rows `train`."""
        recipe = recipe or self.recipe
        weights = class_weights(codes[train], len(self.classes_))
        loss = supervised_loss(
            net, data.take(train), codes[train], weights, head, recipe.feature_dropout
        )
        if penalty is not None:
            base = loss

            def loss(idx: np.ndarray, gen: torch.Generator) -> torch.Tensor:
                return base(idx, gen) + penalty()

        return train_stage(
            net,
            len(train),
            loss,
            eval_loss(net, data.take(val), codes[val], weights, head) if len(val) else None,
            recipe,
            rng,
            parameters,
        )

    # -- scikit-learn API --------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y, groups=None) -> BiLSTMClassifier:
        codes, groups = self._prepare(X, y, groups)
        # scaling is unsupervised, so one standardizer serves every member
        self.standardizer_ = Standardizer(self.scaling).fit(self.layout_.matrix(X))
        data = to_tensors(X, self.layout_, self.standardizer_)
        splits = inner_splits(
            codes, groups, self.validation_fraction, self.n_members, self.random_state
        )
        self.modules_, self.history_ = [], []
        for member, (train, val) in enumerate(splits):
            seed = self.random_state + member
            with torch_determinism(seed, self.n_threads):
                net = self._new_net([len(self.classes_)])
                rng = np.random.default_rng(seed)
                self.history_.append(self._fit_supervised(net, data, codes, train, val, rng))
            net.eval()
            self.modules_.append(net)
        return self

    def _tensors(self, X: pd.DataFrame) -> FamilyTensors:
        if not hasattr(self, "modules_"):
            raise Ephys2txError("this model is not fitted yet; call fit or load a trained model")
        if not isinstance(X, pd.DataFrame):
            raise Ephys2txError("prediction needs a DataFrame with named feature columns")
        return to_tensors(X, self.layout_, self.standardizer_)

    def _forward(self, data: FamilyTensors, head: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Member-averaged class probabilities and attention weights."""
        probs, weights = [], []
        with torch.no_grad():
            for net in self.modules_:
                net.eval()
                logits, att = net(*as_torch(data), head)
                probs.append(torch.softmax(logits, dim=1).numpy())
                weights.append(att.numpy())
        return np.mean(probs, axis=0), np.mean(weights, axis=0)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self._forward(self._tensors(X))[0]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        proba = self.predict_proba(X)  # checks fitted before classes_ is read
        return self.classes_[proba.argmax(axis=1)]

    def used_features(self) -> list[str]:
        """Columns the fitted model reads (features seen in training); others are ignored."""
        cols = self.layout_.all_columns
        return [c for c, known in zip(cols, self.standardizer_.known_, strict=True) if known]

    def card_extra(self) -> dict:
        """Standardization statistics and training history for the model card."""
        std = self.standardizer_
        stats = {}
        for j, name in enumerate(self.layout_.all_columns):
            if std.known_[j] and std.method == "quantile":
                q = std.quantiles_[:, j]
                n = len(q) - 1
                stats[name] = {"q05": q[n // 20], "median": q[n // 2], "q95": q[n - n // 20]}
            elif std.known_[j]:
                stats[name] = {"center": std.center_[j], "scale": std.scale_[j]}
        return {
            "scaling": std.method,
            "standardization": stats,
            "family_order": list(self.layout_.names),
            "best_epochs": [_best_epochs(h) for h in self.history_],
        }

    # -- saving: weights as tensors, the rest through skops (models/bundle.py) ----------
    def network_weights(self) -> list[dict[str, torch.Tensor]]:
        """One state_dict per member network, for `torch.save` (read back weights-only)."""
        if not hasattr(self, "modules_"):
            raise Ephys2txError("this model is not fitted yet; call fit before saving it")
        return [net.state_dict() for net in self.modules_]

    def without_networks(self) -> BiLSTMClassifier:
        """A shallow copy without the networks, the training history or any source table:
        what the model file holds beside the weights."""
        shell = copy.copy(self)
        shell.modules_, shell.history_ = [], []
        if "source" in shell.__dict__:  # transfer: the mouse table is not needed to predict
            shell.source = None
        return shell

    def load_networks(self, weights: list[dict[str, torch.Tensor]]) -> None:
        """Rebuild the member networks from their state_dicts (head sizes from the weights)."""
        self.modules_ = []
        for state in weights:
            heads = sorted(k for k in state if k.startswith("heads.") and k.endswith(".weight"))
            net = self._new_net([int(state[k].shape[0]) for k in heads])
            net.load_state_dict(state)
            net.eval()
            self.modules_.append(net)

    def attention(self, X: pd.DataFrame) -> pd.DataFrame:
        """Attention weight of each family for each cell (rows sum to 1; absent = 0)."""
        weights = self._forward(self._tensors(X))[1]
        return pd.DataFrame(weights, index=X.index, columns=list(self.layout_.names))


def _best_epochs(history: dict) -> dict | int:
    """The early-stopping epoch of each training stage in a member's history."""
    if "best_epoch" in history:
        return int(history["best_epoch"])
    return {stage: int(h["best_epoch"]) for stage, h in history.items() if "best_epoch" in h}
