"""Benchmark configuration: a YAML file describing a grid of teacher x pruning x method x samples x seed;
every cell of the grid is one :class:`~mimir.recipe.Recipe`.

    name: fashion-mnist
    data: fashion-mnist            # or a folder of training images to sample from
    eval_data: fashion-mnist       # or an ImageNet-style folder (one subfolder per class)
    iterations: 500                # one budget for every iterative method
    batch_size: 64
    seeds: [1, 2, 3]
    order: rows                    # or seeds: every row's first seed before any row's second one
    options: {cd_steps: 400}       # method settings, as --option
    grid:
      - teacher: resnet20          # a registry name (bundled teacher), or {name: resnet50, weights: FILE}
        prune: [channels:0.5]
        methods: [none, bp, kd, fskd, cd, cd-ft, mir, mir-postpool]
        samples: [50, 100, 500, 1000]
        round_to: 8                # optional: keep a multiple of 8 channels per pruned layer
        importance: [l1, taylor]   # optional: channel criteria to compare (default l1)
        global: true               # optional: rank channels across layers
        data: synthetic:256        # optional: this row's samples (default: the top-level data)
        extra_data: FOLDER         # optional: unlabeled images added to the samples
        options: [{}, {mix: cutmix}, {kd: 1.0}]   # optional: a mapping, or a list of variants to compare
    slurm:                         # optional: what each cell's job asks for with --executor slurm
      partition: gpu               # (or submitit-local); the command line's flags override these
      time: 120                    # minutes per cell
      cpus: 8
      gpus: 1                      # a cell with a GPU runs with --device cuda
      mem: 32G
      array_parallelism: 64        # cells running at once
      sbatch: {qos: high}          # any other sbatch parameter

The keys are the recipe's fields, derived from their declarations (:mod:`mimir.recipe`): every
setting of ``mimir compress`` is a key here, by its field name (``batch_size``, ``lr``, ``device``,
``precision``...) except ``methods``, ``seeds`` and ``global`` (a list of methods and seeds, the flag
``--global``). A key given at the top applies to every row, a row's own overrides it; a list gives
one cell per value. Every problem is reported in one line naming the key, e.g.
``grid[1].samples: --samples must be at least 1 (got -1)``.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mimir.bench.cells import Cell, make_cell
from mimir.cluster import Resources
from mimir.data.synthetic import parse_synthetic
from mimir.errors import MimirError
from mimir.methods import get_method, list_methods
from mimir.models import is_model
from mimir.prune import check_names, parse_scheme
from mimir.recipe import Recipe, grid_key_of, recipe_defaults, setting_problem, settings
from mimir.resolve import architecture
from mimir.teachers.bundled import bundled_teacher_path

#: top-level keys that are not recipe settings
_STRUCTURE = ("name", "order", "grid", "slurm")
_ORDERS = ("rows", "seeds")
_REQUIRED = ("teacher", "prune", "methods", "samples")
#: the recipe fields whose values a row lists, outermost first: the order of a row's cells (any other
#: field given several values varies innermost, in the order the recipe declares its fields)
_AXES = ("teacher", "prune", "samples", "seed", "method", "importance", "options")


@dataclass
class BenchConfig:
    name: str
    cells: list[Cell]
    source: str = ""
    resources: Resources = field(default_factory=Resources)   # the ``slurm:`` section: each cell's job


def _fail(key: str, problem: str) -> MimirError:
    return MimirError(f"{key}: {problem}", "fix that key in the configuration file")


def _fields() -> dict[str, str]:
    """Grid key -> recipe field, for every recipe field a grid may set (derived from the recipe)."""
    return {grid_key_of(name): name for name in settings() if grid_key_of(name) is not None}


def _known_keys(mapping: dict, known: set[str], prefix: str = "") -> None:
    unknown = set(mapping) - known
    if unknown:
        raise _fail(f"{prefix}{sorted(unknown)[0]}", f"unknown key (known: {', '.join(sorted(known))})")


def _teacher(value, key: str) -> dict:
    """A teacher as a name, or ``{name: ..., weights: FILE}``: the recipe's teacher and weights."""
    if isinstance(value, str) and value:
        return {"teacher": value}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        _known_keys(value, {"name", "weights"}, f"{key}.")
        weights = value.get("weights")
        if weights is not None and not isinstance(weights, str):
            raise _fail(f"{key}.weights", "must be a file path")
        return {"teacher": value["name"], "weights": weights}
    raise _fail(key, "must be a model name or {name: ..., weights: FILE}")


def _values(field: str, value, key: str) -> list:
    """The values a grid key gives its recipe field: a list is several (one cell each), anything
    else one; ``options`` is a mapping or a list of them (variants), a teacher a name or
    ``{name, weights}``, a per-channel ``mean`` / ``std`` a list of numbers (a list of such lists:
    several). Each value is checked as the recipe checks it."""
    if field == "options":
        values = value if isinstance(value, list) else [value or {}]
        if not values or not all(isinstance(v, dict) for v in values):
            raise _fail(key, "must be a mapping of method settings or a list of them")
        return values
    one = not isinstance(value, list) or (field in ("mean", "std") and not any(isinstance(v, list) for v in value))
    values = [value] if one else value
    if not values:
        raise _fail(key, "must not be an empty list")
    if field == "teacher":
        return [_teacher(v, key if one else f"{key}[{j}]") for j, v in enumerate(values)]
    for j, v in enumerate(values):
        problem = setting_problem(field, tuple(v) if isinstance(v, list) else v)
        if problem:
            raise _fail(key if one else f"{key}[{j}]", problem)
    return [{field: tuple(v) if isinstance(v, list) else v} for v in values]


def _settings_of(mapping: dict, prefix: str) -> dict[str, list]:
    """Recipe field -> its values, for every setting a top level or a row gives."""
    fields = _fields()
    out = {}
    for key, value in mapping.items():
        if key in fields:
            out[fields[key]] = _values(fields[key], value, f"{prefix}{key}")
    return out


def _top(raw: dict) -> tuple[dict[str, list], str]:
    """The settings every row starts from, and the grid's order. A grid's evaluation data defaults
    to Fashion-MNIST's test set when its data is Fashion-MNIST (as results files have always keyed
    their cells), its seeds to [0]."""
    _known_keys(raw, set(_fields()) | set(_STRUCTURE))
    if "grid" not in raw:
        raise _fail("grid", "missing (a list of rows: teacher, prune, methods, samples)")
    order = raw.get("order", "rows")
    if order not in _ORDERS:
        raise _fail("order", f"must be one of {', '.join(_ORDERS)}, not {order!r}")
    top = _settings_of(raw, "")
    data = [v["data"] for v in top.get("data", [{"data": recipe_defaults()["data"]}])]
    top.setdefault("eval_data", [{"eval_data": "fashion-mnist" if data == ["fashion-mnist"] else None}])
    top.setdefault("seed", [{"seed": 0}])
    return top, order


def _grid(raw: dict) -> list:
    grid = raw["grid"]
    if not isinstance(grid, list) or not grid:
        raise _fail("grid", "must be a non-empty list of rows")
    return grid


def _row(row, at: str, top: dict[str, list], top_keys: set[str]) -> dict[str, list]:
    """One row's settings over the top-level ones (its option variants over the top-level options)."""
    if not isinstance(row, dict):
        raise _fail(at, "must be a mapping with teacher, prune, methods, samples")
    _known_keys(row, set(_fields()), f"{at}.")
    for required in _REQUIRED:   # a row names them, or the top level does for every row
        if required not in row and required not in top_keys:
            raise _fail(f"{at}.{required}", "missing")
    own = _settings_of(row, f"{at}.")
    merged = {**top, **own}
    if "options" in top and "options" in own:
        merged["options"] = [{**t, **o} for t in top["options"] for o in own["options"]]
    return merged


def _block_choosers() -> str:
    """'A goes with blocks:auto:K, and only it' (or 'A, B go ..., and only they'): the methods that
    choose the blocks to drop themselves."""
    names = [m for m in list_methods() if get_method(m).selects_blocks]
    one = len(names) == 1
    return f"{', '.join(names)} {'goes' if one else 'go'} with blocks:auto:K, and only {'it' if one else 'they'}"


def _check_fit(schemes: list[str], methods: list[str], at: str) -> None:
    """Every method of the row fits every scheme: a method that chooses blocks itself goes with
    ``blocks:auto:K``, and only such a method."""
    for scheme in schemes:
        auto = parse_scheme(scheme).auto_k > 0
        for method in methods:
            if auto != get_method(method).selects_blocks:
                raise _fail(f"{at}.methods", f"'{method}' does not fit prune '{scheme}' ({_block_choosers()})")


def _check_options(variants: list[dict], methods: list[str], at: str) -> None:
    """Every option of the row's variants is read by some method of the row."""
    for key in {k for v in variants for k in v}:
        if not any(key in get_method(m).options for m in methods):
            raise _fail(f"{at}.options.{key}", f"no method of the row knows this option "
                                               f"({', '.join(methods)}; see 'mimir methods')")


def _row_cells(settings_: dict[str, list], at: str) -> list[Cell]:
    """The row's cells: one per choice of every listed value, ``_AXES`` outermost first (scheme by
    scheme; within a scheme sample sizes in the order given, every seed, method, importance and
    option variant of one size before the next)."""
    methods = [v["method"] for v in settings_.get("method", [])]
    _check_fit([v["prune"] for v in settings_["prune"]], methods, at)
    variants = settings_.get("options", [{}])
    _check_options(variants, methods, at)
    order = [f for f in _AXES if f in settings_] + [f for f in settings() if f in settings_ and f not in _AXES]
    cells = []
    for choice in itertools.product(*(settings_[f] if f != "options" else [{"options": v} for v in variants]
                                      for f in order)):
        fields = {k: v for part in choice for k, v in part.items()}
        fields["options"] = method_options(fields["method"], fields.get("options", {}))
        try:
            recipe = Recipe(**fields)
        except MimirError as err:
            raise _fail(at, err.problem) from None
        _check_model(recipe.teacher, recipe.prune, at)
        cells.append(make_cell(recipe, at))
    return cells


@functools.lru_cache(maxsize=256)
def _check_model(teacher: str, prune: str, at: str) -> None:
    """That the teacher's architecture can be built, and has every block or layer ``prune`` names."""
    for key, check in (("teacher", lambda: architecture(teacher)),
                       ("prune", lambda: check_names(architecture(teacher), prune))):
        try:
            check()
        except MimirError as err:
            raise MimirError(f"{at}.{key}: {err.problem}", err.fix) from None


def _unique(cells: list[Cell]) -> list[Cell]:
    """The first of each cell key: option variants a method does not read give identical cells."""
    unique: dict[str, Cell] = {}
    for c in cells:
        unique.setdefault(c.key, c)
    return list(unique.values())


def _ordered(cells: list[Cell], order: str) -> list[Cell]:
    """``order: seeds``: every row's first seed before any row's second (a grid stopped part-way
    leaves every setting with the same seeds); within a seed, the rows' order."""
    return sorted(cells, key=lambda c: c.recipe.seed) if order == "seeds" else cells


def parse_config(raw: dict, source: str = "") -> BenchConfig:
    """Validate a loaded YAML mapping and expand it into cells (every key checked as the recipe checks it)."""
    if not isinstance(raw, dict):
        raise MimirError("the configuration is not a mapping of keys", "start from benchmarks/fashion-mnist.yaml")
    top, order = _top(raw)
    name = str(raw.get("name", Path(source).stem or "bench"))
    rows = [_row(row, f"grid[{i}]", top, set(raw)) for i, row in enumerate(_grid(raw))]
    cells = [c for i, row in enumerate(rows) for c in _row_cells(row, f"grid[{i}]")]
    slurm = raw.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise _fail("slurm", "must be a mapping of resources per cell (partition, time, cpus, gpus, mem, ...)")
    resources = Resources.from_mapping(slurm, f"{source or name}: slurm")
    if resources.nodes != 1:
        raise _fail("slurm", f"a cell runs on one node (nodes: {resources.nodes}); drop nodes "
                             "(mimir compress --executor slurm --nodes N runs one long run on several)")
    return BenchConfig(name, _ordered(_unique(cells), order), source, resources)


def check_inputs(config: BenchConfig, random_weights: bool = False) -> None:
    """That what every cell reads is there, for the whole grid before any cell runs: its data,
    extra_data and eval_data folders, its weights file, or (without one) a bundled teacher.
    ``random_weights``: the cells run with random weights (a dry run), so no weights are read."""
    for cell in config.cells:
        r = cell.recipe
        for name in ("data", "extra_data", "eval_data"):
            value = getattr(r, name)
            if value in (None, "auto", "fashion-mnist") or parse_synthetic(value) is not None or Path(value).exists():
                continue
            hint = " (eval_data: none means no evaluation)" if name == "eval_data" else ""
            raise _fail(f"{cell.at}.{name}", f"folder '{value}' does not exist{hint}")
        if random_weights:
            continue
        if r.weights is not None and not Path(r.weights).is_file():
            raise _fail(f"{cell.at}.teacher.weights", f"file '{r.weights}' does not exist")
        if r.weights is None and is_model(r.teacher) and bundled_teacher_path(r.teacher) is None:
            raise _fail(f"{cell.at}.teacher", f"no trained teacher is bundled for '{r.teacher}': give "
                                              f"{{name: {r.teacher}, weights: FILE}}")


def method_options(method: str, options: dict) -> dict:
    """The grid's options that ``method`` knows (a grid's options apply to the methods that read them)."""
    known = get_method(method).options
    return {k: v for k, v in options.items() if k in known}


def load_config(path: str | Path) -> BenchConfig:
    """Read and validate a YAML benchmark configuration."""
    path = Path(path)
    if not path.is_file():
        raise MimirError(f"configuration '{path}' does not exist", "give a YAML file, e.g. benchmarks/fashion-mnist.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise MimirError(f"'{path}' is not valid YAML{where}", "fix the syntax") from None
    return parse_config(raw, str(path))
