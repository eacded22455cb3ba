"""A recipe: every setting of one compression run, in one frozen object.

The CLI builds it from flags, the Python API from keyword arguments, a benchmark cell from its
YAML; the saved model records it, so a compressed file says exactly how to make it again
(``mimir compress --recipe model.pt`` or ``--recipe recipe.yaml``). A recipe is validated when it
is made: an invalid one cannot exist, and every problem is a one-line error naming the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from mimir.data.transforms import DataConfig
from mimir.errors import MimirError

#: fields of the benchmark cells written before recipes existed; a cell's key hashes these, plus
#: any later field that differs from its default, so results files written then keep their keys
_KEYED_ALWAYS = ("teacher", "weights", "prune", "method", "samples", "seed", "iterations", "batch_size", "data",
                 "eval_data", "input_size", "options")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a compression result (the seed included)."""

    teacher: str = "resnet20"           # registry name, mimir file, or MODULE:CALLABLE
    weights: str | None = None          # plain state dict for a registry teacher
    feature_layer: str | None = None    # a user's model: the module whose output is the pre-pool map
    data: str = "fashion-mnist"         # 'fashion-mnist', a folder of images, or 'synthetic:N'
    extra_data: str | None = None       # unlabeled images added to the samples: a folder, or 'synthetic:N'
    eval_data: str | None = "auto"      # 'fashion-mnist', an ImageNet-style folder, None; auto: see compress()
    samples: int = 500
    seed: int = 0
    balanced: bool = False
    prune: str = "channels:0.5"
    round_to: int | None = None         # channel schemes: keep a multiple of this many channels per layer
    importance: str = "l1"              # channel schemes: Torch-Pruning criterion (l1, l2, fpgm, lamp, taylor)
    global_pruning: bool = False        # channel schemes: rank all channel groups together
    method: str = "mir"
    options: Mapping[str, Any] = field(default_factory=dict)
    iterations: int = 2000
    batch_size: int = 64
    lr: float | None = None             # None: the method's default
    input_size: int | None = None       # None: the teacher's own (also mean, std, interpolation)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    data_config: DataConfig | None = None
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False

    def __post_init__(self) -> None:
        from mimir.engine.runtime import PRECISIONS
        from mimir.methods import check_options, get_method
        from mimir.prune import IMPORTANCES, parse_scheme

        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                flag = name.replace("_", "-")
                raise MimirError(f"--{flag} {what} (got {getattr(self, name)!r})",
                                 f"pass a valid --{flag} (in a recipe file: '{name}:')")

        for name in ("samples", "iterations", "batch_size"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool), name, "must be an integer")
        need(self.samples >= 1, "samples", "must be at least 1")
        need(self.batch_size >= 1, "batch_size", "must be at least 1")
        need(isinstance(self.seed, int) and self.seed >= 0, "seed", "must be a non-negative integer")
        need(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
        need(self.lr is None or (isinstance(self.lr, (int, float)) and self.lr > 0), "lr", "must be positive")
        need(self.input_size is None or (isinstance(self.input_size, int) and self.input_size > 0), "input_size",
             "must be a positive integer")
        need(self.extra_data is None or (isinstance(self.extra_data, str) and bool(self.extra_data)), "extra_data",
             "must be a folder of images or synthetic:N")
        from mimir.data.synthetic import parse_synthetic

        both = parse_synthetic(self.data), parse_synthetic(self.extra_data, "--extra-data")   # errors now, not later
        need(None in both, "extra_data", f"adds the same synthesised images to --data {self.data}: use "
             f"--data synthetic:{sum(both) if None not in both else ''} without --extra-data")
        need(isinstance(self.device, str) and (self.device in ("auto", "cpu", "cuda") or
                                               (self.device.startswith("cuda:") and self.device[5:].isdigit())),
             "device", "must be auto, cpu, cuda or cuda:N")
        from mimir.data.transforms import INTERPOLATIONS

        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                values = [value] if isinstance(value, (int, float)) else value
                need(isinstance(values, (list, tuple)) and bool(values) and
                     all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values), name,
                     "must be one number per input channel")
                object.__setattr__(self, name, tuple(float(v) for v in values))
        need(self.std is None or all(v > 0 for v in self.std), "std", "must be positive")
        need(self.interpolation is None or self.interpolation in INTERPOLATIONS, "interpolation",
             f"must be one of {', '.join(INTERPOLATIONS)}")
        method = get_method(self.method)
        need(self.iterations >= 1 or not method.iterative, "iterations", "must be at least 1")
        scheme = parse_scheme(self.prune)
        if self.round_to is not None:
            need(isinstance(self.round_to, int) and not isinstance(self.round_to, bool) and self.round_to >= 1,
                 "round_to", "must be a positive integer")
            need(scheme.prunes_channels, "round_to", f"applies to channel pruning, not to --prune {self.prune}")
        need(self.importance in IMPORTANCES, "importance", f"must be one of {', '.join(IMPORTANCES)}")
        need(isinstance(self.global_pruning, bool), "global_pruning", "must be true or false")
        for name, default in (("importance", "l1"), ("global_pruning", False)):
            need(getattr(self, name) == default or scheme.prunes_channels, name,
                 f"applies to channel pruning, not to --prune {self.prune}")
        if method.selects_blocks != bool(scheme.auto_k):
            raise MimirError(f"--method {self.method} does not fit --prune {self.prune}",
                             "PRACTISE chooses the blocks itself: use --method practise with --prune blocks:auto:K, "
                             "and other methods with channels:R or blocks:NAME,...")
        if isinstance(self.data_config, Mapping):
            object.__setattr__(self, "data_config", DataConfig.from_dict(self.data_config))
        object.__setattr__(self, "options", check_options(self.method, dict(self.options)))  # a private copy

    # ------------------------------------------------------------------ conversions
    def to_dict(self) -> dict:
        """Plain JSON/YAML types, every field."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["options"] = dict(self.options)
        for name in ("mean", "std"):
            d[name] = list(d[name]) if d[name] is not None else None
        d["data_config"] = self.data_config.to_dict() if self.data_config is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "recipe") -> "Recipe":
        if not isinstance(d, Mapping):
            raise MimirError(f"{source} is not a mapping of recipe fields", "write one 'field: value' per line")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise MimirError(f"{source}: unknown recipe field '{unknown[0]}'", f"known fields: {', '.join(sorted(known))}")
        return cls(**d)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def input_settings(self) -> dict:
        """The input settings the recipe gives (input_size, mean, std, interpolation), None left out."""
        return {k: getattr(self, k) for k in ("input_size", "mean", "std", "interpolation")
                if getattr(self, k) is not None}

    def with_(self, **changes) -> "Recipe":
        return replace(self, **changes)

    @property
    def key(self) -> str:
        """A stable 16-hex id of the recipe (what benchmark resumption and checkpoints match on)."""
        d = self.to_dict()
        defaults = recipe_defaults()
        keyed = {k: d[k] for k in _KEYED_ALWAYS}
        keyed.update({k: v for k, v in d.items() if k not in _KEYED_ALWAYS and v != defaults[k]})
        return hashlib.sha1(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        extra = (f" round_to={self.round_to}" if self.round_to else "") + (
            f" importance={self.importance}" if self.importance != "l1" else "") + (" global" if self.global_pruning else "")
        data = (f" data={self.data}" if self.data != "fashion-mnist" else "") + (
            f" extra_data={self.extra_data}" if self.extra_data else "")
        options = "".join(f" {k}={v}" for k, v in self.options.items())
        budget = f" iterations={self.iterations}" if self.iterations != recipe_defaults()["iterations"] else ""
        return (f"{self.teacher} {self.prune}{extra} {self.method}{options}{budget} n={self.samples}{data} "
                f"seed={self.seed}")


def recipe_defaults() -> dict:
    """Every recipe field with its default, as plain values (no validation involved)."""
    return {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(Recipe)}


def load_recipe(path: str | Path) -> Recipe:
    """The recipe in a YAML file (its fields at the top level, or under ``recipe:``) or the one a
    compressed mimir file records."""
    path = Path(path)
    if not path.is_file():
        raise MimirError(f"recipe file '{path}' does not exist", "give a YAML recipe or a model saved by mimir")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            raise MimirError(f"'{path}' is not valid YAML", "fix the syntax") from None
        if isinstance(raw, Mapping) and isinstance(raw.get("recipe"), Mapping):
            raw = raw["recipe"]
        return Recipe.from_dict(raw, source=f"'{path}'")
    from mimir.export.checkpoint import read_checkpoint

    info = read_checkpoint(path).get("info", {})
    if not isinstance(info, Mapping) or not isinstance(info.get("recipe"), Mapping):
        raise MimirError(f"'{path}' records no recipe (it was saved before mimir recorded recipes, or by another tool)",
                         "give a YAML recipe instead")
    return Recipe.from_dict(info["recipe"], source=f"the recipe in '{path}'")


__all__ = ["Recipe", "load_recipe", "recipe_defaults"]
