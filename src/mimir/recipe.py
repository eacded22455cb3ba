"""A recipe: every setting of one compression run, in one frozen object - and the one list of settings.

Each field of :class:`Recipe` is declared once, with its type, default, valid values and help text
(:func:`setting`). Everything else is derived from those declarations: the ``mimir compress`` flags
(:func:`add_recipe_flags`), the keyword arguments of :func:`mimir.compress`, the keys of a benchmark
grid (:mod:`mimir.bench.config`) and the saved file (``to_dict`` / ``from_dict``), so adding a
setting is one edit here. A saved model records its recipe, so a compressed file says exactly how
to make it again (``mimir compress --recipe model.pt`` or ``--recipe recipe.yaml``). A recipe is
validated when it is made: an invalid one cannot exist, and every problem is a one-line error
naming the field.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import types
import typing
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from mimir.core import INTERPOLATIONS, DataConfig
from mimir.data.synthetic import parse_synthetic
from mimir.engine.runtime import PRECISIONS
from mimir.errors import MimirError
from mimir.export.checkpoint import read_checkpoint
from mimir.methods import check_options, get_method, list_methods
from mimir.prune import HEAD_PRUNING, IMPORTANCES, parse_scheme
from mimir.quantize import CALIBRATIONS, QUANTIZE, RECOVERIES
from mimir.resolve import is_own_code


@dataclass(frozen=True)
class Setting:
    """How one recipe field is given and checked.

    ``check(value)`` returns what is wrong ("must be at least 1") or None; ``choices`` are the
    valid words (a callable: computed when asked, e.g. the registered methods); ``flag`` the
    ``mimir compress`` flag (None: the Python API only); ``grid_key`` the benchmark grid's name for
    it where that differs from the field's (``methods``, ``seeds``: a grid lists several);
    ``example`` a valid value other than the default (for help texts and tests); ``needs`` the
    other settings the example applies with (``calibration`` needs ``quantize``)."""

    help: str
    example: Any
    check: Callable[[Any], str | None] | None = None
    choices: tuple[str, ...] | Callable[[], typing.Sequence[str]] | None = None
    flag: str | None = ""          # "": derived from the name (--batch-size); None: no flag
    grid_key: str | None = ""      # "": the field's name; None: not a grid key
    metavar: str | None = None
    needs: Mapping[str, Any] = field(default_factory=dict)

    def valid_words(self) -> tuple[str, ...] | None:
        return tuple(self.choices()) if callable(self.choices) else self.choices


def setting(default: Any, help: str, example: Any, **kw: Any) -> Any:
    """A recipe field: its default and its :class:`Setting`."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"setting": Setting(help, example, **kw)})
    return field(default=default, metadata={"setting": Setting(help, example, **kw)})


# ----------------------------------------------------------------------------- checks
def _integer(minimum: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if not isinstance(v, int) or isinstance(v, bool):
            return "must be an integer"
        return None if v >= minimum else ("must be a non-negative integer" if minimum == 0 else
                                          f"must be at least {minimum}")
    return check


def _optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda v: None if v is None else check(v)


def _positive_number(v: Any) -> str | None:
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else "must be positive"


def _positive_integer(v: Any) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and v > 0 else "must be a positive integer"


def _flag(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _text(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "must be a non-empty name"


def _data_source(flag: str, optional: bool) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v:
            return "must be a folder of images or synthetic:N"
        parse_synthetic(v, flag)   # a malformed synthetic:N raises its own one-line error
        return None
    return check


def _scheme(v: Any) -> str | None:
    if not isinstance(v, str) or not v:
        return "must be a pruning scheme, e.g. channels:0.5"
    parse_scheme(v)   # raises its own one-line error, with an example
    return None


def _device(v: Any) -> str | None:
    ok = isinstance(v, str) and (v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()))
    return None if ok else "must be auto, cpu, cuda or cuda:N"


def _numbers(v: Any) -> str | None:
    values = [v] if isinstance(v, (int, float)) else v
    ok = isinstance(values, (list, tuple)) and bool(values) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in values)
    return None if ok else "must be one number per input channel"


def _positive_numbers(v: Any) -> str | None:
    return _numbers(v) or (None if all(x > 0 for x in ([v] if isinstance(v, (int, float)) else v)) else
                           "must be positive")


# ----------------------------------------------------------------------------- the settings
@dataclass(frozen=True)
class Recipe:
    """Everything that decides a compression result (the seed included)."""

    teacher: str = setting("resnet20", "registry name (bundled trained teacher, or --weights), timm:NAME with "
                           "--weights, a mimir file, or MODULE:CALLABLE returning your own nn.Module",
                           "resnet56", check=_text)
    weights: str | None = setting(None, "plain state-dict file for a registry or timm --teacher (e.g. torchvision "
                                  "or timm weights, .pt or .safetensors)", "weights.pt", check=_optional(_text))
    feature_layer: str | None = setting(None, "(your own model only) the module whose output is the pre-pool "
                                        "feature map (default: the input of the final global pooling)", "layer4",
                                        check=_optional(_text))
    data: str = setting("fashion-mnist", "'fashion-mnist', a folder of images, or synthetic:N (N images "
                        "synthesised from the teacher's BatchNorm statistics, for when there are none)",
                        "synthetic:64", check=_data_source("--data", optional=False))
    extra_data: str | None = setting(None, "unlabeled images added to the few samples: a folder (e.g. "
                                     "out-of-domain images; labels, if any, are never read) or synthetic:N",
                                     "synthetic:32", check=_data_source("--extra-data", optional=True))
    eval_data: str | None = setting("auto", "labelled data for accuracy: 'fashion-mnist', an ImageNet-style folder, "
                                    "or none (auto: the Fashion-MNIST test set when --data is fashion-mnist)",
                                    None, check=_optional(_text))
    samples: int = setting(500, "number of few samples", 50, check=_integer(1))
    seed: int = setting(0, "seed for the sample draw and training", 3, check=_integer(0), grid_key="seeds")
    balanced: bool = setting(False, "draw the same number of images per class", True, check=_flag)
    prune: str = setting("channels:0.5", "channels:R (channels no residual addition or the head ties: block inner "
                         "widths, MLP hidden width and attention heads), channels:LAYER=R,... (per-layer ratios), "
                         "channels-all:R (also those residual additions tie, but not the head's), macs:F / "
                         "macs-all:F (prune to F of the teacher's MACs), blocks:NAME,NAME, attention:NAME,NAME "
                         "(drop transformer blocks' attention), or blocks:auto:K with a method that chooses blocks",
                         "channels:0.75", check=_scheme)
    round_to: int | None = setting(None, "with channels:R / channels-all:R / macs:F: keep the nearest multiple of K "
                                   "channels in every pruned layer (a multiple of 8 where a layer keeps fewer than "
                                   "K); 1: no rounding. Default: the channel block ONNX Runtime's convolutions run "
                                   "in on this CPU, 16 with AVX-512, 8 with AVX2 (MIMIR_CPU_FLAGS=avx2 prepares "
                                   "for an AVX2 CPU); the run records the K it used", 8,
                                   check=_optional(_positive_integer), metavar="K")
    importance: str = setting("l1", "channel ranking (Torch-Pruning): l1 (the filter's L1 norm), l2, fpgm, lamp, or "
                              "taylor (curvature of the label-free MiR loss on the samples)", "l2",
                              choices=IMPORTANCES)
    head_pruning: str = setting("dims", "how channels:R / channels-all:R / macs:F narrow a transformer's attention: "
                                "dims (every head keeps fewer dimensions, all heads stay) or heads (whole heads are "
                                "dropped)", "heads", choices=HEAD_PRUNING)
    global_pruning: bool = setting(False, "rank the channels of all layers together (layers lose different "
                                   "fractions)", True, check=_flag, flag="--global", grid_key="global")
    method: str = setting("mir", "compression method; see 'mimir methods'", "kd", choices=list_methods,
                          grid_key="methods")
    options: Mapping[str, Any] = setting({}, "a method setting, e.g. temperature=4 (kd); repeatable; 'mimir "
                                         "methods' lists each method's", {"schedule": "cosine"}, flag="--option",
                                         metavar="KEY=VALUE")
    iterations: int = setting(2000, "training iterations", 400, check=_integer(0))
    batch_size: int = setting(64, "global batch size (min(batch size, samples) in effect)", 32, check=_integer(1))
    lr: float | None = setting(None, "learning rate (default: the method's own)", 0.01,
                               check=_optional(_positive_number))
    input_size: int | None = setting(None, "square input size in pixels (default: the teacher's own)", 32,
                                     check=_optional(_positive_integer))
    mean: tuple[float, ...] | None = setting(None, "per-channel input mean (default: the teacher's file or timm "
                                             "config)", (0.5,), check=_optional(_numbers), metavar="M[,M,M]")
    std: tuple[float, ...] | None = setting(None, "per-channel input std (default: the teacher's file or timm "
                                            "config)", (0.25,), check=_optional(_positive_numbers),
                                            metavar="S[,S,S]")
    interpolation: str | None = setting(None, "resize interpolation for image folders (default: the teacher's "
                                        "own)", "bicubic", choices=INTERPOLATIONS)
    data_config: DataConfig | None = setting(None, "the teacher's complete input settings (Python only; "
                                             "default: its file's or timm's)", DataConfig(), flag=None,
                                             grid_key=None)
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N", "cpu", check=_device)
    precision: str = setting("fp32", "fp32, bf16 or fp16: autocast for training and evaluation (fp16 with a "
                             "gradient scaler)", "bf16", choices=tuple(PRECISIONS))
    compile: bool = setting(False, "torch.compile the trained model (slow to start)", True, check=_flag)
    quantize: str | None = setting(None, "also make an int8 ONNX model of the student (and of the teacher, for "
                                   "comparison), calibrated on the few samples: int8 (ONNX Runtime's static QDQ "
                                   "quantizer; written beside --out as OUT.int8.onnx)", "int8", choices=QUANTIZE)
    calibration: str = setting("minmax", "with --quantize: how activation ranges are set from the samples: minmax, "
                               "entropy or percentile", "entropy", choices=tuple(CALIBRATIONS),
                               needs={"quantize": "int8"})
    quantize_recovery: str = setting("none", "with --quantize: recover what int8 loses, label-free: none, bias "
                                     "(empirical bias correction) or mimic (a short fake-quantized MiR run "
                                     "against the fp32 teacher)", "bias", choices=RECOVERIES,
                                     needs={"quantize": "int8"})

    def __post_init__(self) -> None:
        if self.eval_data == "none":   # the word means no evaluation wherever it is written (flag, YAML, grid)
            object.__setattr__(self, "eval_data", None)
        for f in fields(self):
            _check_field(self, f)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                values = [value] if isinstance(value, (int, float)) else value
                object.__setattr__(self, name, tuple(float(v) for v in values))
        if isinstance(self.data_config, Mapping):
            object.__setattr__(self, "data_config", DataConfig.from_dict(self.data_config))
        self._check_together()
        object.__setattr__(self, "options", check_options(self.method, dict(self.options)))  # a private copy

    def _check_together(self) -> None:
        """What one field alone cannot tell: the settings that must fit each other."""
        both = parse_synthetic(self.data), parse_synthetic(self.extra_data, "--extra-data")
        if None not in both:
            _refuse("extra_data", self.extra_data, f"adds the same synthesised images to --data {self.data}: use "
                    f"--data synthetic:{sum(both)} without --extra-data")
        method = get_method(self.method)
        if self.iterations < 1 and method.iterative:
            _refuse("iterations", self.iterations, "must be at least 1")
        scheme = parse_scheme(self.prune)
        for name in ("calibration", "quantize_recovery"):
            if getattr(self, name) != recipe_defaults()[name] and self.quantize is None:
                _refuse(name, getattr(self, name), "applies with --quantize int8")
        for name, default in (("round_to", None), ("importance", "l1"), ("global_pruning", False)):
            if getattr(self, name) != default and not scheme.prunes_channels:
                _refuse(name, getattr(self, name), f"applies to channel pruning, not to --prune {self.prune}")
        if method.selects_blocks != bool(scheme.auto_k):
            choosers = [m for m in list_methods() if get_method(m).selects_blocks]
            raise MimirError(f"--method {self.method} does not fit --prune {self.prune}",
                             f"--prune blocks:auto:K leaves the blocks to a method that chooses them "
                             f"({', '.join(choosers)}); other methods take channels:R or blocks:NAME,...")

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
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def input_settings(self) -> dict:
        """The input settings the recipe gives (input_size, mean, std, interpolation), None left out."""
        return {k: getattr(self, k) for k in ("input_size", "mean", "std", "interpolation")
                if getattr(self, k) is not None}

    def with_(self, **changes) -> "Recipe":
        return replace(self, **changes)

    @property
    def key(self) -> str:
        """A stable 16-hex id of every field (what a training checkpoint is matched on; a benchmark
        cell's key also resolves defaults and the method's options: :mod:`mimir.bench.cells`)."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        extra = (f" round_to={self.round_to}" if self.round_to else "") + (
            f" importance={self.importance}" if self.importance != "l1" else "") + (" global" if self.global_pruning else "") + (
            f" head_pruning={self.head_pruning}" if self.head_pruning != "dims" else "")
        data = (f" data={self.data}" if self.data != "fashion-mnist" else "") + (
            f" extra_data={self.extra_data}" if self.extra_data else "")
        options = "".join(f" {k}={v}" for k, v in self.options.items())
        budget = (f" iterations={self.iterations}" if self.iterations != recipe_defaults()["iterations"] else "") + (
            f" lr={self.lr:g}" if self.lr is not None else "")
        quantized = "" if self.quantize is None else f" {self.quantize}" + (
            f" calibration={self.calibration}" if self.calibration != "minmax" else "") + (
            f" recovery={self.quantize_recovery}" if self.quantize_recovery != "none" else "")
        return (f"{self.teacher} {self.prune}{extra} {self.method}{options}{budget} n={self.samples}{data} "
                f"seed={self.seed}{quantized}")


# ----------------------------------------------------------------------------- derived from the declarations
def settings() -> dict[str, Setting]:
    """Every recipe field's :class:`Setting`, in declaration order."""
    return {f.name: f.metadata["setting"] for f in fields(Recipe)}


def recipe_defaults() -> dict:
    """Every recipe field with its default, as plain values (no validation involved)."""
    return {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(Recipe)}


def flag_of(name: str) -> str | None:
    """The ``mimir compress`` flag of recipe field ``name`` (None: Python only)."""
    s = settings()[name]
    return None if s.flag is None else (s.flag or "--" + name.replace("_", "-"))


def grid_key_of(name: str) -> str | None:
    """The benchmark grid's key for recipe field ``name`` (None: not in grids)."""
    s = settings()[name]
    return None if s.grid_key is None else (s.grid_key or name)


def _type_of(name: str) -> Any:
    """The field's annotation without ``| None``."""
    hint = typing.get_type_hints(Recipe)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint


def setting_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for recipe field ``name`` on its own ("must be at least 1 (got
    0)"), or None."""
    try:
        problem = _problem(name, value)
    except MimirError as err:   # a check that parses (a scheme, synthetic:N) says it in its own words
        return err.problem
    return None if problem is None else f"{problem} (got {value!r})"


def _problem(name: str, value: Any) -> str | None:
    s = settings()[name]
    words = s.valid_words()
    if words is not None and value is not None and value not in words:
        return f"must be one of {', '.join(words)}"
    return s.check(value) if s.check is not None else None


def _check_value(name: str, value: Any) -> None:
    """A one-line error when ``value`` does not suit recipe field ``name`` on its own."""
    problem = _problem(name, value)
    if problem:
        _refuse(name, value, problem)


def _check_field(recipe: Recipe, f: Field) -> None:
    _check_value(f.name, getattr(recipe, f.name))


def _refuse(name: str, value: Any, problem: str) -> None:
    flag = flag_of(name) or name
    raise MimirError(f"{flag} {problem} (got {value!r})", f"pass a valid {flag} (in a recipe file: '{name}:')")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None


def add_recipe_flags(parser: argparse.ArgumentParser) -> None:
    """One ``mimir compress`` flag per recipe field that has one, typed and helped from its
    declaration; an unset flag stays unset (``argparse.SUPPRESS``), so ``--recipe FILE`` supplies it."""
    defaults = recipe_defaults()
    for name, s in settings().items():
        flag = flag_of(name)
        if flag is None:
            continue
        kind = _type_of(name)
        default = defaults[name]
        shown = "" if default in (None, False, {}) else f" (default: {default})"
        kw: dict[str, Any] = {"dest": name, "help": s.help + shown, "default": argparse.SUPPRESS}
        if kind is bool:
            kw["action"] = "store_true"
        elif name == "options":
            kw.update(action="append", metavar=s.metavar)
        else:
            kw["type"] = {int: int, float: float}.get(kind, _floats if typing.get_origin(kind) is tuple else str)
            if s.metavar:
                kw["metavar"] = s.metavar
        parser.add_argument(flag, **kw)


def recipe_from_flags(given: Mapping[str, Any], base: Recipe | None = None) -> Recipe:
    """The recipe of ``base`` (default: all defaults) with the flags ``given`` (parsed by
    :func:`add_recipe_flags`; ``options`` as ``KEY=VALUE`` strings, added to the base's) on top."""
    d = base.to_dict() if base is not None else {}
    given = {k: v for k, v in given.items() if k in settings()}
    if "options" in given:
        given["options"] = {**d.get("options", {}), **parse_options(given["options"])}
    return Recipe.from_dict({**d, **given}, source="the command line")


def parse_options(items: typing.Iterable[str], flag: str = "--option", example: str = "temperature=4") -> dict:
    """``KEY=VALUE`` strings (of a repeatable ``flag``) as a dict of strings; for ``--option`` the
    method's declared options give them their types."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MimirError(f"{flag} '{item}' is not KEY=VALUE", f"write e.g. {flag} {example}")
        options[key] = value
    return options


def load_recipe(path: str | Path, trust_code: bool = False) -> Recipe:
    """The recipe in a YAML file (its fields at the top level, or under ``recipe:``) or the one a
    compressed mimir file records. A model file's recipe whose teacher is a ``MODULE:CALLABLE``
    names code to run: it is refused unless ``trust_code`` (a YAML recipe is the user's own words)."""
    path = Path(path)
    if not path.is_file():
        raise MimirError(f"recipe file '{path}' does not exist", "give a YAML recipe or a model saved by mimir")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            raise MimirError(f"'{path}' is not valid YAML", "fix the syntax") from None
        if isinstance(raw, Mapping) and isinstance(raw.get("recipe"), Mapping):
            raw = raw["recipe"]
        return Recipe.from_dict(raw, source=f"'{path}'")
    info = read_checkpoint(path).get("info", {})
    if not isinstance(info, Mapping) or not isinstance(info.get("recipe"), Mapping):
        raise MimirError(f"'{path}' records no recipe (it was saved before mimir recorded recipes, or by another tool)",
                         "give a YAML recipe instead")
    teacher = info["recipe"].get("teacher")
    if is_own_code(teacher) and not trust_code:
        raise MimirError(f"the recipe in '{path}' names code to run as its teacher ('{teacher}')",
                         f"pass --trust-code (trust_code=True) to run it, or --teacher {teacher} yourself")
    return Recipe.from_dict(info["recipe"], source=f"the recipe in '{path}'")


__all__ = ["Recipe", "Setting", "add_recipe_flags", "flag_of", "grid_key_of", "load_recipe", "parse_options",
           "recipe_defaults", "recipe_from_flags", "setting_problem", "settings"]
