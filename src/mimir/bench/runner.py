"""Running a benchmark grid: one JSON line per finished cell, resumable, optionally in parallel.

A results file is JSON lines. A cell counts as finished when a parseable line with its key and
``"status": "ok"`` is there; a line cut short by an interruption, or one recording an error, does
not count, so that cell runs again on the next call. The process that ran a cell (a worker here, a
job on a cluster) leaves its record beside the file, and it is merged into the file once
(:mod:`mimir.bench.store`), so lines never interleave.
"""

from __future__ import annotations

import multiprocessing
import platform
import subprocess
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import torch
import torch_pruning
import torchvision
from tqdm.auto import tqdm

from mimir import api
from mimir._version import __version__
from mimir.bench.config import BenchConfig, method_options
from mimir.bench.store import finished_keys, merge, write_record
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


def run_cell(cell: Recipe, bench: str = "", random_weights: bool = False) -> dict:
    """Run one cell (a recipe) with :func:`mimir.compress`; never raises (an error becomes the record).
    The record holds the recipe, the code's git commit, the device and the library versions."""
    started = time.perf_counter()
    record = {"key": cell.key, "bench": bench, "recipe": cell.to_dict(), "commit": git_commit(),
              "versions": versions()}
    try:
        teacher = create_model(cell.teacher) if random_weights else None
        result = api.compress(teacher, recipe=cell, progress=False)
        record.update(status="ok", device=result.summary["device"], summary=result.summary)
    except Exception as err:  # noqa: BLE001 - a failed cell is recorded and rerun later, the grid goes on
        record.update(status="error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=3))
    record["wall_seconds"] = round(time.perf_counter() - started, 2)
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def run_and_store(cell: Recipe, results: str | Path, bench: str = "", random_weights: bool = False) -> dict:
    """Run one cell and leave its record for ``results`` (see :mod:`mimir.bench.store`): what every
    executor's job does, in a worker process here or on a cluster node."""
    return write_record(results, run_cell(cell, bench, random_weights))


def run_cell_job(cell: Recipe, results: str, bench: str, threads: int) -> dict:
    """A submitit job's cell: ``threads`` torch threads (the job's CPUs), then :func:`run_and_store`."""
    torch.set_num_threads(threads)
    return run_and_store(cell, results, bench)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _finished(todo: list[Recipe], results: Path, bench: str, workers: int, random_weights: bool) -> Iterator[dict]:
    """The records of the cells of ``todo`` as they finish: in turn, or from ``workers`` spawned
    processes that share the torch threads."""
    if workers <= 1:
        for cell in todo:
            yield run_and_store(cell, results, bench, random_weights)
        return
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(run_and_store, cell, results, bench, random_weights) for cell in todo]
        for future in as_completed(futures):
            yield future.result()


def _describe(record: dict) -> str:
    """One line on a finished cell: its recipe and accuracy, or its error."""
    cell = Recipe.from_dict(record["recipe"])
    if record["status"] != "ok":
        return f"  {cell.describe()}: FAILED {record['error']}"
    acc = record["summary"]["compressed"]["accuracy"]
    return f"  {cell.describe()}: {'n/a' if acc is None else f'{acc:.2f} %'} ({record['wall_seconds']:.0f} s)"


def run_bench(config: BenchConfig, results: str | Path, workers: int = 1, progress: bool = True,
              random_weights: bool = False, log=print) -> list[dict]:
    """Run every unfinished cell of ``config``, appending each record to ``results`` as it finishes."""
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    done = finished_keys(results)
    todo = [c for c in config.cells if c.key not in done]
    log(f"bench {config.name}: {len(config.cells)} cells, {len(config.cells) - len(todo)} already finished, "
        f"{len(todo)} to run with {workers} worker(s)")
    records: list[dict] = []
    bar = tqdm(total=len(todo), desc=f"bench {config.name}", disable=not progress)
    for record in _finished(todo, results, config.name, workers, random_weights):
        merge(results)   # the worker left the record beside the file; it joins it now, once
        records.append(record)
        log(_describe(record))
        bar.update()
    bar.close()
    return records


def dry_run_config(config: BenchConfig, data: str, eval_data: str | None, input_size: int = 64,
                   samples: int = 4) -> BenchConfig:
    """A tiny version of ``config`` for machines without its data or weights: every distinct
    (teacher, prune, method) once, on ``data``, ``samples`` images, 1 iteration, the method's
    ``quick_options`` (its own step counts as small as they go), small inputs, random weights (see
    ``run_bench(random_weights=True)``)."""
    seen, cells = set(), []
    for c in config.cells:
        if (c.teacher, c.prune, c.method) in seen:
            continue
        seen.add((c.teacher, c.prune, c.method))
        options = method_options(c.method, {**c.options, **get_method(c.method).quick_options})
        cells.append(c.with_(weights=None, data=data, eval_data=eval_data, samples=samples, seed=0,
                             iterations=1, input_size=input_size, options=options))
    return BenchConfig(f"{config.name}-dry-run", cells, config.source)
