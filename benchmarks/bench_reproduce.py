"""Where `reproduce` spends its time, step by step, without running it whole.

The study's engine runs (so the steps and their settings are the real ones), one step at
a time, and only the steps asked for are executed; the others are skipped and no report is
written. (`reproduce` itself runs whole steps `--jobs` at a time, one core each:
`study/schedule.py`; time it whole for its wall time.) A step in `--steps` runs in full
(folds `--jobs` at a time) and is timed. A step in `--model` runs on the first `--folds` folds of its cross-validation only,
one fold at a time, and each fold fit is timed; its full time is estimated as

    measured + sum over its cross-validations of (N - k) x fastest fold fit

(N folds planned, k run; the fastest fit leaves out one-time costs such as the mouse
pretraining). Its wall time divides the fold part of networks and of the reference
model, which the engine fits `--jobs` folds at a time in a step of its own, by `--jobs`.

    EPHYS2TX_MIRROR=../shared/data .venv/bin/python benchmarks/bench_reproduce.py --list
    ... --steps data,embed_mouse,rf_human_label_raw_grouped --model transfer,trust_human_label
    ... --quick --steps all                # the quick preset, every step in full

Prints a table (step, how, fold fits timed, fastest fit, seconds, estimated seconds one
fit at a time and as `reproduce` runs it) with the cores and load average before each
step, and writes it to OUT/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import warnings
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

from threadpoolctl import threadpool_limits

from ephys2tx.evaluation import crossval, splits
from ephys2tx.study import cache, steps
from ephys2tx.study import run as study_run
from ephys2tx.study.settings import StudySettings
from ephys2tx.study.sources import PublicCells

warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed.*")
PARALLEL_MODELS = ("BiLSTMClassifier", "TransferClassifier", "HierarchicalClassifier")


class Skipped:
    """The result of a step that was not run: empty, and empty in every part."""

    def __getattr__(self, name):
        return Skipped()

    def __getitem__(self, key):
        return Skipped()

    def __call__(self, *args, **kwargs):
        return Skipped()

    def __iter__(self):
        return iter(())

    def __bool__(self) -> bool:
        return False


def machine() -> str:
    return f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"


class Recorder:
    """Runs the chosen steps of `reproduce`, truncating and timing folds of modelled ones."""

    def __init__(self, measure: set[str], model: set[str], k: int, jobs: int, every: bool):
        self.measure, self.model, self.k, self.jobs, self.every = measure, model, k, jobs, every
        self.study = None
        self.step: str | None = None
        self.names: list[str] = []
        self.rows: list[dict] = []
        self.planned: dict[str, int] = {}
        self.first: tuple[int, int] | None = None
        self.calls = 0
        self.fits: list[tuple] = []  # (cross-validation, model, seconds, cpu seconds)

    def run(self, cache, name: str, step, kind=None):
        self.names.append(name)
        if not (self.every or name in self.measure or name in self.model):
            return Skipped()
        (cache.dir / f"{name}.json").unlink(missing_ok=True)  # measure, never reuse
        self.step, self.fits = name, []
        self.study.n_jobs = 1 if name in self.model else self.jobs
        row = {"step": name, "load_before": machine()}
        start, cpu = time.perf_counter(), time.process_time()
        result = step()
        row["seconds"] = round(time.perf_counter() - start, 1)
        row["cpu"] = round(time.process_time() - cpu, 1)  # this process only, not workers
        self.rows.append(self.summarize(row))
        print(line(self.rows[-1]), flush=True)  # as it comes: a long run may be cut short
        self.step = None
        return result

    def folds(self, make):
        def truncated(splitter, *args, **kwargs):
            made = make(splitter, *args, **kwargs)
            if self.step not in self.model:
                return made
            self.planned[self.step] = len(made)
            self.first = (made[0].repeat, made[0].fold)
            return made[: self.k]

        return truncated

    def fit_fold(self, fit):
        def timed(estimator, X, y, train, fold, on_fold):
            if (fold.repeat, fold.fold) == self.first:
                self.calls += 1  # a new cross-validation starts at the first fold
            parallel = type(estimator).__name__ in PARALLEL_MODELS
            start, cpu = time.perf_counter(), time.process_time()
            # as in reproduce's worker processes: one BLAS/OpenMP thread per fit
            with threadpool_limits(1) if parallel else nullcontext():
                out = fit(estimator, X, y, train, fold, on_fold)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            self.fits.append((self.calls, type(estimator).__name__, seconds, cpu))
            return out

        return timed

    def summarize(self, row: dict) -> dict:
        name, seconds = row["step"], row["seconds"]
        if name not in self.model or name not in self.planned:
            return {**row, "how": "measured", "n_fits": 0, "estimate": seconds, "wall": seconds,
                    "cpu_estimate": row["cpu"]}  # fmt: skip
        n = self.planned[name]
        k = min(self.k, n)
        calls: dict[int, list[float]] = defaultdict(list)
        cpus: dict[int, list[float]] = defaultdict(list)
        kind = {}
        for call, model, sec, cpu in self.fits:
            calls[call].append(sec)
            cpus[call].append(cpu)
            kind[call] = model
        serial = wall = seconds
        cpu_total = row["cpu"]
        for call, secs in calls.items():
            fastest = min(secs)
            serial += (n - len(secs)) * fastest
            cpu_total += (n - len(secs)) * min(cpus[call])
            jobs = self.jobs if kind[call] in PARALLEL_MODELS else 1
            wall += (n - len(secs)) * fastest + n * fastest / jobs - n * fastest
        if not calls:  # no fold fit seen (e.g. permutation importance): scale the whole step
            serial = wall = seconds * n / k
            cpu_total = row["cpu"] * n / k
        per_fit = min((min(s) for s in calls.values()), default=float("nan"))
        return {
            **row,
            "how": f"{k} of {n} folds",
            "n_fits": len(self.fits),
            "per_fit": round(per_fit, 2),
            "estimate": round(serial, 1),
            "wall": round(wall, 1),
            "cpu_estimate": round(cpu_total, 1),
        }


HEAD = (
    f"{'step':30} {'how':14} {'fits':>4} {'s/fit':>6} {'seconds':>7} {'cpu':>7}"
    f" {'est.':>7} {'wall':>7} {'est.cpu':>7}  load before"
)


def line(r: dict) -> str:
    return (
        f"{r['step']:30} {r['how']:14} {r['n_fits']:4d} {r.get('per_fit', float('nan')):6.2f}"
        f" {r['seconds']:7.1f} {r['cpu']:7.1f} {r['estimate']:7.1f} {r['wall']:7.1f}"
        f" {r['cpu_estimate']:7.1f}  {r['load_before']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", default="", help="steps run in full ('all': every step)")
    parser.add_argument("--model", default="", help="steps estimated from their first folds")
    parser.add_argument("--folds", type=int, default=2, help="folds run of a modelled step (>=2)")
    parser.add_argument("--quick", action="store_true", help="the quick preset (default: full)")
    parser.add_argument("--jobs", type=int, default=2, help="folds of a step at once")
    parser.add_argument("--list", action="store_true", help="list the steps and exit")
    parser.add_argument("--out", type=Path, default=Path("bench-reproduce"))
    args = parser.parse_args()
    measure = {s for s in args.steps.split(",") if s and s != "all"}
    model = {s for s in args.model.split(",") if s}
    every = args.steps == "all" and not args.list
    recorder = Recorder(measure - model, model, max(args.folds, 2), max(args.jobs, 1), every)

    # reproduce itself decides the steps; these wrappers only choose, truncate and time them
    cache.StepCache.run = lambda c, name, step, kind=None: recorder.run(c, name, step, kind)
    init = steps.Study.__init__

    def remember(study, *a, **kw):
        init(study, *a, **kw)
        recorder.study = study

    steps.Study.__init__ = remember
    splits._Splitter.cell_folds = recorder.folds(splits._Splitter.cell_folds)
    crossval._fit_fold = recorder.fit_fold(crossval._fit_fold)
    from ephys2tx.report import html

    html.write_report = lambda *a, **kw: None  # skipped steps leave nothing to report
    study_run.write_results = lambda *a, **kw: None
    shutil.rmtree(args.out / "steps", ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)

    print(HEAD, flush=True)
    start = time.perf_counter()
    settings = StudySettings.preset_named("quick" if args.quick else "full")
    study = steps.Study(args.out, settings, PublicCells(), recorder.jobs)
    study_run.run_study(study, lanes=1)  # one step at a time, each timed on its own
    total = time.perf_counter() - start
    if args.list:
        print("\n".join(recorder.names))
        return
    unknown = (measure | model) - set(recorder.names)
    if unknown:
        print(f"no such step: {', '.join(sorted(unknown))}; --list shows them")
    rows = recorder.rows
    print(f"\n{'quick' if args.quick else 'full'} preset, --jobs {recorder.jobs}, {machine()}")
    print(HEAD)
    for r in rows:
        print(line(r))
    wall = sum(r["wall"] for r in rows)
    cpu = sum(r["cpu_estimate"] for r in rows)
    print(f"{'total':30} {'':14} {'':4} {'':6} {total:7.1f} {'':7} {'':7} {wall:7.1f} {cpu:7.1f}")
    summary = {"quick": args.quick, "jobs": recorder.jobs, "machine": machine(), "rows": rows}
    (args.out / "bench.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
