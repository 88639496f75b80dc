"""Run a study's steps side by side, so that every core stays busy.

After the data step, each step reads only the cells and writes its own files, so the steps
are independent. With `lanes` > 1 they run in that many worker processes (joblib's loky),
one step per worker at a time, each step on one core, the longest expected first (LPT
scheduling, from `Step.weight`). Why: inside a step most work fits one model at a time, or
3-5 folds on 2 workers, which leaves a core idle at the tail; and the OpenMP threads of
gradient boosting spin against each other when two fits share the cores. Whole steps side by
side keep both cores busy with neither. No result depends on the lane a step ran in, nor on
the order the steps finish in (every step seeds its own models).
"""

from __future__ import annotations

import io
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from joblib import Parallel, delayed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from threadpoolctl import threadpool_limits

from ..console import console

if TYPE_CHECKING:
    from .steps import Study


@dataclass(frozen=True)
class Step:
    """One cached step: `Study.<method>(*args)` stored under `name` as a `kind`."""

    name: str
    method: str
    args: tuple = ()
    kind: Any = None  # the type it returns (None: plain JSON), to rebuild a cached result
    weight: float = 1.0  # expected cost relative to the other steps; the heaviest start first

    def __call__(self, study: Study) -> Any:
        return getattr(study, self.method)(*self.args)


def _in_lane(study: Study, step: Step) -> tuple[str, Any, float]:
    """One step in a worker process: on one core, its console output dropped (the main
    process reports each step as it ends; an error still comes back as an exception)."""
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()), threadpool_limits(1):
        start = time.perf_counter()
        result = step(study)
    return step.name, result, round(time.perf_counter() - start, 1)


def run_steps(study: Study, steps: list[Step], lanes: int = 1) -> dict[str, Any]:
    """Every step's result by name: reused from the step cache, or run now, `lanes` at a time
    (1: one after another in this process, each step using `study.n_jobs` workers itself)."""
    results, todo = {}, []
    for step in steps:
        found, result = study.cache.lookup(step.name, step.kind)
        if found:
            results[step.name] = result
        else:
            todo.append(step)
    if lanes <= 1 or len(todo) <= 1:
        for step in todo:
            results[step.name] = study.cache.run(step.name, lambda s=step: s(study), step.kind)
        return results
    order = sorted(todo, key=lambda s: -s.weight)  # stable: ties keep the declared order
    lane = study.for_lanes()
    console.print(f"running {len(todo)} steps, {lanes} at a time, one core each")
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("study steps", total=len(todo))
        runs = Parallel(n_jobs=lanes, return_as="generator_unordered")(
            delayed(_in_lane)(lane, step) for step in order
        )
        for name, result, seconds in runs:
            study.cache.store(name, result, seconds)
            results[name] = result
            bar.console.print(f"[bold]{name}[/] done in {seconds:.0f} s")
            bar.advance(task)
    return results
