"""The `ephys2tx` command line: thin wiring of the command groups in `commands/`."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from typing import Annotated

import typer

from .errors import Ephys2txError, one_line
from .threads import THREADS_ENV, env_threads, set_threads

DEBUG_ENV = "EPHYS2TX_DEBUG"
INTERRUPTED = 130  # the shell's status for a command stopped by Ctrl-C (128 + SIGINT)

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


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help=f"Show the traceback of any error (or set {DEBUG_ENV}=1)."),
    ] = False,
    threads: Annotated[int | None, typer.Option("--threads", help=THREADS_HELP)] = None,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"
    set_threads(threads if threads is not None else env_threads())


def _register() -> None:
    from .commands import (
        adapt,
        cells,
        demo,
        embed,
        evaluate,
        extract,
        fetch,
        inspect,
        predict,
        reproduce,
        synth,
        train,
    )

    verbs = (fetch, cells, embed, inspect, synth, extract, train, evaluate, predict, adapt)
    for group in (*verbs, reproduce, demo):
        group.register(app, train_app, evaluate_app)
    # the commands that fit or predict also take --threads after their name
    fitting = [*train_app.registered_commands, *evaluate_app.registered_commands]
    fitting += [c for c in app.registered_commands if c.callback.__name__ in THREADED_COMMANDS]
    for info in fitting:
        info.callback = _with_threads(info.callback)


THREADED_COMMANDS = ("predict", "reproduce", "demo")
THREADS_HELP = (
    "Threads for every fit and prediction (default: the free cores, i.e. cores minus the "
    f"rounded 1-minute load, at least 1; or set {THREADS_ENV})."
)


def _with_threads(callback):
    """`callback` with a `--threads` option that sets the thread policy before it runs."""
    signature = inspect.signature(callback, eval_str=True)  # Typer reads the annotations
    option = inspect.Parameter(
        "threads",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[int | None, typer.Option("--threads", help=THREADS_HELP)],
    )

    @functools.wraps(callback)
    def run(*args, threads: int | None = None, **kwargs):
        if threads is not None:
            set_threads(threads)
        return callback(*args, **kwargs)

    run.__signature__ = signature.replace(parameters=[*signature.parameters.values(), option])
    run.__annotations__ = {**callback.__annotations__, "threads": option.annotation}
    return run


_register()


def _fail(message: str, status: int) -> None:
    typer.secho(f"error: {message}", err=True, fg="red")
    sys.exit(status)


def _is_usage_error(exc: BaseException) -> bool:
    """A bad command line (unknown option, bad value, missing argument) as Click reports it.

    Typer vendors Click, so its exception classes are not public: recognise them by shape.
    """
    return all(hasattr(exc, a) for a in ("ctx", "format_message", "exit_code"))


def main() -> None:
    """Entry point: every error prints one line and exits non-zero, never a traceback.

    A user error (our own, or a bad option) exits 2; an unexpected one exits 1 and names
    `--debug`, which shows the traceback instead.
    """
    try:
        status = app(standalone_mode=False, prog_name="ephys2tx")
    except typer.Abort:
        _fail("interrupted", INTERRUPTED)
    except Ephys2txError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        _fail(one_line(exc), 2)
    except Exception as exc:
        if _is_usage_error(exc):
            if type(exc).__name__ == "NoArgsIsHelpError":
                sys.exit(exc.exit_code)  # the help is printed already
            where = exc.ctx.command_path if exc.ctx is not None else "ephys2tx"
            message = one_line(Ephys2txError(exc.format_message())).rstrip(".")
            _fail(f"{message}; see `{where} --help`", 2)
        if os.environ.get(DEBUG_ENV):
            raise
        _fail(
            f"unexpected {one_line(exc)}; rerun with `ephys2tx --debug ...` for the traceback "
            "and report it",
            1,
        )
    if status == INTERRUPTED:  # Typer turns Ctrl-C into this status
        _fail("interrupted; rerun the same command to resume (finished work is kept)", status)
    sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)


if __name__ == "__main__":
    main()
