"""`embed`: UMAP of the per-family sPCA space, with silhouette scores."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..console import console
from ..datasets.cells import (
    usable_features,
)
from .common import (
    DataDir,
    Labels,
    Mirror,
    OutDir,
    Seed,
    training_cells,
)


def embed(
    species: Annotated[str, typer.Argument(help="mouse or human")],
    out: OutDir,
    labels: Labels = None,
    seed: Seed = 0,
    data_dir: DataDir = None,
    mirror: Mirror = None,
) -> None:
    """UMAP of the per-family sPCA space coloured by subclass, plus silhouette scores."""
    from ..report.figures import embedding_png
    from ..representations.embedding import embed_cells

    table, label = training_cells(species, labels, data_dir=data_dir, mirror=mirror)
    with console.status("sparse PCA per family, then UMAP"):
        result = embed_cells(table, usable_features(table), label, seed)
    out.mkdir(parents=True, exist_ok=True)
    png = embedding_png(result.coords, out / f"umap_{species}.png", f"{species}: sPCA → UMAP")
    payload = {"species": species, "label": label, **result.summary()}
    (out / f"silhouette_{species}.json").write_text(json.dumps(payload, indent=2))
    result.coords.to_csv(out / f"umap_{species}.csv", index=False)
    console.print(f"silhouette per class: {result.silhouette}")
    console.print(f"wrote {png}")


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add this verb's commands to the CLI."""
    app.command()(embed)
