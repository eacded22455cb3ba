"""One recipe for a run: the same object from YAML, the CLI, the API and a saved model."""


import pytest
import torch
import yaml

from mimir.cli import build_parser, main, recipe_from_args
from mimir.errors import MimirError
from mimir.recipe import Recipe, load_recipe, settings


def test_yaml_round_trip_and_key():
    r = Recipe(method="kd", options={"temperature": 2}, samples=10, seed=3, device="cpu", iterations=7)
    back = Recipe.from_dict(yaml.safe_load(r.to_yaml()))
    assert back == r and back.key == r.key and back.options["temperature"] == 2.0
    assert r.with_(seed=4).key != r.key


def test_cli_flags_build_the_same_recipe_as_the_api():
    args = build_parser().parse_args(["compress", "--samples", "12", "--method", "kd", "--option", "temperature=3",
                                      "--prune", "channels:0.75", "--device", "cpu", "--precision", "fp32",
                                      "--eval-data", "none"])
    assert recipe_from_args(args) == Recipe(samples=12, method="kd", options={"temperature": 3.0},
                                            prune="channels:0.75", device="cpu", eval_data=None)


@pytest.mark.parametrize("fields,expected", [
    ({"samples": 0}, "--samples must be at least 1"),
    ({"precision": "fp8"}, "--precision must be one of"),
    ({"device": "tpu"}, "--device must be auto, cpu, cuda or cuda:N"),
    ({"method": "kd", "options": {"temprature": 2}}, "unknown option 'temprature' for method 'kd' (known: temperature)"),
    ({"method": "none", "options": {"temperature": 2}}, "'none' takes no options"),
    ({"colour": "red"}, "unknown recipe field 'colour'"),
    ({"method": "practise"}, "does not fit --prune"),
])
def test_invalid_recipes_are_one_line_errors(fields, expected):
    with pytest.raises(MimirError) as err:
        Recipe.from_dict(fields)
    assert expected in str(err.value) and "\n" not in str(err.value)


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_saved_model_reruns_from_its_recipe_bit_identically(tmp_path, capsys):
    first, second, third = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    assert main(["compress", "--no-latency", "--samples", "16", "--iterations", "12", "--seed", "2", "--eval-data", "none",
                 "--device", "cpu", "--out", str(first), "--json"]) == 0
    recipe = load_recipe(first)
    assert recipe.samples == 16 and recipe.iterations == 12 and recipe.seed == 2 and recipe.device == "cpu"
    assert main(["compress", "--no-latency", "--recipe", str(first), "--out", str(second), "--json"]) == 0
    a, b = _weights(first), _weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    (tmp_path / "r.yaml").write_text(recipe.to_yaml())
    assert main(["compress", "--no-latency", "--recipe", str(tmp_path / "r.yaml"), "--seed", "3", "--out", str(third), "--json"]) == 0
    assert load_recipe(third).seed == 3   # a flag overrides the recipe
    assert not all(torch.equal(a[k], _weights(third)[k]) for k in a)


def test_recipe_from_a_file_without_one(tmp_path, capsys):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "w.pt")
    assert main(["compress", "--recipe", str(tmp_path / "w.pt")]) == 2
    assert "records no recipe" in capsys.readouterr().err


def test_in_memory_objects_are_named_and_must_be_passed_again(teacher20, fmnist_train):
    import mimir

    teacher, config = teacher20
    few = fmnist_train.subset(torch.arange(8)).without_labels()
    result = mimir.compress(teacher, data=few, samples=8, iterations=2, data_config=config, eval_data=None,
                            progress=False)
    recipe = result.recipe
    assert recipe.teacher == "<in-memory CifarResNet>" and recipe.data == "<in-memory UnlabeledImages>"
    with pytest.raises(MimirError, match="pass it again"):
        mimir.compress(recipe=recipe, progress=False)
    again = mimir.compress(teacher, data=few, recipe=recipe, progress=False)   # the objects given again
    a, b = result.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- one list of settings
def _cli_words(name, value) -> list[str]:
    from mimir.recipe import flag_of

    flag = flag_of(name)
    if isinstance(value, bool):
        return [flag] if value else []
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in ("--option", f"{k}={v}")]
    if isinstance(value, tuple):
        return [flag, ",".join(str(v) for v in value)]
    return [flag, "none" if value is None else str(value)]


@pytest.mark.parametrize("name", sorted(settings()))
def test_every_setting_reaches_the_cli_the_api_a_grid_and_the_saved_file(name, monkeypatch, tmp_path):
    """Each recipe field, declared once, is a flag, a keyword argument, a grid key and an entry of
    the saved recipe, all giving the same recipe: the declaration's example, not the default."""
    import mimir
    from mimir import api
    from mimir.bench.config import parse_config
    from mimir.core import FASHION_MNIST
    from mimir.export import save_model
    from mimir.models import create_model
    from mimir.recipe import flag_of, grid_key_of, recipe_defaults

    example = settings()[name].example
    given = {name: example, **settings()[name].needs}   # with the settings it applies with
    expected = Recipe(**given)
    assert getattr(expected, name) != getattr(Recipe(), name) or recipe_defaults()[name] != example
    if flag_of(name) is not None:
        args = build_parser().parse_args(["compress"] + [w for k, v in given.items() for w in _cli_words(k, v)])
        assert recipe_from_args(args) == expected
    seen = {}
    monkeypatch.setattr(api, "run_recipe", lambda recipe, **kw: seen.setdefault("recipe", recipe))
    mimir.compress(**given)
    assert seen["recipe"] == expected
    if grid_key_of(name) is not None:
        row = {"teacher": "resnet20", "prune": "channels:0.5", "methods": ["mir"], "samples": [500]}
        value = [example] if grid_key_of(name) in ("methods", "seeds") else example
        row = {**row, **settings()[name].needs, grid_key_of(name): value}
        cells = parse_config({"iterations": 2000, "eval_data": "auto", "grid": [row]}).cells
        assert [c.recipe for c in cells] == [expected]
    (tmp_path / "r.yaml").write_text(expected.to_yaml())
    assert load_recipe(tmp_path / "r.yaml") == expected
    saved = save_model(tmp_path / "m.pt", create_model("resnet20", num_classes=10, in_chans=1), FASHION_MNIST,
                       info={"recipe": expected.to_dict()})
    assert load_recipe(saved) == expected
