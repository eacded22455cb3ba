"""The report of a small fixed set of result lines."""

import json

from mimir.bench import aggregate, markdown_table, winners, write_report


def _line(method, seed, acc, samples=50, labels=False):
    return {"key": f"{method}-{samples}-{seed}", "status": "ok", "wall_seconds": 10.0,
            "finished_at": f"2026-11-21T10:0{seed}:00+00:00", "versions": {"torch": "2.x"},
            "config": {"teacher": "resnet20", "prune": "channels:0.5", "method": method, "samples": samples,
                       "seed": seed, "iterations": 400},
            "summary": {"teacher": {"accuracy": 92.0, "macs": 30e6, "params": 0.27e6},
                        "pruned": {"accuracy": 25.0, "macs": 15e6, "params": 0.14e6},
                        "compressed": {"accuracy": acc, "macs": 15e6, "params": 0.14e6},
                        "train_seconds": 8.0, "used_labels": labels}}


LINES = [_line("mir", 1, 91.0), _line("mir", 2, 91.5), _line("mir", 3, 92.0),
         _line("bp", 1, 80.0, labels=True), _line("bp", 2, 84.0, labels=True),
         _line("none", 1, 25.0), {"key": "broken", "status": "error", "error": "x"}]

EXPECTED = """\
| teacher | prune | samples | method | accuracy % (mean +- std) | seeds | vs teacher | pruned % | MACs | params | train s | cell s | labels |
|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|
| resnet20 | channels:0.5 | 50 | mir | 91.50 +- 0.50 | 3 | -0.50 | 25.00 | 15.0M (50 %) | 0.140M | 8 | 10 | no |
| resnet20 | channels:0.5 | 50 | bp | 82.00 +- 2.83 | 2 | -10.00 | 25.00 | 15.0M (50 %) | 0.140M | 8 | 10 | yes |
| resnet20 | channels:0.5 | 50 | none | 25.00 +- 0.00 | 1 | -67.00 | 25.00 | 15.0M (50 %) | 0.140M | 8 | 10 | no |"""


def test_table_of_fixed_lines():
    assert markdown_table(aggregate(LINES)) == EXPECTED


def test_winner_text():
    assert winners(aggregate(LINES)) == ["resnet20, channels:0.5, 50 samples: **mir** 91.50 %, 9.50 points ahead of bp"]


def test_written_report_has_table_and_plots(tmp_path):
    results = tmp_path / "r.jsonl"
    results.write_text("\n".join(json.dumps(l) for l in LINES) + "\n{truncated")
    path = write_report(results, tmp_path / "docs", command="mimir bench x.yaml")
    text = path.read_text()
    assert EXPECTED in text and "mimir bench x.yaml" in text and "6 finished cells" in text
    pngs = sorted((tmp_path / "docs" / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["acc_vs_macs.png", "acc_vs_samples_resnet20_channels-0.5.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_busy_time_is_the_union_of_cell_intervals():
    from mimir.bench.report import busy_seconds

    def rec(end, seconds):
        return {"finished_at": f"2026-11-21T10:{end}+00:00", "wall_seconds": seconds}

    # two workers overlapping 10:00:00-10:01:40 and 10:00:30-10:02:00, then a gap, then 30 s
    records = [rec("01:40", 100), rec("02:00", 90), rec("30:00", 30)]
    assert busy_seconds(records) == 120 + 30
    assert busy_seconds([]) == 0


def test_report_command(tmp_path, capsys):
    from mimir.cli import main

    results = tmp_path / "r.jsonl"
    results.write_text("\n".join(json.dumps(l) for l in LINES) + "\n")
    assert main(["report", str(results), "--out", str(tmp_path / "docs")]) == 0
    out = capsys.readouterr().out
    assert "resnet20, channels:0.5, 50 samples: mir 91.50 %, 9.50 points ahead of bp" in out
    assert (tmp_path / "docs" / "RESULTS.md").is_file()
    assert main(["report", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_results_far_below_the_teacher_are_named_under_the_axis():
    from mimir.bench.report import _below_note, _y_range

    rows = aggregate(LINES)  # mir ~91.5, bp ~82, none 25, teacher 92
    low, high = _y_range(rows)
    assert 70 < low < 80 < 92 < high  # 20 points under the teacher, not down to none's 25 %
    assert _below_note(rows, low) == "below the axis: none 25.00 %"


def test_cells_without_accuracy_give_a_table_and_no_plots(tmp_path):
    lines = [_line("mir", 1, None), _line("mir", 2, None)]
    results = tmp_path / "r.jsonl"
    results.write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    text = write_report(results, tmp_path / "docs").read_text()
    assert "| mir | n/a +- 0.00 | 2 |" in text
    assert not list((tmp_path / "docs").glob("plots/*.png"))


def test_cells_that_differ_beyond_the_seed_are_never_averaged():
    longer = [{**_line("mir", s, 95.0), "key": f"long-{s}"} for s in (1, 2)]
    for line in longer:
        line["config"] = {**line["config"], "iterations": 2000}
    rows = [r for r in aggregate(LINES + longer) if r.method == "mir"]
    assert sorted((r.setting, r.mean, r.seeds) for r in rows) == [("iterations=2000", 95.0, 2),
                                                                  ("iterations=400", 91.5, 3)]
    assert "| mir | iterations=2000 | 95.00 +- 0.00 | 2 |" in markdown_table(rows)
    assert any("(iterations=2000): **mir** 95.00 %" in w for w in winners(aggregate(LINES + longer)))


def test_new_lines_carry_the_whole_recipe():
    from mimir.bench.report import recipe_of

    line = {**_line("kd", 1, 90.0), "recipe": {"teacher": "resnet20", "prune": "channels:0.5", "method": "kd",
                                               "samples": 50, "seed": 1, "iterations": 400, "precision": "bf16"}}
    del line["config"]
    assert recipe_of(line)["precision"] == "bf16" and recipe_of(line)["device"] == "auto"
