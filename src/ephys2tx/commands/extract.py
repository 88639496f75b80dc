"""Placeholder command group; its owner fills it in."""

import typer


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add this group's commands to the CLI."""
