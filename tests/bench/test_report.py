"""The report of a small fixed set of result lines."""

import copy
import json

from mimir.bench import aggregate, markdown_table, winners, write_report
from tests.helpers import LINES, result_line

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


def test_report_names_unreadable_lines_and_refuses_a_file_without_records(tmp_path, capsys):
    from mimir.cli import main

    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps(LINES[0]) + "\nnot json\n" + json.dumps(LINES[1]) + "\n[1, 2]\n")
    assert main(["report", str(results), "--out", str(tmp_path / "docs")]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 unreadable line(s)" in err and "(line 2, 4)" in err
    results.write_text("this is not a results file\n")
    assert main(["report", str(results), "--out", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("warning: skipped 1 unreadable line(s)") and "(line 1)" in err[0]
    assert err[1].startswith("error: ") and "holds no result 'mimir bench' wrote" in err[1] and len(err) == 2
    assert not (tmp_path / "empty").exists()   # nothing written


def test_results_far_below_the_teacher_are_named_under_the_axis():
    from mimir.bench.report.plots import _below_note, _y_range

    rows = aggregate(LINES)  # mir ~91.5, bp ~82, none 25, teacher 92
    low, high = _y_range(rows)
    assert 70 < low < 80 < 92 < high  # 20 points under the teacher, not down to none's 25 %
    assert _below_note(rows, low) == "below the axis: none 25.00 %"


def test_cells_without_accuracy_give_a_table_and_no_plots(tmp_path):
    lines = [result_line("mir", 1, None), result_line("mir", 2, None)]
    results = tmp_path / "r.jsonl"
    results.write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    text = write_report(results, tmp_path / "docs").read_text()
    assert "| mir | n/a +- 0.00 | 2 |" in text
    assert not list((tmp_path / "docs").glob("plots/*.png"))


def test_cells_that_differ_beyond_the_seed_are_never_averaged():
    longer = [{**result_line("mir", s, 95.0), "key": f"long-{s}"} for s in (1, 2)]
    for line in longer:
        line["config"] = {**line["config"], "iterations": 2000}
    rows = [r for r in aggregate(LINES + longer) if r.method == "mir"]
    assert sorted((r.setting, r.mean, r.seeds) for r in rows) == [("iterations=2000", 95.0, 2),
                                                                  ("iterations=400", 91.5, 3)]
    assert "| mir | iterations=2000 | 95.00 +- 0.00 | 2 |" in markdown_table(rows)
    assert not any("iterations=2000" in w for w in winners(aggregate(LINES + longer))), "a lone method won nothing"
    rival = [{**result_line("kd", s, 94.0), "key": f"kd-long-{s}"} for s in (1, 2)]
    for line in rival:
        line["config"] = {**line["config"], "iterations": 2000}
    assert any("(iterations=2000): **mir** 95.00 %, 1.00 points ahead of kd" in w
               for w in winners(aggregate(LINES + longer + rival)))


def test_new_lines_carry_the_whole_recipe():
    from mimir.bench.report import recipe_of

    line = {**result_line("kd", 1, 90.0), "recipe": {"teacher": "resnet20", "prune": "channels:0.5", "method": "kd",
                                               "samples": 50, "seed": 1, "iterations": 400, "precision": "bf16"}}
    del line["config"]
    assert recipe_of(line)["precision"] == "bf16" and recipe_of(line)["device"] == "auto"


def _variant(method, seed, acc, options=None, iterations=400, data="fashion-mnist", train_seconds=8.0):
    line = result_line(method, seed, acc)
    line["key"] = f"{method}-{json.dumps(options)}-{iterations}-{data}-{seed}"
    line["config"].update(options=options or {}, iterations=iterations, data=data)
    line["summary"]["train_seconds"] = train_seconds
    return line


def test_ablation_sets_each_ingredient_against_plain_mir_with_the_same_recipe():
    from mimir.bench.report import ablation

    lines = [_variant("mir", s, 90.0 + s * 0.1) for s in (1, 2)]
    lines += [_variant("mir", s, 91.0 + s * 0.1, {"mix": "mixup"}) for s in (1, 2)]
    lines += [_variant("mir-plus", s, 92.0) for s in (1, 2)]
    lines += [_variant("mir", 1, 50.0, {"mix": "cutmix"}, iterations=800)]   # no plain mir at 800: no pair
    lines += [_variant("kd", 1, 80.0)]
    table = ablation(aggregate(lines))
    assert len(table) == 2 + 2
    plus, mixup = table[2], table[3]
    assert "| mir-plus (augment=randaugment, mix=mixup, schedule=cosine, stages=1.0) | 92.00 +- 0.00 |" in plus
    assert "| 90.15 +- 0.07 | +1.85 |" in plus
    assert "| mix=mixup | 91.15 +- 0.07 | 90.15 +- 0.07 | +1.00 |" in mixup
    assert ablation(aggregate([_variant("kd", 1, 80.0)])) == []


def test_a_variant_is_named_by_the_options_its_cells_recorded():
    """A cell that records every option in effect (a family's defaults, or defaults since changed)
    is named by those, not by the method's present class defaults."""
    from mimir.bench.report import ablation
    from mimir.methods import get_method

    lines = [_variant("mir", 1, 80.0), _variant("mir-plus", 1, 85.0)]
    lines[1]["summary"]["method_options"] = {**get_method("mir").options, "optimizer": "adamw", "warmup": 0.05}
    plus = ablation(aggregate(lines))[-1]
    assert "| mir-plus (optimizer=adamw, warmup=0.05) | 85.00 +- 0.00 |" in plus
    # a cell from before cells recorded their options: named by the method's defaults of then
    older = ablation(aggregate(lines[:1] + [_variant("mir-plus", 1, 85.0)]))[-1]
    assert "| mir-plus (augment=randaugment, mix=mixup, schedule=cosine, stages=1.0) | 85.00 +- 0.00 |" in older


def test_each_ingredient_on_top_of_the_others_pairs_runs_that_differ_by_one():
    """mir-plus against mir with all of mir-plus's ingredients but one: that one's gain and cost;
    never two runs that differ by two ingredients, nor a single ingredient (the ablation has it)."""
    from mimir.bench.report.aggregate import leave_one_out
    from mimir.bench.report.markdown import render_markdown

    three = {"mix": "mixup", "augment": "randaugment", "stages": 1.0}
    lines = [_variant("mir", 1, 88.0), _variant("mir", 1, 89.0, {"mix": "mixup"})]
    lines += [_variant("mir", 1, 90.0, three, train_seconds=6.0)]                          # mir-plus minus cosine
    lines += [_variant("mir", 1, 89.5, {"augment": "randaugment", "schedule": "cosine"})]   # two from any other
    lines += [_variant("mir-plus", 1, 90.5, train_seconds=9.0)]
    lines += [_variant("mir-plus", 1, 90.1, {"mix": "cutmix"})]   # a candidate in place of mixup: not one more
    lines += [_variant("mir-plus", 1, 90.7, {"ema": 0.99})]       # a candidate on top of mir-plus
    pairs = {(name, full.mean, less.mean) for name, full, less in leave_one_out(aggregate(lines))}
    assert pairs == {("schedule=cosine", 90.5, 90.0), ("ema=0.99", 90.7, 90.5)}
    text = render_markdown(lines, "r.jsonl")
    assert "| schedule=cosine | 90.50 +- 0.00 | 90.00 +- 0.00 | +0.50 | 1 | +3 |" in text
    assert "## Each ingredient on top of the others" not in render_markdown(lines[:2], "r.jsonl")


def test_accuracy_against_training_time_where_budgets_differ(tmp_path):
    from mimir.bench.report import plot_names, time_table

    lines = [_variant("mir", 1, 91.0, iterations=400, train_seconds=60),
             _variant("mir", 1, 92.0, iterations=2000, train_seconds=300),
             _variant("mir-plus", 1, 92.3, iterations=2000, train_seconds=400)]
    names = plot_names(aggregate(lines))
    assert "acc_vs_time_resnet20_channels-0.5_50_fashion-mnist.png" in names
    table = time_table(aggregate(lines))
    assert table[0] == "| teacher | prune | samples | data | method | 400 its | 2000 its |"
    assert table[2:] == ["| resnet20 | channels:0.5 | 50 | fashion-mnist | mir | 91.00 % (60 s) | 92.00 % (300 s) |",
                         "| resnet20 | channels:0.5 | 50 | fashion-mnist | mir-plus (augment=randaugment, mix=mixup, "
                         "schedule=cosine, stages=1.0) | - | 92.30 % (400 s) |"]
    assert time_table(aggregate(LINES)) == []
    assert not any(n.startswith("acc_vs_time") for n in plot_names(aggregate(LINES)))
    results = tmp_path / "r.jsonl"
    results.write_text("\n".join(json.dumps(l) for l in lines))
    write_report(results, tmp_path / "docs")
    assert (tmp_path / "docs" / "plots" / "acc_vs_time_resnet20_channels-0.5_50_fashion-mnist.png").is_file()
    assert "## Accuracy against training time" in (tmp_path / "docs" / "RESULTS.md").read_text()


def test_ablation_names_a_recipe_field_that_sets_otherwise_identical_pairs_apart():
    from mimir.bench.report import ablation

    lines = []
    for head_pruning, shift in (("dims", 0.0), ("heads", -3.0)):
        for method, acc in (("mir", 90.0), ("mir-plus", 91.0)):
            line = _variant(method, 1, acc + shift)
            line["key"] += head_pruning
            line["config"]["head_pruning"] = head_pruning
            lines.append(line)
    table = ablation(aggregate(lines))
    labels = [row.split(" | ")[5] for row in table[2:]]
    assert labels == ["mir-plus (augment=randaugment, mix=mixup, schedule=cosine, stages=1.0)",
                      "mir-plus (augment=randaugment, mix=mixup, schedule=cosine, stages=1.0), head_pruning=heads"]
    assert [row.split(" | ")[7] for row in table[2:]] == ["90.00 +- 0.00", "87.00 +- 0.00"]


def test_time_table_keeps_runs_that_differ_only_in_a_recipe_field_apart():
    from mimir.bench.report import time_table

    lines = [_variant("mir", 1, 91.0, iterations=400, train_seconds=60),
             _variant("mir", 1, 92.0, iterations=2000, train_seconds=300)]
    for line, acc in zip([_variant("mir", 1, 0.0, iterations=400), _variant("mir", 1, 0.0, iterations=2000)], (85, 86)):
        line["key"] += "-heads"
        line["config"]["head_pruning"] = "heads"
        line["summary"]["compressed"]["accuracy"] = acc
        lines.append(line)
    fast = _variant("mir", 1, 92.5, iterations=2000, train_seconds=300)
    fast["key"] += "-lr"
    fast["config"]["lr"] = 0.1
    table = time_table(aggregate(lines + [fast]))
    assert table[2:] == ["| resnet20 | channels:0.5 | 50 | fashion-mnist | mir | 91.00 % (60 s) | 92.00 % (300 s) |",
                         "| resnet20 | channels:0.5 | 50 | fashion-mnist | mir (head_pruning=heads) | 85.00 % (8 s) | "
                         "86.00 % (8 s) |",
                         "| resnet20 | channels:0.5 | 50 | fashion-mnist | mir (lr=0.1) | - | 92.50 % (300 s) |"]


def test_synthetic_sets_are_shown_once_per_teacher_and_count():
    from mimir.bench.report import render_markdown, synthetic_sets

    lines = [_variant("mir", s, 90.0, data="synthetic:256") for s in (2, 1)] + [_variant("kd", 1, 80.0,
                                                                                        data="synthetic:256")]
    assert list(synthetic_sets(lines)) == ["synthetic_resnet20_256_seed1.png"]
    assert "![synthetic_resnet20_256_seed1](plots/synthetic_resnet20_256_seed1.png)" in render_markdown(lines, "r")
    assert synthetic_sets(LINES) == {}


def test_synthetic_grid_is_drawn_from_the_seeded_set(tmp_path, monkeypatch):
    import torch

    import mimir.data.synthetic as synthetic
    from mimir.bench.report import plot_synthetic
    from mimir.data import UnlabeledImages

    asked = []

    def fake(teacher, config, n, seed, **kwargs):
        asked.append((n, seed, config.input_size))
        return UnlabeledImages(torch.full((n, 1, 28, 28), 200, dtype=torch.uint8))

    monkeypatch.setattr(synthetic, "synthetic_images", fake)
    paths = plot_synthetic([_variant("mir", 3, 90.0, data="synthetic:16")], tmp_path)
    assert asked == [(16, 3, 28)] and [p.name for p in paths] == ["synthetic_resnet20_16_seed3.png"]
    from PIL import Image

    with Image.open(paths[0]) as img:
        assert img.size == (4 * 30 * 3, 4 * 30 * 3)


def test_every_row_names_its_images_once_a_file_holds_two_sources():
    one = [_variant("mir", s, 90.0) for s in (1, 2)]
    assert {r.setting for r in aggregate(one)} == {""}
    digits = [_variant("mir", s, 85.0, data="digits") for s in (1, 2)]
    for line in digits:
        line["config"]["samples"] = 300   # another comparison: data does not vary within either
    assert sorted(r.setting for r in aggregate(one + digits)) == ["data=digits", "data=fashion-mnist"]


def _recipe(method, **fields):
    from mimir.recipe import recipe_defaults

    recipe = {**recipe_defaults(), "method": method, **fields}
    del recipe["seed"]
    return recipe


def test_line_labels_name_only_what_differs_and_is_not_a_default():
    from mimir.bench.report.plots import line_labels

    recipes = [_recipe("mir"), _recipe("mir", round_to=8), _recipe("kd"), _recipe("bp"),
               _recipe("mir", options={"mix": "cutmix"}), _recipe("mir-plus"), _recipe("mir", data="imgs/digits-300")]
    labels = line_labels(recipes, "samples")
    assert labels == ["mir", "mir (round_to=8)", "kd", "bp", "mir (mix=cutmix)", "mir-plus", "mir (data=digits-300)"]
    assert not any("None" in label for label in labels)          # round_to=None: the default, never named
    same = [_recipe("mir", iterations=400), _recipe("kd", iterations=400)]
    assert line_labels(same, "samples") == ["mir", "kd"]           # shared by all lines: not named
    budgets = [_recipe("mir", iterations=400), _recipe("mir", iterations=6000)]
    assert line_labels(budgets, "samples") == ["mir (iterations=400)", "mir (iterations=6000)"]
    assert line_labels(budgets, "iterations") == ["mir", "mir"]    # the x axis: one line
    # an option given is named even at a default: mir-plus's defaults depend on the family and the run's date
    plus = [_recipe("mir-plus"), _recipe("mir-plus", options={"mix": "mixup"})]
    assert line_labels(plus, "samples") == ["mir-plus", "mir-plus (mix=mixup)"]


def test_line_styles_colour_each_method_and_mark_each_variant():
    from mimir.bench.report.plots import line_styles, method_colors

    methods = ["bp", "cd", "cd-ft", "fskd", "kd", "mir", "mir-plus", "mir-postpool", "none", "practise", "x", "y"]
    colors = method_colors(methods)
    assert len(set(colors.values())) == len(methods)               # distinct beyond ten methods too
    recipes = [_recipe("mir"), _recipe("mir", round_to=8), _recipe("kd")] + [
        _recipe("mir", options={"kd": float(k)}) for k in range(1, 30)]
    styles = line_styles(recipes, "samples", colors)
    assert len({s.label for s in styles}) == len(recipes)
    mir = [s for s, r in zip(styles, recipes) if r["method"] == "mir"]
    assert {s.color for s in mir} == {colors["mir"]} and styles[2].color == colors["kd"] != colors["mir"]
    assert (mir[0].marker, mir[0].linestyle) == ("o", "-")          # the plain line
    assert len({(s.marker, s.linestyle, s.filled) for s in mir}) == len(mir)


def test_macs_plot_has_a_panel_per_teacher_and_legends_outside_the_axes():
    from mimir.bench.report.plots import _macs_layout, macs_figure, method_colors, samples_figure

    other = [{**line, "key": "r56-" + line["key"]} for line in LINES if "config" in line]
    for line in other:
        line["config"] = {**line["config"], "teacher": "resnet56"}
    rows = [r for r in aggregate(LINES + other) if r.mean is not None]
    assert _macs_layout(rows) == [[("resnet20", 50)], [("resnet56", 50)]]
    colors = method_colors(r.method for r in rows)
    import matplotlib.pyplot as plt

    for fig in (samples_figure([r for r in rows if r.teacher == "resnet20"], colors), macs_figure(rows, colors)):
        fig.canvas.draw()
        legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        assert legends
        for legend in legends:
            box = legend.get_window_extent()
            assert not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes if ax.axison)
        plt.close(fig)


def test_no_method_is_named_in_bench_code():
    """Bench and report code asks the methods (``ablation_base``, ``quick_options``,
    ``selects_blocks``) instead of naming them."""
    import re
    from pathlib import Path

    import mimir.bench
    from mimir.methods import list_methods

    names = "|".join(re.escape(m) for m in list_methods())
    quoted = re.compile(rf"""(["'`])({names})\1""")
    found = [(path.name, m.group(0)) for path in Path(mimir.bench.__file__).parent.rglob("*.py")
             for m in quoted.finditer(path.read_text())]
    assert not found


def test_a_quantized_grid_gets_int8_columns():
    import copy
    lines = copy.deepcopy([line for line in LINES if line.get("config", {}).get("method") == "mir"])
    for i, line in enumerate(lines):
        line["config"]["quantize"] = "int8"
        line["summary"]["compressed_int8"] = {"accuracy": 91.0 + i}
        line["summary"]["teacher_int8"] = {"accuracy": 92.0}
    table = markdown_table(aggregate(lines))
    assert "| int8 % | teacher int8 % |" in table.splitlines()[0]
    assert table.splitlines()[2].endswith(f" {91.0 + (len(lines) - 1) / 2:.2f} | 92.00 |")
    assert "int8" not in markdown_table(aggregate(LINES))   # a grid without quantize: the table as before


def test_a_group_whose_cells_ran_on_different_devices_warns_that_its_times_do_not_compare(tmp_path):
    from mimir.bench.report import mixed_devices, render_markdown

    lines = [_variant("mir", 1, 90.0), _variant("mir", 2, 90.2), _variant("kd", 1, 80.0)]
    assert mixed_devices(lines) == []
    lines[1]["device"] = "cuda (NVIDIA H100), bf16"
    lines[0]["device"] = "cpu (Intel Xeon, 1 threads), fp32"
    warned = mixed_devices(lines)
    assert len(warned) == 1 and "resnet20, channels:0.5, 50 samples ran on 3 devices" in warned[0]
    assert "times do not compare" in render_markdown(lines, "r.jsonl")


def test_a_cell_run_twice_counts_once_and_its_latest_line_wins(tmp_path):
    rerun = copy.deepcopy(LINES[0])   # mir, seed 1, 91.0 % run again: 91.75 %
    rerun["summary"]["compressed"]["accuracy"] = 91.75
    results = tmp_path / "r.jsonl"
    results.write_text("\n".join(json.dumps(line) for line in LINES + [rerun]) + "\n")
    text = write_report(results, tmp_path / "docs").read_text()
    assert "6 finished cells, 2 failed or superseded lines" in text   # the error line and the earlier run
    assert "| mir | 91.75 +- 0.25 | 3 |" in text   # seeds 91.75, 91.5, 92.0: the latest line is the one counted
