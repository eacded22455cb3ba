
import pytest
import torch

from mimir.bench import load_config, parse_config
from mimir.errors import MimirError
from mimir.models import create_model
from tests.helpers import GOOD, ROOT


def _with(change):
    raw = {**GOOD, "grid": [dict(GOOD["grid"][0])]}
    change(raw)
    return raw


def test_good_config_expands_to_cells():
    cells = parse_config(GOOD).cells
    assert len(cells) == 2 * 2 * 2
    assert [c.samples for c in cells[:4]] == [5, 5, 5, 5]       # one sample size at a time
    assert len({c.key for c in cells}) == 8


def test_round_to_row_goes_into_every_cell_and_its_key():
    plain = parse_config(GOOD).cells
    rounded = parse_config(_with(lambda r: r["grid"][0].update(round_to=8))).cells
    assert {c.round_to for c in plain} == {None} and {c.round_to for c in rounded} == {8}
    assert not {c.key for c in plain} & {c.key for c in rounded}


@pytest.mark.parametrize("change,key", [
    (lambda r: r.update(iteratoins=5), "iteratoins: unknown key"),
    (lambda r: r.pop("grid"), "grid: missing"),
    (lambda r: r.update(seeds="one"), "seeds: must be an integer"),
    (lambda r: r.update(iterations=0), "grid[0]: --iterations must be at least 1"),
    (lambda r: r.update(order="seed"), "order: must be one of rows, seeds"),
    (lambda r: r["grid"][0].update(samples=[5, -1]), "grid[0].samples[1]: must be at least 1 (got -1)"),
    (lambda r: r["grid"][0].update(methods=["mir", "magic"]), "grid[0].methods[1]: must be one of bp, cd"),
    (lambda r: r["grid"][0].update(prune=["channels:2"]), "grid[0].prune[0]: prune ratio 2 is outside (0, 1)"),
    (lambda r: r["grid"][0].update(prune=["blocks:auto:2"]), "grid[0].methods: 'mir' does not fit"),
    (lambda r: r["grid"][0].pop("teacher"), "grid[0].teacher: missing"),
    (lambda r: r["grid"][0].update(teacher={"name": "resnet50", "wieghts": "x"}), "grid[0].teacher.wieghts: unknown"),
    (lambda r: r["grid"][0].update(sample=[5]), "grid[0].sample: unknown key"),
    (lambda r: r["grid"][0].update(round_to=0), "grid[0].round_to: must be a positive integer"),
    (lambda r: r["grid"][0].update(prune=["blocks:layer1.1"], round_to=8), "grid[0]: --round-to applies to channel"),
    (lambda r: r["grid"][0].update(options=[{"mix": "cutmix"}, 3]), "grid[0].options: must be a mapping"),
    (lambda r: r["grid"][0].update(options=[{"mix": "cutout"}]), "grid[0]: option mix='cutout'"),
    (lambda r: r["grid"][0].update(data="synthetic:x"), "grid[0].data: --data synthetic:x: the number of images"),
    (lambda r: r["grid"][0].update(extra_data=7), "grid[0].extra_data: must be a folder of images or synthetic:N"),
    (lambda r: r["grid"][0].update(prune=["blocks:layer9.1"]), "grid[0].prune: unknown or non-droppable block 'layer9.1'"),
    (lambda r: r["grid"][0].update(prune=["channels:fc2=0.5"]), "grid[0].prune: the model has no layer named 'fc2'"),
    (lambda r: r["grid"][0].update(teacher="no_such_module:build"), "grid[0].teacher: cannot import 'no_such_module:build'"),
])
def test_errors_are_one_line_and_name_the_key(change, key):
    with pytest.raises(MimirError) as err:
        parse_config(_with(change))
    message = str(err.value)
    assert message.startswith(key) and "\n" not in message


def test_rows_set_their_own_data_and_option_variants():
    raw = _with(lambda r: r["grid"][0].update(data="synthetic:64", extra_data="imgs",
                                              options=[{}, {"mix": "cutmix"}, {"kd": 1.0}]))
    cells = parse_config(raw).cells
    mir = [c for c in cells if c.method == "mir"]
    assert len(mir) == 2 * 2 * 3 and len(cells) == len(mir) + 2 * 2   # kd ignores mir's options: one kd cell each
    assert len({c.key for c in cells}) == len(cells)
    assert {c.data for c in cells} == {"synthetic:64"} and {c.extra_data for c in cells} == {"imgs"}
    assert [dict(c.options) for c in mir[:3]] == [{}, {"mix": "cutmix"}, {"kd": 1.0}]
    assert "mix=cutmix" in mir[1].describe() and "data=synthetic:64" in mir[1].describe()
    assert "iterations=10" in mir[1].describe()   # not the default budget: named


def test_a_cell_two_rows_repeat_runs_once_in_its_first_place():
    row = {"teacher": "resnet20", "prune": ["channels:0.5"], "samples": [5]}
    raw = {**GOOD, "grid": [{**row, "methods": ["mir"]}, {**row, "methods": ["kd"]}, {**row, "methods": ["mir"]}]}
    assert [(c.method, c.seed) for c in parse_config(raw).cells] == [("mir", 1), ("mir", 2), ("kd", 1), ("kd", 2)]


def test_order_seeds_runs_every_row_at_a_seed_before_the_next_seed():
    row = {"teacher": "resnet20", "prune": ["channels:0.5"], "samples": [5]}
    raw = {**GOOD, "seeds": [1, 2, 3],
           "grid": [{**row, "methods": ["mir"]}, {**row, "methods": ["kd"], "seeds": [2, 1]}]}
    rows, seeds = parse_config(raw).cells, parse_config({**raw, "order": "seeds"}).cells
    assert [(c.method, c.seed) for c in rows] == [("mir", 1), ("mir", 2), ("mir", 3), ("kd", 2), ("kd", 1)]
    assert [(c.method, c.seed) for c in seeds] == [("mir", 1), ("kd", 1), ("mir", 2), ("kd", 2), ("mir", 3)]
    assert {c.key for c in rows} == {c.key for c in seeds}


def test_shipped_beyond_mir_grid():
    config = load_config(ROOT / "benchmarks" / "beyond-mir.yaml")
    assert {c.teacher for c in config.cells} >= {"resnet20"}
    assert any(c.options.get("mix") == "salient" for c in config.cells)
    long = load_config(ROOT / "benchmarks" / "beyond-mir-long.yaml").cells
    assert [c.seed for c in long] == sorted(c.seed for c in long)   # seed by seed
    assert {c.iterations for c in long} == {400, 2000, 6000}


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ngrid: [\n  teacher: resnet20\n")
    with pytest.raises(MimirError, match="not valid YAML at line"):
        load_config(path)


def test_shipped_fashion_mnist_grid():
    config = load_config(ROOT / "benchmarks" / "fashion-mnist.yaml")
    cells = config.cells
    assert len({c.iterations for c in cells if c.method != "none"}) == 1   # one budget for all
    assert {c.seed for c in cells} == {1, 2, 3}
    r20 = {(c.prune, c.samples) for c in cells if c.teacher == "resnet20"}
    assert {("channels:0.5", n) for n in (50, 100, 500, 1000)} <= r20
    assert {("channels:0.75", n) for n in (50, 500)} <= r20
    assert {c.method for c in cells if c.teacher == "resnet56"} == {"mir", "kd", "bp"}
    assert {("channels:0.75", 8), ("channels-all:0.5", None)} <= {(c.prune, c.round_to) for c in cells}
    assert {"none", "bp", "kd", "fskd", "cd", "cd-ft", "mir", "mir-postpool", "practise"} == {c.method for c in cells}


def test_shipped_imagenet_grid_builds_every_model():
    config = load_config(ROOT / "benchmarks" / "imagenet.yaml")
    assert {c.seed for c in config.cells} == {2021, 2022, 2023, 2024, 2025}
    assert {c.samples for c in config.cells} == {50, 100, 500, 1000}
    assert all(c.iterations == 2000 and c.batch_size == 64 for c in config.cells)
    for name in sorted({c.teacher for c in config.cells}):
        model = create_model(name)
        assert model.forward_head(model.forward_features(torch.zeros(1, 3, 224, 224))).shape == (1, 1000)
