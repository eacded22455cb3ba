"""Where a grid's cells run: here in a process pool (``local``), or as one submitit job array, on
this machine (``submitit-local``, the same code path, for testing) or on a Slurm cluster (``slurm``).

A cell's job runs :func:`~mimir.bench.runner.run_and_store`: it leaves its record beside the
results file (:mod:`mimir.bench.store`), so cells finishing on many nodes at once never write the
results file themselves. The jobs submitted for a grid are kept in ``<results>.jobs.json`` (cell
key -> job id and log folder), so that a rerun of the same command submits only the cells that are
neither finished nor queued nor running, and ``--status`` can say what each cell is doing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mimir.bench.cells import Cell, finished_records
from mimir.bench.runner import run_cell_job
from mimir.bench.store import read_results
from mimir.cluster import Resources, make_executor
from mimir.core import atomic_write, file_lock

#: submitit's job states that mean the job is still to finish
WAITING = {"PENDING": "queued", "REQUEUED": "queued", "CONFIGURING": "queued", "RUNNING": "running",
           "COMPLETING": "running", "SUSPENDED": "queued"}


def log_folder(results: str | Path) -> Path:
    """The jobs' logs of a grid: beside its results file, named after it."""
    results = Path(results)
    return results.with_name(results.stem + ".logs")


def _registry(results: str | Path) -> Path:
    results = Path(results)
    return results.with_name(results.name + ".jobs.json")


def submitted(results: str | Path) -> dict[str, dict]:
    path = _registry(results)
    return json.loads(path.read_text()) if path.is_file() else {}


def submit(cells: list[Cell], results: str | Path, bench: str, executor: str, resources: Resources) -> list:
    """Submit ``cells`` as one job array; their submitit jobs (recorded in the grid's job registry).
    ``submitit-local`` runs them as processes of this machine, ``array_parallelism`` at a time,
    and returns when they have finished."""
    folder = log_folder(results)
    ex = make_executor(executor, folder, resources, name=f"mimir-{bench}")
    # a cell's device is "auto" unless the grid says otherwise: the job's GPU where it has one. Slurm
    # gets one array; submitit's local executor starts every job of an array at once, so it gets
    # waves of array_parallelism, each waited for
    size = max(1, len(cells)) if executor == "slurm" else resources.array_parallelism
    jobs = []
    for start in range(0, len(cells), size):
        wave = cells[start:start + size]
        n = len(wave)
        started = ex.map_array(run_cell_job, wave, [str(results)] * n, [bench] * n, [resources.cpus] * n)
        _register(results, wave, started, executor, folder)
        if executor != "slurm":
            for job in started:
                job.wait()
        jobs += started
    return jobs


def _register(results: str | Path, cells: list[Cell], jobs: list, executor: str, folder: Path) -> None:
    with file_lock(_registry(results).with_suffix(".lock")):
        registry = submitted(results)
        for cell, job in zip(cells, jobs):
            registry[cell.key] = {"job_id": str(job.job_id), "executor": executor, "folder": str(folder)}
        atomic_write(_registry(results), lambda tmp: Path(tmp).write_text(json.dumps(registry, indent=1)))


@dataclass
class CellState:
    state: str            # done, queued, running, failed, not submitted
    detail: str = ""      # accuracy, job id, or the reason it failed
    log: str = ""         # where the job's log is


def cell_states(cells: list[Cell], results: str | Path) -> dict[str, CellState]:
    """What each cell is: finished (a record that ran it), waiting or running (its job's state),
    failed (the last record's error, or the job's state and the last line of its log), or not
    submitted."""
    lines = read_results(results)
    # a failed record carries the key of the cell it was written for; of such records, the latest
    records: dict[str, dict] = {r["key"]: r for r in lines if r.get("status") != "ok"}
    records.update(finished_records(lines, cells))   # a finished record stands
    registry = submitted(results)
    states = {}
    for cell in cells:
        record, job = records.get(cell.key), registry.get(cell.key)
        if record is not None and record.get("status") == "ok":
            acc = record["summary"]["compressed"]["accuracy"]
            states[cell.key] = CellState("done", "n/a" if acc is None else f"{acc:.2f} %")
            continue
        state, log = _job_state(job) if job is not None else ("", "")   # one query of the scheduler per cell
        if job is not None:
            if state in WAITING:
                states[cell.key] = CellState(WAITING[state], f"job {job['job_id']}", log)
                continue
            if record is None:   # the job ended without a record: killed, out of time or memory
                states[cell.key] = CellState("failed", f"job {job['job_id']} ended without a record "
                                             f"({state.lower()}): {_last_line(log)}", log)
                continue
        if record is not None:
            states[cell.key] = CellState("failed", record.get("error", "failed"), log)
        else:
            states[cell.key] = CellState("not submitted")
    return states


def _job_state(job: dict) -> tuple[str, str]:
    """(submitit's state of a registered job, its log file)."""
    import submitit

    folder = Path(job["folder"])
    if job["executor"] == "slurm":
        handle = submitit.SlurmJob(folder, job["job_id"])
    else:
        handle = submitit.local.local.LocalJob(folder, job["job_id"])
    try:
        state = handle.state
    except Exception:  # noqa: BLE001 - a scheduler that no longer knows the job: it ended
        state = "UNKNOWN"
    return state, str(handle.paths.stderr)


def _last_line(log: str) -> str:
    try:
        lines = [line for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][-200:] if lines else "empty log"
