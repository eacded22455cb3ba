"""``compress`` as a pipeline of named stages driven by one :class:`~mimir.recipe.Recipe`:

    resolve the teacher -> draw the samples -> prune -> train with the method -> measure
    -> quantize (with --quantize) -> save

Each stage reads and fills one :class:`Run`. Method-specific steps are hooks on the method (PRACTISE
chooses its blocks in ``Method.choose_blocks``), never branches here. Under torchrun every process
runs the stages up to training; only rank 0 measures and saves.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mimir.core import DataConfig, atomic_write
from mimir.data import LabeledImageFiles, LabeledImages, UnlabeledImages, center_crop, normalize
from mimir.data.sources import FASHION, load_eval_data, load_extra_data, load_samples
from mimir.data.synthetic import parse_synthetic
from mimir.engine import Checkpointing, Runtime, TrainConfig, resolve_runtime
from mimir.engine import distributed as dist
from mimir.errors import MimirError
from mimir.evaluate import feature_mse, measure_latency, measure_model, warn_if_not_faster
from mimir.evaluate.accuracy import onnx_accuracy
from mimir.export.checkpoint import save_model
from mimir.export.onnx import mimir_metadata
from mimir.methods import Method, MethodInput, get_method
from mimir.prune import importance, parse_scheme, prune, resolve_round_to
from mimir.quantize import Quantized, QuantizeSettings, quantize_model
from mimir.recipe import Recipe
from mimir.resolve import load_teacher


@dataclass
class CompressResult:
    """The compressed model, the teacher it came from, the recipe and the measured summary
    (on processes other than rank 0 of a torchrun job, the summary is empty)."""

    model: nn.Module
    teacher: nn.Module
    data_config: DataConfig
    dropped_blocks: list[str]
    summary: dict = field(default_factory=dict)
    recipe: Recipe | None = None
    int8: bytes | None = None   # with quantize="int8": the compressed student's int8 ONNX file

    def save(self, path: str | Path) -> Path:
        """Write a mimir file (architecture as data + weights + recipe; ``weights_only=True`` loadable),
        or, for a path ending in ``.onnx``, the int8 ONNX file of a run with ``quantize="int8"``."""
        if Path(path).suffix.lower() == ".onnx":
            if self.int8 is None:
                raise MimirError("this run made no int8 model", "pass quantize='int8' to compress, or save a .pt")
            atomic_write(path, lambda tmp: Path(tmp).write_bytes(self.int8))
            return Path(path)
        return save_model(path, self.model, self.data_config, self.dropped_blocks, info=self.summary)


@dataclass
class Run:
    """What the stages pass along."""

    recipe: Recipe
    runtime: Runtime
    method: Method
    progress: bool = True
    out: Path | None = None
    checkpoint: Checkpointing | None = None
    latency: bool = False                            # time teacher and student in ONNX Runtime (measure)
    trust_code: bool = False                         # a teacher file may import the code it names
    teacher_module: nn.Module | None = None          # an in-memory teacher given to the API
    data_source: object = None                       # in-memory samples given to the API
    eval_source: object = "auto"
    teacher: nn.Module | None = None
    config: DataConfig | None = None
    few: LabeledImages | UnlabeledImages | None = None
    eval_set: LabeledImages | LabeledImageFiles | None = None
    eval_key: str | None = None
    arch: dict = field(default_factory=dict)
    student: nn.Module | None = None
    pruned: nn.Module | None = None
    model: nn.Module | None = None
    int8: dict[str, Quantized] = field(default_factory=dict)   # "compressed", "teacher": their int8 models
    summary: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def unlabeled(self) -> UnlabeledImages:
        return self.few.without_labels() if isinstance(self.few, LabeledImages) else self.few

    @property
    def example(self) -> torch.Tensor:
        return torch.zeros(1, self.config.in_chans, self.config.input_size, self.config.input_size,
                           device=self.runtime.device)

    def train_config(self) -> TrainConfig:
        cfg = TrainConfig(iterations=self.recipe.iterations, batch_size=self.recipe.batch_size)
        return cfg.with_(lr=self.recipe.lr) if self.recipe.lr is not None else cfg

    def method_input(self, student: nn.Module | None, samples: LabeledImages | UnlabeledImages) -> MethodInput:
        """What the method is given: teacher, student, the samples, its own options and the run's settings."""
        return MethodInput(self.teacher, student, samples, self.config, self.train_config(), self.recipe.seed,
                           dict(self.recipe.options), self.progress, self.arch, self.runtime, self.checkpoint)


# ----------------------------------------------------------------------------- stages
def resolve_teacher(run: Run) -> None:
    r = run.recipe
    teacher = run.teacher_module if run.teacher_module is not None else r.teacher
    if isinstance(teacher, nn.Module):
        teacher = copy.deepcopy(teacher)  # the run moves it to the device: the caller's module stays as it was
    run.teacher, run.config = load_teacher(teacher, r.weights, r.feature_layer, r.data_config, r.input_settings(),
                                           trust_code=run.trust_code)


def draw_samples(run: Run) -> None:
    r = run.recipe
    data = run.data_source if run.data_source is not None else r.data
    if run.method.needs_labels and (r.extra_data is not None or parse_synthetic(data) is not None):
        what = "--extra-data adds" if r.extra_data is not None else f"--data {data} synthesises"
        raise MimirError(f"{what} unlabeled images, and method '{r.method}' needs labels",
                         "use a label-free method such as mir")
    if parse_synthetic(data) is not None or parse_synthetic(r.extra_data) is not None:
        run.runtime.model(run.teacher)   # the images are optimised against the teacher, on the device
    run.few = load_samples(data, r.samples, r.seed, run.config, r.balanced, teacher=run.teacher,
                           progress=run.progress)
    if r.extra_data is not None:   # appended after the seeded draw: the few samples stay the same images
        extra = load_extra_data(r.extra_data, run.config, run.teacher, r.seed, run.progress)
        if extra.images.shape[1:] != run.few.images.shape[1:]:
            raise MimirError(f"--extra-data images are {tuple(extra.images.shape[1:])}, the samples "
                             f"{tuple(run.few.images.shape[1:])}", "give images the teacher's input settings accept")
        run.few = UnlabeledImages(torch.cat([run.few.images, extra.images]), f"{run.few.source}+{extra.source}")
    eval_data = run.eval_source
    if eval_data == "auto":
        eval_data = r.eval_data
    if eval_data == "auto":
        eval_data = FASHION if str(data) == FASHION else None
    run.eval_set = load_eval_data(eval_data, run.config)
    run.eval_key = str(eval_data) if isinstance(eval_data, (str, Path)) else None  # named sets only (see _accuracy)
    if run.method.needs_labels and not isinstance(run.few, LabeledImages):
        raise MimirError(f"method '{r.method}' needs labels, but '{data}' has none",
                         "use a label-free method such as mir, or labelled data")


def prune_student(run: Run) -> None:
    scheme = parse_scheme(run.recipe.prune)
    run.runtime.model(run.teacher)
    if scheme.auto_k:  # the method chooses the blocks (PRACTISE), on the unlabeled samples
        started = time.perf_counter()
        names, ranking = run.method.choose_blocks(run.method_input(None, run.unlabeled), scheme.auto_k)
        scheme = parse_scheme("blocks:" + ",".join(names))
        run.summary["ranking"] = ranking
        run.seconds["select"] = time.perf_counter() - started
    r = run.recipe
    round_to = resolve_round_to(r.round_to) if scheme.prunes_channels else r.round_to   # unset: this CPU's block
    if run.summary:   # rank 0: the saved recipe records the K used, and so remakes this architecture on any CPU
        run.summary["recipe"]["round_to"] = round_to
    images = None
    if importance(r.importance).needs_images:   # the few samples in their evaluation view (taylor)
        images = normalize(center_crop(run.unlabeled.images[:64], run.config.input_size), run.config)
        images = images.to(run.runtime.device)
    run.student, run.arch = prune(run.teacher, scheme, run.example, round_to=round_to, importance=r.importance,
                                  global_pruning=r.global_pruning, images=images, head_pruning=r.head_pruning)
    run.runtime.model(run.student)
    run.pruned = copy.deepcopy(run.student) if dist.is_main() else None


def train_student(run: Run) -> None:
    given = run.few if run.method.needs_labels else run.unlabeled
    started = time.perf_counter()
    inp = run.method_input(run.student, given)
    if dist.is_main():   # every option in effect: the given ones over the defaults for this teacher's family
        run.summary["method_options"] = run.method.settings(inp)
    run.model = run.method(inp)
    if inp.logs and dist.is_main():
        run.summary["training"] = inp.logs[-1].to_dict()
    # the method's whole cost: PRACTISE's block selection counts too
    run.seconds["train"] = time.perf_counter() - started + run.seconds.get("select", 0.0)


def measure(run: Run) -> None:
    if not dist.is_main():
        return
    s = run.summary
    rows = {"teacher": run.teacher, "pruned": run.pruned, "compressed": run.model}
    for row, model in rows.items():   # the teacher and the pruned student are the same in every cell of a grid
        s[row] = measure_model(model, run.eval_set, run.config, run.example, run.runtime, run.progress,
                               f"evaluate {row}", eval_key=run.eval_key if row != "compressed" else None)
    s["pruned"]["feature_mse"] = feature_mse(run.pruned, run.teacher, run.few, run.config, runtime=run.runtime)
    s["compressed"]["feature_mse"] = feature_mse(run.model, run.teacher, run.few, run.config, runtime=run.runtime)
    s["dropped_blocks"] = run.arch["dropped_blocks"]
    if run.latency and run.recipe.quantize is None:   # with --quantize, timed with the int8 models
        s["latency"] = measure_latency(run.model, run.teacher, run.config)
        warn_if_not_faster(s)   # one line naming the fix when the student is not faster than its teacher
    s["train_seconds"] = round(run.seconds["train"], 2)
    s["wall_seconds"] = round(time.perf_counter() - run.started, 2)
    s["torch"] = str(torch.__version__)


def quantize(run: Run) -> None:
    """int8 models of the compressed student and of the teacher (what pruning adds on top of int8
    alone), calibrated on the few samples with the same settings; their accuracy in ONNX Runtime,
    their ONNX file sizes beside the fp32 student's, and with ``latency`` all four timed in turns."""
    r = run.recipe
    if r.quantize is None or not dist.is_main():
        return
    s = run.summary
    settings = QuantizeSettings(r.calibration)
    for row, model in (("compressed", run.model), ("teacher", run.teacher)):
        started = time.perf_counter()
        name = (str(run.out) if run.out else r.teacher) if row == "compressed" else r.teacher
        recipe = s["recipe"] if row == "compressed" else {}   # the recipe as run (round_to resolved)
        metadata = mimir_metadata(name, run.config, recipe, macs=s[row]["macs"], params=s[row]["params"])
        q = quantize_model(model, run.config, run.unlabeled, settings=settings, recovery=r.quantize_recovery,
                           teacher=run.teacher, seed=r.seed, metadata=metadata, runtime=run.runtime,
                           progress=run.progress)
        acc = None if run.eval_set is None else onnx_accuracy(q.blob, run.eval_set, run.config,
                                                              progress=run.progress, desc=f"evaluate {row} int8")
        run.int8[row] = q
        s[f"{row}_int8"] = {"accuracy": acc, "size_bytes": q.size, "fp32_size_bytes": q.fp32_size,
                            "seconds": round(time.perf_counter() - started, 2),
                            "recovery_seconds": round(q.seconds.get("recover", 0.0), 2), "quantization": q.info}
    if run.latency:
        int8 = {"student_int8": run.int8["compressed"].blob, "teacher_int8": run.int8["teacher"].blob}
        s["latency"] = measure_latency(run.model, run.teacher, run.config, others=int8)
        warn_if_not_faster(s)


def save(run: Run) -> None:
    if run.out is not None and dist.is_main():
        save_model(run.out, run.model, run.config, run.arch["dropped_blocks"], info=run.summary)
        run.summary["out"] = str(run.out)
        if "compressed" in run.int8:
            path = int8_path(run.out)
            atomic_write(path, lambda tmp: Path(tmp).write_bytes(run.int8["compressed"].blob))
            run.summary["int8_out"] = str(path)


def int8_path(out: str | Path) -> Path:
    """Where the int8 model of ``--out`` goes: beside it, ``model.pt`` -> ``model.int8.onnx``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(out.suffix) + ".int8.onnx")


STAGES = (resolve_teacher, draw_samples, prune_student, train_student, measure, quantize, save)


# ----------------------------------------------------------------------------- running
def run_recipe(recipe: Recipe, *, teacher: nn.Module | None = None, data: object = None, eval_data: object = "auto",
               progress: bool = True, out: str | Path | None = None, checkpoint: Checkpointing | None = None,
               latency: bool = False, trust_code: bool = False) -> CompressResult:
    """Run every stage of ``recipe``. ``teacher`` / ``data`` / ``eval_data`` are in-memory objects
    that stand in for the recipe's names (the Python API's ``nn.Module`` and image sets); ``latency``
    also times teacher and student in ONNX Runtime (``summary["latency"]``); ``trust_code`` lets a
    teacher file of a user's own model import the code it names."""
    if out is not None and not Path(out).parent.exists():
        raise MimirError(f"output folder '{Path(out).parent}' does not exist", "create it or choose another --out")
    runtime = resolve_runtime(recipe.device, recipe.precision, recipe.compile)
    owned = dist.init_from_env(runtime.device)
    try:
        run = Run(recipe, runtime, get_method(recipe.method), progress and dist.is_main(),
                  Path(out) if out is not None else None, checkpoint, latency, trust_code, teacher, data, eval_data)
        run.summary.update(_header(run))
        for stage in STAGES:
            stage(run)
        if checkpoint is not None and dist.is_main():
            checkpoint.path.unlink(missing_ok=True)  # the run is complete: nothing left to resume
        int8 = run.int8["compressed"].blob if "compressed" in run.int8 else None
        return CompressResult(run.model, run.teacher, run.config, run.arch["dropped_blocks"], run.summary, recipe, int8)
    finally:
        dist.shutdown(owned)


def _header(run: Run) -> dict:
    r = run.recipe
    if not dist.is_main():
        return {}
    return {
        "teacher_name": r.teacher, "method": r.method, "prune": r.prune, "samples": r.samples, "seed": r.seed,
        "balanced": r.balanced, "iterations": r.iterations if run.method.iterative else 0,
        "batch_size": r.batch_size, "options": dict(r.options), "used_labels": run.method.needs_labels,
        "data": r.data, "recipe": r.to_dict(), "device": run.runtime.describe(), "processes": dist.world_size(),
    }
