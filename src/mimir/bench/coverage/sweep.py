"""The sweep: each model checked in a process of its own, with a time limit; rows appended to a
JSON-lines file as they finish (resumable)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import torch

from mimir._version import library_versions
from mimir.bench.coverage.models import Candidate
from mimir.bench.coverage.stages import Row, check


def sweep(candidates: list[Candidate], results: str | Path, timeout: int = 600, rerun: bool = False, jobs: int = 1,
          log=print, **check_kwargs) -> list[Row]:
    """Check every candidate in a process of its own (at most ``timeout`` seconds, ``jobs`` at a
    time), appending its row to the JSON-lines ``results`` as it finishes; models with a row
    already are skipped unless ``rerun``. Resumable: stop it and run it again."""
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    done = {} if rerun else {r["model"]: r for r in read_rows(results)}
    todo = [c for c in candidates if c.model not in done]
    rows, versions = [], _versions()
    pool, running = ThreadPoolExecutor(jobs), set()   # threads that wait on the models' processes
    try:
        futures = [pool.submit(_in_a_process, c, timeout, check_kwargs, running) for c in todo]
        for future in as_completed(futures):
            row = future.result()
            with results.open("a") as f:
                f.write(json.dumps({**asdict(row), "versions": versions}) + "\n")
            log(f"{row.status:<8} {row.stage:<6} {row.model} ({row.seconds:.0f} s)"
                + (f": {row.reason}" if row.reason else ""))
            rows.append(row)
    finally:   # stopped (Ctrl-C, kill): start no more, end the running ones
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(running):
            proc.kill()
    return rows


def _in_a_process(c: Candidate, timeout: int, check_kwargs: dict, running: set) -> Row:
    args = json.dumps({"reference": c.model, "source": c.source, "group": c.group, **check_kwargs})
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mimir.bench.coverage.sweep", args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    running.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return Row(c.source, c.group, c.model, "failed", "?", f"timed out after {timeout} s", seconds=timeout)
    finally:
        running.discard(proc)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        said = (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1][:200]
        return Row(c.source, c.group, c.model, "failed", "?", f"the process died: {said}",
                   seconds=round(time.perf_counter() - started, 1))
    return Row(**json.loads(lines[-1]))


def _versions() -> dict:
    found = library_versions()
    return {k: found[k] for k in ("torch", "timm", "torch-pruning", "onnxruntime")}


def read_rows(results: str | Path) -> list[dict]:
    """The rows of a results file, the latest per model."""
    path = Path(results)
    latest: dict[str, dict] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        latest[row["model"]] = row
    return list(latest.values())


def _main(argv: list[str]) -> int:
    """``python -m mimir.bench.coverage.sweep '{"reference": ..., ...}'``: one model's row as JSON on stdout."""
    torch.set_num_threads(1)
    row = check(**json.loads(argv[0]))
    print(json.dumps(asdict(row)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
