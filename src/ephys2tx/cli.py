"""The `ephys2tx` command line: thin wiring of the command groups in `commands/`."""

from __future__ import annotations

import sys

import typer

from .errors import Ephys2txError, one_line

app = typer.Typer(
    help="Predict transcriptomic subclasses of cortical interneurons from electrophysiology.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
train_app = typer.Typer(
    help="Train a model and save it to a model directory.", no_args_is_help=True
)
evaluate_app = typer.Typer(
    help="Cross-validate a model on donor-grouped folds.", no_args_is_help=True
)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")


def _register() -> None:
    from .commands import data, demo, extract, recordings, reference, sequence, study, synth

    for group in (data, recordings, synth, extract, sequence, reference, study, demo):
        group.register(app, train_app, evaluate_app)


_register()


def main() -> None:
    """Entry point: user errors print one line and exit 2, never a traceback."""
    try:
        app()
    except Ephys2txError as exc:
        typer.secho(f"error: {one_line(exc)}", err=True, fg="red")
        sys.exit(2)


if __name__ == "__main__":
    main()
