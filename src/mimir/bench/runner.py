"""Running a benchmark grid: one JSON line per finished cell, resumable, optionally in parallel.

A results file is JSON lines. A cell counts as finished when a parseable line with ``"status":
"ok"`` ran what the cell runs (:mod:`mimir.bench.cells`); a line cut short by an interruption, one
recording an error, or one that ran other settings does not count, so that cell runs again on the
next call. The process that ran a cell (a worker here, a job on a cluster) leaves its record beside
the file, and it is merged into the file once (:mod:`mimir.bench.store`), so lines never interleave.

SIGINT (Ctrl-C) or SIGTERM stops the whole run: the workers ignore SIGINT and are stopped by the
runner with SIGTERM, which ends a worker's cell at once (its temporary files removed, no record
left), and the records of the cells finished until then are merged; what was cut off runs again
on the next call.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import torch
import torch_pruning
import torchvision
from tqdm.auto import tqdm

from mimir import api
from mimir._version import __version__
from mimir.bench.cells import Cell, finished_keys, make_cell, outdated
from mimir.bench.config import BenchConfig, check_inputs, method_options
from mimir.bench.store import merge, read_results, write_record
from mimir.methods import get_method
from mimir.models import create_model
from mimir.recipe import Recipe


def git_commit() -> str:
    """The commit of the mimir code that runs (``+dirty`` with uncommitted changes), or ``unknown``
    outside a git checkout."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty else "")


def versions() -> dict:
    return {"mimir": __version__, "torch": str(torch.__version__), "torchvision": torchvision.__version__,
            "torch_pruning": torch_pruning.__version__, "python": platform.python_version(),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads"}


def run_cell(cell: Cell, bench: str = "", random_weights: bool = False) -> dict:
    """Run one cell with :func:`mimir.compress`; never raises (an error becomes the record). The
    record holds the recipe as the grid gives it (the summary: as run), the code's git commit, the
    device and the library versions."""
    started = time.perf_counter()
    record = {"key": cell.key, "bench": bench, "recipe": cell.recipe.to_dict(), "commit": git_commit(),
              "versions": versions()}
    try:
        teacher = create_model(cell.recipe.teacher) if random_weights else None
        result = api.compress(teacher, recipe=cell.run, progress=False)
        record.update(status="ok", device=result.summary["device"], summary=result.summary)
    except Exception as err:  # noqa: BLE001 - a failed cell is recorded and rerun later, the grid goes on
        record.update(status="error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=3))
    record["wall_seconds"] = round(time.perf_counter() - started, 2)
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def run_and_store(cell: Cell, results: str | Path, bench: str = "", random_weights: bool = False) -> dict:
    """Run one cell and leave its record for ``results`` (see :mod:`mimir.bench.store`): what every
    executor's job does, in a worker process here or on a cluster node."""
    return write_record(results, run_cell(cell, bench, random_weights))


def run_cell_job(cell: Cell, results: str, bench: str, threads: int) -> dict:
    """A submitit job's cell: ``threads`` torch threads (the job's CPUs), then :func:`run_and_store`."""
    torch.set_num_threads(threads)
    return run_and_store(cell, results, bench)


class Stopped(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT or SIGTERM): ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """The first SIGTERM or SIGINT raises :class:`Stopped` in the main thread while the grid runs;
    later ones are ignored, so that stopping the workers is not itself cut short."""
    fired = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise Stopped(signum)

    main = threading.current_thread() is threading.main_thread()   # only it may set handlers
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Terminated(SystemExit):
    """A worker's SIGTERM: unwinds the cell (its ``finally`` blocks remove temporary files)."""


def _on_sigterm(signum, frame):
    raise _Terminated(128 + signum)


def _init_worker(threads: int, runner: int) -> None:
    """A pool worker: its share of the torch threads; Ctrl-C is the runner's to handle (it stops the
    workers with SIGTERM); SIGTERM ends the cell; on Linux the worker also gets SIGTERM when the
    runner dies without stopping it (SIGKILL), so no worker outlives its run."""
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
        if os.getppid() != runner:   # the runner died before prctl: do not run orphaned
            os._exit(1)


def _worker_cell(cell: Cell, results: Path, bench: str, random_weights: bool) -> dict:
    try:
        return run_and_store(cell, results, bench, random_weights)
    except _Terminated as stop:   # unwound: nothing half-written is left; end the process now
        os._exit(stop.code)


def _stop_workers(pool: ProcessPoolExecutor, grace: float = 20.0) -> None:
    """SIGTERM to every worker of ``pool``, SIGKILL to those still alive after ``grace`` seconds."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for p in processes:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
    pool.shutdown(wait=False, cancel_futures=True)


def _finished(todo: list[Cell], results: Path, bench: str, workers: int, random_weights: bool) -> Iterator[dict]:
    """The records of the cells of ``todo`` as they finish: in turn, or from ``workers`` spawned
    processes that share the torch threads (stopped, all of them, when the run stops)."""
    if workers <= 1:
        for cell in todo:
            yield run_and_store(cell, results, bench, random_weights)
        return
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads, os.getpid()))
    try:
        futures = [pool.submit(_worker_cell, cell, results, bench, random_weights) for cell in todo]
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


def _describe(record: dict) -> str:
    """One line on a finished cell: its recipe and accuracy, or its error."""
    cell = Recipe.from_dict(record["recipe"])
    if record["status"] != "ok":
        return f"  {cell.describe()}: FAILED {record['error']}"
    acc = record["summary"]["compressed"]["accuracy"]
    return f"  {cell.describe()}: {'n/a' if acc is None else f'{acc:.2f} %'} ({record['wall_seconds']:.0f} s)"


def run_bench(config: BenchConfig, results: str | Path, workers: int = 1, progress: bool = True,
              random_weights: bool = False, log=print) -> list[dict]:
    """Run every unfinished cell of ``config``, appending each record to ``results`` as it finishes.
    What every cell reads is checked first, for the whole grid (:func:`~mimir.bench.config.check_inputs`).
    SIGINT or SIGTERM stops every cell that runs and raises :class:`Stopped` (see the module
    docstring)."""
    check_inputs(config, random_weights)
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    records = read_results(results)
    done = finished_keys(records, config.cells)
    todo = [c for c in config.cells if c.key not in done]
    rerun = len(outdated(records, config.cells))
    log(f"bench {config.name}: {len(config.cells)} cells, {len(config.cells) - len(todo)} already finished, "
        f"{len(todo)} to run with {workers} worker(s)" +
        (f" ({rerun} of them ran before with other defaults)" if rerun else ""))
    finished: list[dict] = []
    bar = tqdm(total=len(todo), desc=f"bench {config.name}", disable=not progress)
    running = _finished(todo, results, config.name, workers, random_weights)
    try:
        with _stopped_by_signals():
            try:
                for record in running:
                    merge(results)   # the worker left the record beside the file; it joins it now, once
                    finished.append(record)
                    log(_describe(record))
                    bar.update()
            finally:
                running.close()   # a run cut short stops its workers now, not when the generator is collected
    finally:
        bar.close()
        merge(results)   # records left by cells that finished while the run was being stopped
    return finished


def dry_run_config(config: BenchConfig, data: str, eval_data: str | None, input_size: int = 64,
                   samples: int = 4) -> BenchConfig:
    """A tiny version of ``config`` for machines without its data or weights: every distinct
    (teacher, prune, method) once, on ``data``, ``samples`` images, 1 iteration, the method's
    ``quick_options`` (its own step counts as small as they go), small inputs, random weights (see
    ``run_bench(random_weights=True)``)."""
    seen, cells = set(), []
    for cell in config.cells:
        c = cell.recipe
        if (c.teacher, c.prune, c.method) in seen:
            continue
        seen.add((c.teacher, c.prune, c.method))
        options = method_options(c.method, {**c.options, **get_method(c.method).quick_options})
        cells.append(make_cell(c.with_(weights=None, data=data, eval_data=eval_data, samples=samples, seed=0,
                                       iterations=1, input_size=input_size, options=options), cell.at))
    return BenchConfig(f"{config.name}-dry-run", cells, config.source)
