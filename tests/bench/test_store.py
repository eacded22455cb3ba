"""A grid's results file: every cell's record lands in it once and whole, whoever writes it and when."""

import json
import multiprocessing

from mimir.bench.store import cells_folder, merge, read_results, write_record


def _writer(results: str, worker: int, count: int) -> None:
    """One machine's cells: each leaves its record and merges what is there, as a worker does."""
    for i in range(count):
        write_record(results, {"key": f"w{worker}-c{i}", "status": "ok", "payload": "x" * 2000})
        merge(results)


def test_concurrent_writers_leave_each_record_once_and_whole(tmp_path):
    results = str(tmp_path / "grid.jsonl")
    # forked: the writers start at once (a spawned one would spend seconds importing mimir again)
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    procs = [context.Process(target=_writer, args=(results, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    merge(results)
    lines = (tmp_path / "grid.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]   # every line parses: none interleaved or cut
    assert sorted(r["key"] for r in records) == sorted(f"w{w}-c{i}" for w in range(4) for i in range(25))
    assert len({r["run_id"] for r in records}) == 100
    assert not list(cells_folder(results).glob("*.json"))   # merged files are removed


def test_a_merge_stopped_before_removing_its_file_never_appends_twice(tmp_path):
    results = tmp_path / "grid.jsonl"
    record = write_record(results, {"key": "a", "status": "ok"})
    merge(results)
    # as if the merge had appended the record and been killed before removing its file
    (cells_folder(results) / f"a.{record['run_id']}.json").write_text(json.dumps(record))
    assert merge(results) == 0
    assert len(results.read_text().splitlines()) == 1


def test_unmerged_records_are_read_and_a_rerun_of_a_failed_cell_is_kept_beside_it(tmp_path):
    results = tmp_path / "grid.jsonl"
    write_record(results, {"key": "a", "status": "error", "error": "boom"})
    write_record(results, {"key": "a", "status": "ok"})
    results.with_name("grid.jsonl").touch()
    rows = read_results(results)
    assert sorted(r["status"] for r in rows) == ["error", "ok"]
    assert _finished(results) == {"a"}
    results.write_text(results.read_text() + '{"key": "b", "sta')   # a line cut short by a kill
    assert _finished(results) == {"a"}


def _finished(results) -> set[str]:
    return {r["key"] for r in read_results(results) if r.get("status") == "ok"}


def test_a_record_merged_after_a_line_cut_short_starts_a_line_of_its_own(tmp_path):
    results = tmp_path / "grid.jsonl"
    write_record(results, {"key": "a", "status": "ok"})
    merge(results)
    results.write_text(results.read_text() + '{"key": "b", "sta')   # the merging process was killed here
    write_record(results, {"key": "c", "status": "ok"})
    merge(results)
    assert _finished(results) == {"a", "c"}
    assert results.read_text().endswith("\n")
