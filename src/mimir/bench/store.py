"""A grid's results: one JSON-lines file, written safely by many processes on many machines.

A cell's job never appends to the results file itself. It writes its record to a file of its own,
``<results>.cells/<key>.<run id>.json``, by an atomic rename (safe on shared storage without any
lock), and whoever reads the results next - ``mimir bench``, ``--status``, ``--list``, ``mimir
report`` - merges those files into the JSON-lines file under an exclusive lock and removes them.
Every record carries a unique ``run_id``: a merge stopped between appending a record and removing
its file leaves a file whose record is already in the JSON-lines file, and the next merge removes it
without appending it again. So each record reaches the file exactly once and whole, however many
machines finish cells at the same time.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from mimir.core import atomic_write, file_lock


def cells_folder(results: str | Path) -> Path:
    """Where the cells of ``results`` leave their records until they are merged."""
    results = Path(results)
    return results.with_name(results.name + ".cells")


def write_record(results: str | Path, record: dict) -> dict:
    """Leave ``record`` (a finished cell's) to be merged into ``results``; it, with its ``run_id``."""
    record = {**record, "run_id": record.get("run_id") or uuid.uuid4().hex}
    folder = cells_folder(results)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{record['key']}.{record['run_id']}.json", lambda tmp: Path(tmp).write_text(json.dumps(record)))
    return record


def merge(results: str | Path) -> int:
    """Append every record left in the cells folder to ``results`` (once), remove their files;
    the number appended."""
    results = Path(results)
    folder = cells_folder(results)
    if not folder.is_dir():
        return 0
    appended = 0
    with file_lock(results.with_name(results.name + ".lock")):
        present = {r.get("run_id") for r in _lines(results)}
        _end_line(results)
        for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):   # not ours, or vanished: left alone
                continue
            if record.get("run_id") not in present:
                with results.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                present.add(record.get("run_id"))
                appended += 1
            path.unlink(missing_ok=True)
    return appended


def read_results(path: str | Path) -> list[dict]:
    """Every parseable record of a results file, the cells' records not merged yet included
    (merged first where the file can be written)."""
    path = Path(path)
    if cells_folder(path).is_dir() and os.access(path.parent, os.W_OK):
        merge(path)
    rows = [r for r in _lines(path) if "key" in r]
    seen = {r.get("run_id") for r in rows}
    for extra in sorted(cells_folder(path).glob("*.json")) if cells_folder(path).is_dir() else []:
        try:
            record = json.loads(extra.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and "key" in record and record.get("run_id") not in seen:
            rows.append(record)
    return rows


def unreadable_lines(path: str | Path) -> list[int]:
    """The numbers (from 1) of the non-empty lines of ``path`` that are not a record: not JSON (cut
    short by a crash, or another file altogether), or JSON without a cell key."""
    bad = []
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or "key" not in row:
            bad.append(number)
    return bad


def _lines(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:   # a line cut short by a crash is skipped, never fatal
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _end_line(path: Path) -> None:
    """End a last line that a process killed while appending left without its newline, so that the
    next record starts a line of its own (the cut line stays unreadable; its record is appended
    again from the file it was merged from, which is removed only after it is whole)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            f.write(b"\n")
