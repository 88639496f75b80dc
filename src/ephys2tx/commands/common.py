"""Options and helpers every command group shares.

Every command declares its options as `Annotated` aliases; those used by more than one
command are declared here once, with the checks they need (a `callback` runs the check
while the command line is parsed, so no command body repeats it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from ..console import console
from ..datasets.cells import build_cells, read_id_list
from ..errors import Ephys2txError
from ..files import check_writable_folder
from ..models import TRANSFER_METHODS
from ..schema import DEFAULT_LABEL, check_label, check_species
from ..trust.conformal import check_alpha

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data directory (default: $EPHYS2TX_DATA_DIR or the user cache)."
    ),
]
Mirror = Annotated[
    str | None,
    typer.Option("--mirror", help="Local folder or base URL holding the same files (offline use)."),
]


def _check_species(value: str | None) -> str | None:
    return None if value is None else check_species(value)


Species = Annotated[str, typer.Option("--species", help="mouse or human.", callback=_check_species)]
FileSpecies = Annotated[
    str | None,
    typer.Option(
        "--species", help="mouse or human (default: as the file says).", callback=_check_species
    ),
]


def check_out_folder(value: Path) -> Path:
    """--out of a command writing several files: a writable folder (created), checked first."""
    return check_writable_folder(value, f"--out {value}")


OutDir = Annotated[Path, typer.Option("--out", help="Output directory.", callback=check_out_folder)]
ModelDir = Annotated[Path, typer.Option("--out", help="Model directory to write.")]
Labels = Annotated[
    str | None,
    typer.Option("--labels", help="label (aligned 4-class) or label5 (mouse 5-class)."),
]
ExcludeIds = Annotated[
    Path | None,
    typer.Option(
        "--exclude-ids",
        help="Specimen ids to leave out of training: one per line, or a specimen_id column.",
    ),
]
AllowUnknownIds = Annotated[
    bool,
    typer.Option(
        "--allow-unknown-ids", help="Go on when --exclude-ids lists ids that match no cell."
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a model already in --out.")]
# numpy and scikit-learn take seeds in [0, 2**32 - 1]
SEED_MAX = 2**32 - 1


def check_seed(value: int) -> int:
    """--seed: a whole number numpy and scikit-learn accept, checked before any work."""
    if not 0 <= value <= SEED_MAX:
        raise Ephys2txError(f"--seed {value} is out of range; give a number from 0 to {SEED_MAX}")
    return value


Seed = Annotated[int, typer.Option("--seed", help="Random seed.", callback=check_seed)]
Protocol = Annotated[
    str,
    typer.Option(
        "--protocol", help="grouped (donor-grouped K-fold) or seed (the published study's)."
    ),
]
Repeats = Annotated[int, typer.Option("--repeats", min=1, help="Repeats of the fold split.")]
Folds = Annotated[int, typer.Option("--folds", min=2, help="Number of folds.")]


def check_jobs(value: int) -> int:
    """--jobs: a positive count, or -1 for one per core (joblib's 0 means nothing)."""
    if value == 0 or value < -1:
        raise Ephys2txError(f"--jobs {value}: give a positive number, or -1 for one per core")
    return value


Jobs = Annotated[
    int,
    typer.Option(
        "--jobs",
        help="Networks fitted at once, one fold each (-1 = all cores).",
        callback=check_jobs,
    ),
]


def training_cells(
    species: str,
    labels: str | None,
    exclude_ids: Path | None = None,
    data_dir: Path | None = None,
    mirror: str | None = None,
    allow_unknown_ids: bool = False,
) -> tuple[pd.DataFrame, str]:
    """A species' harmonized cells that carry the chosen label, minus excluded specimens."""
    species = check_species(species)
    label = check_label(species, labels or DEFAULT_LABEL[species])
    cells, _ = build_cells(species, data_dir, mirror)
    cells = cells[cells[label].notna()].reset_index(drop=True)
    if exclude_ids is not None:
        (cells,) = exclude_specimens([cells], exclude_ids, allow_unknown_ids)
    return cells, label


def exclude_specimens(
    tables: list[pd.DataFrame], exclude_ids: Path, allow_unknown_ids: bool = False
) -> list[pd.DataFrame]:
    """Drop listed specimens from every table; ids matching no table are an error by default.

    Prints how many ids were read and how many matched, so a misread list is seen at once.
    """
    listed = read_id_list(exclude_ids)
    wanted = set(listed)
    present = set().union(*(set(t["specimen_id"].astype("int64")) for t in tables))
    unknown = sorted(wanted - present)
    console.print(
        f"--exclude-ids {exclude_ids}: read {len(listed)} ids ({len(wanted)} distinct), "
        f"{len(wanted) - len(unknown)} match training cells"
    )
    if unknown and not allow_unknown_ids:
        shown = ", ".join(map(str, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
        raise Ephys2txError(
            f"--exclude-ids {exclude_ids}: {len(unknown)} id(s) match no training cell ({shown}); "
            "fix the list, or pass --allow-unknown-ids to ignore them"
        )
    out = []
    for table in tables:
        kept = table[~table["specimen_id"].astype("int64").isin(wanted)].reset_index(drop=True)
        console.print(
            f"left out {len(table) - len(kept)} of {len(table)} {', '.join(table['species'].unique())}"
            " cells"
        )
        if kept.empty:
            raise Ephys2txError(f"--exclude-ids {exclude_ids} leaves no cells to train on")
        out.append(kept)
    return out


def check_out_dir(out: Path, overwrite: bool = False) -> None:
    """Refuse, before any training, an --out that is a file or already holds a model."""
    from ..models.bundle import META_FILE, MODEL_FILE

    if out.exists() and not out.is_dir():
        raise Ephys2txError(f"--out {out} is an existing file; give a folder for the model")
    if out.is_dir() and not overwrite:
        if (out / META_FILE).exists() or (out / MODEL_FILE).exists():
            raise Ephys2txError(
                f"--out {out} already holds a model; pass --overwrite to replace it, "
                "or choose another folder"
            )
    check_writable_folder(out, f"--out {out}")


def print_f1(model: str, species: str, label: str, protocol: str, metrics: dict, out: Path) -> None:
    """One line: a model's macro-F1 with its interval, and where its metrics.json is."""
    f1 = metrics["macro_f1"]
    console.print(
        f"{model} {species} {label} ({protocol}): macro-F1 {f1['mean']:.3f} ± {f1['sd']:.3f} "
        f"(95% CI {f1['ci95'][0]:.3f}–{f1['ci95'][1]:.3f}); wrote {out}/metrics.json"
    )


Calibrate = Annotated[
    bool,
    typer.Option(
        "--calibrate/--no-calibrate",
        help="Store donor-grouped out-of-fold conformal scores (5 more fits).",
    ),
]


TrustOption = Annotated[
    bool,
    typer.Option(
        "--trust/--no-trust",
        help="Also measure coverage, set size, confident calls and ECE, with the calibration "
        "nested in each outer training fold (5 more fits per fold).",
    ),
]


Alpha = Annotated[
    float,
    typer.Option(
        "--alpha", help="Miss rate of the prediction sets, in (0, 1).", callback=check_alpha
    ),
]


def print_trust(summary: dict, out: Path) -> None:
    """One line: coverage, set size, confident calls and ECE of a nested evaluation."""
    per_class = ", ".join(f"{k} {v:.2f}" for k, v in summary["coverage_per_class"].items())
    acc = summary["confident_accuracy"]
    console.print(
        f"alpha {summary['alpha']:g}: coverage {summary['coverage']:.3f} ({per_class}); "
        f"mean set size {summary['mean_set_size']:.2f}; confident "
        f"{summary['share_confident']:.1%} of cells, accuracy "
        f"{'n/a' if acc is None else f'{acc:.3f}'}; ECE {summary['ece']:.3f} "
        f"(unscaled {summary['ece_unscaled']:.3f}); wrote {out}/trust.json",
    )


Members = Annotated[
    int,
    typer.Option("--members", min=1, help="Networks averaged, each early-stopped on other donors."),
]


NestedTrust = Annotated[
    bool,
    typer.Option(
        "--trust/--no-trust",
        help="Also measure coverage, set size, confident calls and ECE with calibration nested "
        "in each outer fold (refits the networks: 6x the time).",
    ),
]


def one_of(method: str, allowed: tuple[str, ...]) -> str:
    if method not in allowed:
        raise Ephys2txError(f"unknown --method {method!r}; choose one of: {', '.join(allowed)}")
    return method


def check_method(method: str) -> str:
    """--method is a transfer method (checked while the command line is parsed)."""
    return one_of(method, TRANSFER_METHODS)


def check_method_or_all(method: str) -> str:
    """--method is a transfer method or `all`."""
    return one_of(method, ("all", *TRANSFER_METHODS))


Method = Annotated[
    str,
    typer.Option("--method", help=", ".join(TRANSFER_METHODS) + ".", callback=check_method),
]


MethodOrAll = Annotated[
    str,
    typer.Option(
        "--method",
        help=", ".join(TRANSFER_METHODS) + " or all (compare them).",
        callback=check_method_or_all,
    ),
]


OLD_MODEL_NAMES = {"reference": "hierarchical"}  # 0.2 names: hidden aliases, old scripts work


def add_model_commands(group: typer.Typer, *commands) -> None:
    """Add one command per model kind to a verb's group (`train_rf` becomes `train rf`), with
    the hidden aliases of `OLD_MODEL_NAMES`."""
    by_kind = {command.__name__.split("_", 1)[1]: command for command in commands}
    for kind, command in by_kind.items():
        group.command(kind)(command)
    for old, kind in OLD_MODEL_NAMES.items():
        group.command(old, hidden=True)(by_kind[kind])
