"""Mouse-to-human transfer for the family BiLSTM, as scikit-learn estimators.

The source (mouse) cells are a constructor parameter, so `cross_validate` over human
folds works unchanged and mouse cells are never test cells. Each species is standardized
with its own statistics (mouse from all mouse cells, human from the human training
cells); features a species never measures are simply unobserved (masked), so human-only
families stay in the model. Methods:

- `finetune`: pretrain on mouse (aligned 4-class label), then on human train the head
  alone, then the whole network with the same recipe as human-only training.
- `joint`: a shared encoder with one head per species trained on both at once, then the
  whole network fine-tuned on human with the human-only recipe.
- `align`: `joint` plus a Deep CORAL penalty that matches the second-order statistics of
  mouse and human cell representations, with human cells seen through the features mouse
  has (so the penalty aligns physiology, not the pattern of measured families).
- `adversarial`: `joint` plus a domain-adversarial encoder (DANN): a discriminator tells
  mouse from human cell representations (human again in the mouse feature view) and the
  encoder learns through a reversed gradient to make them indistinguishable.
- `source_only`: the mouse model applied to human as it is (a reference, no human labels).

`source_init=True` starts the two-species methods from the mouse-pretrained network
(both heads from its head) instead of from random weights.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import pickle
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets.fetch import resolve_data_dir
from ..errors import Ephys2txError
from ..files import atomic_write
from ..version import __version__
from . import TRANSFER_METHODS
from .bilstm import (
    BiLSTMClassifier,
    FamilyAttentionNet,
    Recipe,
    as_torch,
    class_weights,
    drop_features,
    eval_loss,
    inner_splits,
    nn,
    torch,
    torch_determinism,
    train_stage,
)
from .family_tensors import FamilyLayout, FamilyTensors, Standardizer, to_tensors
from .network_params import NETWORK

METHODS = (*TRANSFER_METHODS, "source_only")
TWO_SPECIES = ("joint", "align", "adversarial")  # methods that train on both species at once
_PRETRAINED: OrderedDict[str, tuple[dict, Standardizer]] = OrderedDict()  # per-process cache
PRETRAINED_FOLDER = "pretrained-networks"  # in the data directory, beside the default models
# The code a pretrained network depends on: a change to it invalidates the stored networks.
_CODE_DIGEST = hashlib.sha256(
    b"".join((Path(__file__).parent / f).read_bytes() for f in ("bilstm.py", "family_tensors.py"))
    + Path(__file__).read_bytes()
).hexdigest()


def coral_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: squared Frobenius distance of the two batches' covariances / (4 d^2)."""
    d = a.shape[1]
    ca = torch.cov(a.T)
    cb = torch.cov(b.T)
    return ((ca - cb) ** 2).sum() / (4 * d * d)


class _ReverseGradient(torch.autograd.Function):
    """Identity forward, negated gradient backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return -grad


def domain_loss(
    discriminator: nn.Module, source_rep: torch.Tensor, target_rep: torch.Tensor
) -> torch.Tensor:
    """Discriminator's mouse-vs-human cross-entropy, seen by the encoder with reversed sign."""
    reps = _ReverseGradient.apply(torch.cat([source_rep, target_rep]))
    is_target = torch.cat([torch.zeros(len(source_rep)), torch.ones(len(target_rep))])
    return nn.functional.binary_cross_entropy_with_logits(
        discriminator(reps).squeeze(-1), is_target
    )


@dataclass(eq=False, repr=False)  # its parameters after the network's (`BiLSTMClassifier`)
class TransferClassifier(BiLSTMClassifier):
    """Human classifier that also learns from `source` (a mouse cell table with labels).

    Network and human-stage parameters are those of `BiLSTMClassifier`; `source_weight`
    weighs the mouse loss in joint training, `coral_weight` the alignment penalty,
    `head_epochs` bounds the head-only stage, `pretrain_batch_size` the mouse pretraining;
    `anchor` > 0 adds an L2-SP penalty towards the pretrained weights when fine-tuning;
    `adversarial_weight` weighs the domain loss; `source_init` starts two-species
    training from the mouse-pretrained network; `pretrain_cache` keeps the pretrained
    network on disk (see `stored_pretraining`): same numbers, pretrained once.
    """

    source: pd.DataFrame | None = None
    source_label: str = "label"
    method: str = "finetune"
    source_weight: float = 1.0
    coral_weight: float = 1.0
    head_epochs: int = NETWORK.head_epochs
    pretrain_batch_size: int = 128
    anchor: float = 0.0
    adversarial_weight: float = 0.3
    source_init: bool = False
    pretrain_cache: bool = True

    # -- source side -------------------------------------------------------------------
    def _source_table(self) -> tuple[pd.DataFrame, np.ndarray]:
        if self.source is None or not isinstance(self.source, pd.DataFrame):
            raise Ephys2txError(
                "transfer needs source cells: pass source=<mouse cell table> (build_cells('mouse'))"
            )
        if self.source_label not in self.source.columns:
            raise Ephys2txError(
                f"the source table has no label column {self.source_label!r}; "
                "use the aligned 4-class column 'label'"
            )
        labels = self.source[self.source_label]
        keep = labels.isin(self.classes_).to_numpy()
        if keep.sum() == 0:
            raise Ephys2txError(
                f"no source cell carries a target class ({', '.join(map(str, self.classes_))}); "
                "use the aligned label"
            )
        table = self.source.loc[keep]
        return table, np.searchsorted(self.classes_, labels[keep].to_numpy())

    def _source_groups(self, table: pd.DataFrame) -> np.ndarray | None:
        if self.groups_column and self.groups_column in table.columns:
            return table[self.groups_column].astype(str).to_numpy()
        return None

    def _pretrain_key(self, table: pd.DataFrame, codes: np.ndarray) -> str:
        digest = hashlib.sha256()
        cols = [c for c in self.layout_.all_columns if c in table.columns]
        digest.update(pd.util.hash_pandas_object(table[cols], index=False).to_numpy().tobytes())
        digest.update(codes.tobytes())
        digest.update(repr((self.layout_, list(self.classes_))).encode())
        keys = ("width", "hidden", "dropout", "lr", "weight_decay", "max_epochs", "patience")
        keys += ("feature_dropout", "validation_fraction", "scaling", "random_state")
        digest.update(repr([getattr(self, k) for k in keys] + [self.pretrain_batch_size]).encode())
        digest.update(f"{_CODE_DIGEST} {__version__} {torch.__version__} {self.n_threads}".encode())
        return digest.hexdigest()

    def _pretrain(self, table: pd.DataFrame, codes: np.ndarray) -> tuple[dict, Standardizer]:
        std = Standardizer(self.scaling).fit(self.layout_.matrix(table))
        data = to_tensors(table, self.layout_, std)
        train, val = inner_splits(
            codes, self._source_groups(table), self.validation_fraction, 1, self.random_state
        )[0]
        recipe = dataclasses.replace(self.recipe, batch_size=self.pretrain_batch_size)
        with torch_determinism(self.random_state, self.n_threads):
            net = self._new_net([len(self.classes_)])
            rng = np.random.default_rng(self.random_state)
            self._fit_supervised(net, data, codes, train, val, rng, 0, recipe)
        return copy.deepcopy(net.state_dict()), std

    def _pretrained(self, table: pd.DataFrame, codes: np.ndarray) -> FamilyAttentionNet:
        """The mouse-pretrained network. It never sees human cells, so every fold, share of
        donors and step reuses it: kept per process and, with `pretrain_cache`, on disk
        (the data directory), where parallel fold workers and later runs find it."""
        key = self._pretrain_key(table, codes)
        if key not in _PRETRAINED:
            if self.pretrain_cache:
                _PRETRAINED[key] = stored_pretraining(key, lambda: self._pretrain(table, codes))
            else:
                _PRETRAINED[key] = self._pretrain(table, codes)
            while len(_PRETRAINED) > 4:
                _PRETRAINED.popitem(last=False)
        state, std = _PRETRAINED[key]
        net = self._new_net([len(self.classes_)])
        net.load_state_dict(state)
        self.source_standardizer_ = std
        return net

    # -- fitting -----------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y, groups=None) -> TransferClassifier:
        if self.method not in METHODS:
            raise Ephys2txError(
                f"unknown transfer method {self.method!r}; choose one of: {', '.join(METHODS)}"
            )
        codes, groups = self._prepare(X, y, groups)
        src_table, src_codes = self._source_table()
        self.layout_ = FamilyLayout.from_table(
            pd.concat([X.iloc[:0], src_table.iloc[:0]], axis=1), self.families
        )
        self.feature_names_in_ = np.asarray(self.layout_.all_columns, dtype=object)
        self.standardizer_ = Standardizer(self.scaling).fit(self.layout_.matrix(X))
        data = to_tensors(X, self.layout_, self.standardizer_)
        splits = inner_splits(
            codes, groups, self.validation_fraction, self.n_members, self.random_state
        )
        self.head_ = 1 if self.method in TWO_SPECIES else 0
        pretrained = None
        if self.head_ == 0 or self.source_init:
            pretrained = self._pretrained(src_table, src_codes)
        else:
            self.source_standardizer_ = Standardizer(self.scaling).fit(
                self.layout_.matrix(src_table)
            )
        source = to_tensors(src_table, self.layout_, self.source_standardizer_)
        self.modules_, self.history_ = [], []
        for member, (train, val) in enumerate(splits):
            seed = self.random_state + member
            with torch_determinism(seed, self.n_threads):
                rng = np.random.default_rng(seed)
                if self.head_ == 0:
                    net = copy.deepcopy(pretrained)
                    history = self._finetune(net, data, codes, train, val, rng)
                else:
                    net = self._new_net([len(self.classes_), len(self.classes_)])
                    if pretrained is not None:
                        net.load_state_dict(_two_headed(pretrained.state_dict()))
                    history = self._joint(net, data, codes, train, val, source, src_codes, rng)
            net.eval()
            self.modules_.append(net)
            self.history_.append(history)
        return self

    def _finetune(self, net, data, codes, train, val, rng) -> dict:
        """Head alone, then the whole network with the human-only recipe."""
        if self.method == "source_only":
            return {}
        head_recipe = dataclasses.replace(
            self.recipe, max_epochs=self.head_epochs, patience=min(self.patience, 10)
        )
        head = self._fit_supervised(
            net, data, codes, train, val, rng, 0, head_recipe, net.heads.parameters()
        )
        penalty = None
        if self.anchor > 0:  # L2-SP: pull towards the mouse weights instead of towards zero
            start = [p.detach().clone() for p in net.parameters()]

            def penalty() -> torch.Tensor:
                return self.anchor * sum(
                    ((p - p0) ** 2).sum() for p, p0 in zip(net.parameters(), start, strict=True)
                )

        full = self._fit_supervised(net, data, codes, train, val, rng, 0, penalty=penalty)
        return {"head": head, "full": full}

    def _joint(self, net, data, codes, train, val, source, src_codes, rng) -> dict:
        """Both species at once (one head each), then human fine-tuning."""
        keep, k = self.source_standardizer_.known_, len(self.classes_)
        discriminator = None
        parameters = list(net.parameters())
        if self.method == "adversarial":
            width = net.heads[0].in_features
            discriminator = nn.Sequential(
                nn.Linear(width, width // 2), nn.GELU(), nn.Linear(width // 2, 1)
            )
            parameters += list(discriminator.parameters())
        batch_loss = self._joint_loss(
            net, data.take(train), codes[train], source, src_codes, keep, rng, discriminator
        )
        joint = train_stage(
            net,
            len(train),
            batch_loss,
            eval_loss(net, data.take(val), codes[val], class_weights(codes[train], k), 1)
            if len(val)
            else None,
            self.recipe,
            rng,
            parameters,
        )
        full = self._fit_supervised(net, data, codes, train, val, rng, 1)
        return {"joint": joint, "full": full}

    def _joint_loss(
        self,
        net: FamilyAttentionNet,
        target: FamilyTensors,
        y: np.ndarray,
        source: FamilyTensors,
        y_src: np.ndarray,
        keep: np.ndarray,
        rng: np.random.Generator,
        discriminator: nn.Module | None = None,
    ):
        """Human batch loss + weighted mouse batch loss (+ CORAL or a domain loss in the
        shared view)."""
        t_vals, t_obs, t_pres = as_torch(target)
        shared = as_torch(target.restricted(keep, self.layout_))
        s_vals, s_obs, s_pres = as_torch(source)
        t_y = torch.from_numpy(y.astype(np.int64))
        s_y = torch.from_numpy(y_src.astype(np.int64))
        t_loss = nn.CrossEntropyLoss(weight=class_weights(y, len(self.classes_)))
        s_loss = nn.CrossEntropyLoss(weight=class_weights(y_src, len(self.classes_)))
        order = {"perm": rng.permutation(len(source)), "at": 0}
        fd = self.feature_dropout

        def next_source(n: int) -> torch.Tensor:
            if order["at"] + n > len(order["perm"]):
                order["perm"], order["at"] = rng.permutation(len(source)), 0
            idx = order["perm"][order["at"] : order["at"] + n]
            order["at"] += n
            return torch.from_numpy(idx)

        def loss(idx: np.ndarray, gen: torch.Generator) -> torch.Tensor:
            t = torch.from_numpy(idx)
            s = next_source(len(idx))
            v, o = drop_features(t_vals[t], t_obs[t], fd, gen)
            logits, _ = net(v, o, t_pres[t], 1)
            total = t_loss(logits, t_y[t])
            v, o = drop_features(s_vals[s], s_obs[s], fd, gen)
            s_rep, _ = net.represent(v, o, s_pres[s])
            total = total + self.source_weight * s_loss(net.heads[0](net.drop(s_rep)), s_y[s])
            if self.method == "align" and self.coral_weight > 0:
                t_rep, _ = net.represent(shared[0][t], shared[1][t], shared[2][t])
                total = total + self.coral_weight * coral_loss(s_rep, t_rep)
            if discriminator is not None:
                t_rep, _ = net.represent(shared[0][t], shared[1][t], shared[2][t])
                domain = domain_loss(discriminator, s_rep, t_rep)
                total = total + self.adversarial_weight * domain
            return total

        return loss

    def _forward(self, data: FamilyTensors, head: int | None = None):
        return super()._forward(data, self.head_ if head is None else head)


def stored_pretraining(key: str, pretrain) -> tuple[dict, Standardizer]:
    """`pretrain()`'s result stored under `key` in the data directory: computed by the first
    process that asks (others wait for it rather than pretrain the same network again),
    read back by every later one. The key covers the mouse cells, the settings and the
    code, so a stored network is exactly the one `pretrain()` would give."""
    folder = resolve_data_dir() / PRETRAINED_FOLDER
    path = folder / f"{key[:32]}.pkl"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable data directory: pretrain here, as without the cache
        return pretrain()
    with _locked(folder / f"{key[:32]}.lock"):
        if path.is_file():
            try:
                with open(path, "rb") as handle:
                    return pickle.load(handle)
            except (OSError, EOFError, pickle.UnpicklingError):
                pass  # damaged: pretrain again and replace it
        result = pretrain()
        try:
            atomic_write(path, lambda tmp: tmp.write_bytes(pickle.dumps(result)))
        except OSError:  # cannot be cached: used all the same
            pass
        return result


@contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` across processes (none where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, at worst a network is pretrained twice
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _two_headed(state: dict) -> dict:
    """A one-head (mouse) state dict for a two-head net: the human head starts as mouse's."""
    state = dict(state)
    for key in [k for k in state if k.startswith("heads.0.")]:
        state["heads.1." + key.removeprefix("heads.0.")] = state[key].clone()
    return state


def make_transfer(source: pd.DataFrame, method: str = "finetune", **params) -> TransferClassifier:
    """A transfer estimator with `source` mouse cells (aligned 4-class label)."""
    return TransferClassifier(source=source, source_label="label", method=method, **params)


__all__ = [
    "METHODS",
    "TWO_SPECIES",
    "TransferClassifier",
    "coral_loss",
    "domain_loss",
    "make_transfer",
    "Recipe",
]
