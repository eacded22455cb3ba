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

Every problem is reported in one line naming the key, e.g. ``grid[1].samples: must be a list of
positive integers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mimir.errors import MimirError
from mimir.recipe import Recipe

_TOP_KEYS = {"name", "data", "eval_data", "iterations", "batch_size", "seeds", "order", "options", "grid",
             "input_size"}
_ORDERS = ("rows", "seeds")
_ROW_KEYS = {"teacher", "prune", "methods", "samples", "seeds", "iterations", "options", "round_to", "importance",
             "global", "data", "extra_data"}


@dataclass
class BenchConfig:
    name: str
    cells: list[Recipe]
    source: str = ""


def _fail(key: str, problem: str) -> MimirError:
    return MimirError(f"{key}: {problem}", "fix that key in the configuration file")


def _ints(value, key: str, minimum: int = 1) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value):
        raise _fail(key, f"must be a list of integers >= {minimum}")
    return value


def _strings(value, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _fail(key, "must be a list of names")
    return value


def _teacher(value, key: str) -> tuple[str, str | None]:
    if isinstance(value, str) and value:
        return value, None
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        unknown = set(value) - {"name", "weights"}
        if unknown:
            raise _fail(f"{key}.{sorted(unknown)[0]}", "unknown key (use name and weights)")
        weights = value.get("weights")
        if weights is not None and not isinstance(weights, str):
            raise _fail(f"{key}.weights", "must be a file path")
        return value["name"], weights
    raise _fail(key, "must be a model name or {name: ..., weights: FILE}")


def parse_config(raw: dict, source: str = "") -> BenchConfig:
    """Validate a loaded YAML mapping and expand it into cells (methods and schemes checked by name)."""
    from mimir.methods import get_method, list_methods
    from mimir.prune import parse_scheme

    if not isinstance(raw, dict):
        raise MimirError("the configuration is not a mapping of keys", "start from benchmarks/fashion-mnist.yaml")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise _fail(sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    if "grid" not in raw:
        raise _fail("grid", "missing (a list of rows: teacher, prune, methods, samples)")
    name = str(raw.get("name", Path(source).stem or "bench"))
    data = raw.get("data", "fashion-mnist")
    if not isinstance(data, str):
        raise _fail("data", "must be 'fashion-mnist' or a folder path")
    eval_data = raw.get("eval_data", "fashion-mnist" if data == "fashion-mnist" else None)
    if eval_data is not None and not isinstance(eval_data, str):
        raise _fail("eval_data", "must be 'fashion-mnist', a folder path, or left out")
    iterations = _ints(raw.get("iterations", 2000), "iterations")[0]
    batch_size = _ints(raw.get("batch_size", 64), "batch_size")[0]
    input_size = raw.get("input_size")
    if input_size is not None:
        input_size = _ints(input_size, "input_size")[0]
    seeds = _ints(raw.get("seeds", [0]), "seeds", minimum=0)
    order = raw.get("order", "rows")
    if order not in _ORDERS:
        raise _fail("order", f"must be one of {', '.join(_ORDERS)}, not {order!r}")
    options = raw.get("options", {}) or {}
    if not isinstance(options, dict):
        raise _fail("options", "must be a mapping of method settings")
    grid = raw["grid"]
    if not isinstance(grid, list) or not grid:
        raise _fail("grid", "must be a non-empty list of rows")
    cells: list[Recipe] = []
    for i, row in enumerate(grid):
        at = f"grid[{i}]"
        if not isinstance(row, dict):
            raise _fail(at, "must be a mapping with teacher, prune, methods, samples")
        unknown = set(row) - _ROW_KEYS
        if unknown:
            raise _fail(f"{at}.{sorted(unknown)[0]}", f"unknown key (known: {', '.join(sorted(_ROW_KEYS))})")
        for required in ("teacher", "prune", "methods", "samples"):
            if required not in row:
                raise _fail(f"{at}.{required}", "missing")
        teacher, weights = _teacher(row["teacher"], f"{at}.teacher")
        schemes = _strings(row["prune"], f"{at}.prune")
        for j, scheme in enumerate(schemes):
            try:
                parse_scheme(scheme)
            except MimirError as err:
                raise _fail(f"{at}.prune[{j}]", err.problem) from None
        methods = _strings(row["methods"], f"{at}.methods")
        for j, method in enumerate(methods):
            if method not in list_methods():
                raise _fail(f"{at}.methods[{j}]", f"unknown method '{method}' (known: {', '.join(list_methods())})")
        samples = _ints(row["samples"], f"{at}.samples")
        row_seeds = _ints(row.get("seeds", seeds), f"{at}.seeds", minimum=0)
        row_iterations = _ints(row.get("iterations", iterations), f"{at}.iterations")[0]
        variants = row.get("options") or {}
        variants = variants if isinstance(variants, list) else [variants]
        if not variants or not all(isinstance(v, dict) for v in variants):
            raise _fail(f"{at}.options", "must be a mapping of method settings or a list of them")
        variants = [{**options, **v} for v in variants]
        row_data = {"data": row.get("data", data), "extra_data": row.get("extra_data")}
        for key, value in row_data.items():
            if value is not None and not (isinstance(value, str) and value):
                raise _fail(f"{at}.{key}", "must be 'fashion-mnist', a folder path or synthetic:N")
        pruning = {"round_to": _ints(row["round_to"], f"{at}.round_to")[0] if "round_to" in row else None,
                   "global_pruning": row.get("global", False)}
        if not isinstance(pruning["global_pruning"], bool):
            raise _fail(f"{at}.global", "must be true or false")
        importances = _strings(row.get("importance", "l1"), f"{at}.importance")
        for scheme in schemes:
            auto = parse_scheme(scheme).auto_k > 0
            for method in methods:
                if auto != get_method(method).selects_blocks:
                    raise _fail(f"{at}.methods", f"'{method}' does not fit prune '{scheme}' "
                                                 "(practise goes with blocks:auto:K, and only it)")
            # sample sizes in the order given, every method and seed of one size before the next
            for n in samples:
                for seed in row_seeds:
                    for method in methods:
                        for importance in importances:
                            for row_options in variants:
                                cells.append(_cell(f"{at}", teacher, weights, scheme, method, n, seed,
                                                   row_iterations, batch_size, row_data["data"], eval_data,
                                                   input_size, row_options, {**pruning, "importance": importance},
                                                   row_data["extra_data"]))
        for key in {k for v in variants for k in v}:
            if not any(key in get_method(m).options for m in methods):
                raise _fail(f"{at}.options.{key}", f"no method of the row knows this option "
                                                   f"({', '.join(methods)}; see 'mimir methods')")
    # option variants a method does not read give identical cells: keep the first of each
    unique: dict[str, Recipe] = {}
    for c in cells:
        unique.setdefault(c.key, c)
    cells = list(unique.values())
    if order == "seeds":  # a grid stopped part-way leaves every setting with the same seeds
        cells.sort(key=lambda c: c.seed)  # stable: within a seed, the rows' order
    return BenchConfig(name, cells, source)


def method_options(method: str, options: dict) -> dict:
    """The grid's options that ``method`` knows (a grid's options apply to the methods that read them)."""
    from mimir.methods import get_method

    known = get_method(method).options
    return {k: v for k, v in options.items() if k in known}


def _cell(at: str, teacher: str, weights: str | None, scheme: str, method: str, samples: int, seed: int,
          iterations: int, batch_size: int, data: str, eval_data: str | None, input_size: int | None,
          options: dict, pruning: dict | None = None, extra_data: str | None = None) -> Recipe:
    try:
        return Recipe(teacher=teacher, weights=weights, prune=scheme, method=method, samples=samples, seed=seed,
                      iterations=iterations, batch_size=batch_size, data=data, extra_data=extra_data,
                      eval_data=eval_data,
                      input_size=input_size, options=method_options(method, options), **(pruning or {}))
    except MimirError as err:
        raise _fail(at, err.problem) from None


def load_config(path: str | Path) -> BenchConfig:
    """Read and validate a YAML benchmark configuration."""
    import yaml

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
