"""A cell's key is what it runs: a changed default reruns the cells it touches, and only those;
records of earlier versions are read by what they ran."""

from __future__ import annotations

import pytest

from mimir.bench import load_config, parse_config, read_results
from mimir.bench.cells import finished_keys, make_cell, outdated
from mimir.methods import get_method
from mimir.methods.mir import MiRPlus
from mimir.recipe import Recipe
from tests.helpers import ROOT

GRID = {"name": "t", "iterations": 10, "seeds": [1], "eval_data": None,
        "grid": [{"teacher": "resnet20", "prune": ["channels:0.5", "blocks:layer1.1"], "methods": ["mir", "mir-plus"],
                  "samples": [5]}]}


def _record(cell, teacher_family: str = "convolutional") -> dict:
    """The record today's runner leaves for a finished cell (what it ran: the recipe as run and the
    method's options in effect)."""
    options = get_method(cell.method).in_effect(cell.options, teacher_family)
    return {"key": cell.key, "status": "ok", "recipe": cell.recipe.to_dict(),
            "summary": {"recipe": cell.run.to_dict(), "method_options": options}}


@pytest.fixture(autouse=True)
def avx512(monkeypatch):
    monkeypatch.setenv("MIMIR_CPU_FLAGS", "avx2,avx512f")   # an unset round_to is 16 here, on any CPU


def test_a_changed_method_default_reruns_the_cells_of_that_method_and_only_those(monkeypatch):
    cells = parse_config(GRID).cells
    records = [_record(c) for c in cells]
    assert finished_keys(records, cells) == {c.key for c in cells}
    monkeypatch.setattr(MiRPlus, "options", {**MiRPlus.options, "warmup": 0.1})   # a new default
    changed = parse_config(GRID).cells
    done = finished_keys(records, changed)
    assert {c.key for c in changed if c.key in done} == {c.key for c in changed if c.method == "mir"}
    assert {c.method for c in outdated(records, changed)} == {"mir-plus"}


def test_an_unset_round_to_is_the_cpus_block_and_part_of_the_key(monkeypatch):
    cell = make_cell(Recipe(prune="channels:0.5", eval_data=None))
    assert cell.round_to is None and cell.run.round_to == 16
    record = _record(cell)
    monkeypatch.setenv("MIMIR_CPU_FLAGS", "avx2")   # the grid expanded for an AVX2 CPU: its cells run with 8
    again = make_cell(Recipe(prune="channels:0.5", eval_data=None))
    assert again.run.round_to == 8 and finished_keys([record], [again]) == set()
    blocks = make_cell(Recipe(prune="blocks:layer1.1", eval_data=None))   # rounding does not apply: same key
    assert blocks.run.round_to is None and blocks.key == make_cell(blocks.recipe).key


def test_records_of_earlier_versions_count_for_what_they_ran():
    cnn = make_cell(Recipe(prune="channels:0.5", eval_data=None))
    vit = make_cell(Recipe(teacher="vit_p7", prune="channels:0.5", eval_data=None))
    drop = make_cell(Recipe(prune="blocks:layer1.1", eval_data=None))

    def older(cell, family="convolutional", **as_run):
        r = _record(cell, family)
        for part in (r["recipe"], r["summary"]["recipe"]):
            part.pop("head_pruning")   # written before head_pruning existed
        r["summary"]["recipe"].update(as_run)
        return r

    assert finished_keys([older(cnn)], [cnn]) == {cnn.key}            # a CNN has no heads to prune
    assert finished_keys([older(vit, "transformer")], [vit]) == set()  # channel pruning dropped whole heads then
    assert finished_keys([older(cnn, round_to=None)], [cnn]) == set()  # an unset round_to did not round then
    assert finished_keys([older(drop, round_to=None)], [drop]) == {drop.key}
    config_line = {"key": "05f4dda264a56350", "status": "ok",   # the oldest lines: the grid's fields under config
                   "config": {k: drop.recipe.to_dict()[k] for k in ("teacher", "weights", "prune", "method", "samples",
                                                                     "seed", "iterations", "batch_size", "data",
                                                                     "eval_data", "input_size", "options")},
                   "summary": {}}
    assert finished_keys([config_line], [drop]) == {drop.key}


def test_the_committed_grids_that_ran_with_todays_settings_are_finished():
    """beyond-mir-vit ran with today's defaults (AVX-512: channels rounded to 16): every cell of it
    is finished; beyond-mir-long ran before an unset round_to rounded, so all of it runs again."""
    for name, finished in (("beyond-mir-vit", "all"), ("beyond-mir-long", "none")):
        config = load_config(ROOT / "benchmarks" / f"{name}.yaml")
        records = read_results(ROOT / "benchmarks" / "results" / f"{name}.jsonl")
        done = finished_keys(records, config.cells)
        assert len(done) == (len(config.cells) if finished == "all" else 0), name
        assert len(outdated(records, config.cells)) == (0 if finished == "all" else len(config.cells)), name
