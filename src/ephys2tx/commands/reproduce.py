"""`reproduce`: the whole study into results.json and a self-contained report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DataDir, Mirror, Seed, check_jobs, console


def reproduce(
    out: Annotated[Path, typer.Option("--out", help="Output directory (reused on rerun).")] = Path(
        "results"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="Fewer repeats, smaller models (minutes).")
    ] = False,
    seed: Seed = 0,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            callback=check_jobs,
            help="Steps run at once, one core each (-1 = one per core; 1 = one at a time).",
        ),
    ] = -1,
    update_readme: Annotated[
        Path | None,
        typer.Option("--update-readme", help="Write the headline results table into this README."),
    ] = None,
    update_docs: Annotated[
        Path | None,
        typer.Option(
            "--update-docs",
            help="Write the results tables as Markdown into this folder (docs/results/generated).",
        ),
    ] = None,
    data_dir: DataDir = None,
    mirror: Mirror = None,
) -> None:
    """Reproduce the study from the public data: QC, sPCA/UMAP, forest, BiLSTM, transfer."""
    from ..files import check_out_file, check_writable_folder
    from ..report.markdown import results_markdown, write_docs_tables
    from ..report.markdown import update_readme as write_table
    from ..study.run import reproduce as run

    check_writable_folder(out, f"--out {out}")  # before any step, not after the first
    if update_readme is not None:
        check_out_file(update_readme, "--update-readme")
    if update_docs is not None:
        check_writable_folder(update_docs, f"--update-docs {update_docs}")
    results = run(out, quick, seed, data_dir, mirror, jobs)
    (out / "results.md").write_text(results_markdown(results))
    if update_readme is not None:
        write_table(update_readme, results)
    if update_docs is not None:
        write_docs_tables(results, update_docs)
    console.print(results_markdown(results))
    console.print(f"wrote {out / 'results.json'} and {out / 'report.html'}")


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add this group's commands to the CLI."""
    app.command()(reproduce)
