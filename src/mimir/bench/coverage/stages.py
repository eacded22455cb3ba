"""Which networks mimir compresses: every model taken through every stage a user needs.

One model of every timm name prefix that builds an image classifier (the one with the fewest
parameters), every torchvision classifier and a few third-party ``nn.Module`` s (given as
``MODULE:CALLABLE``, as a user gives their own), random weights at the model's own input size, each
in a process of its own with a time limit (:func:`sweep`). A model's row records the stage it
reached; the first stage that fails ends it:

    build    the model builds and splits: its pre-pool map (a feature map or tokens) is found
    prune    channels:0.5 leaves at most :data:`MAX_MAC_RATIO` of the MACs (counted by operator)
             and the head's input unchanged
    scheme   the family's own scheme also prunes: one residual block dropped, or one transformer
             block's attention
    mimic    a short MiR run lowers the pre-pool feature error on held-out images
    save     the student written as .safetensors and loaded back gives identical outputs
    onnx     exported to ONNX, ONNX Runtime matches PyTorch
    int8     quantized to int8 (calibrated on the images), the file runs in ONNX Runtime

A :class:`~mimir.errors.MimirError` is a refusal: the one line a user gets, naming the obstacle
(status ``refused``). Anything else (a traceback from inside a library, a time-out, a wrong number)
is a failure (status ``failed``), what the sweep exists to find.
"""

from __future__ import annotations

import copy
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from mimir import api
from mimir.core import DataConfig
from mimir.data import UnlabeledImages, center_crop, normalize
from mimir.data.transforms import Augment
from mimir.errors import MimirError, first_line
from mimir.evaluate import count_macs_params, feature_mse
from mimir.export import load
from mimir.models import create_model, is_model, timm_name
from mimir.models.anatomy import residual_blocks, transformer_blocks
from mimir.prune import prune, resolve_round_to
from mimir.resolve import resolve_model

STAGES = ("build", "prune", "scheme", "mimic", "save", "onnx", "int8")
#: channels:0.5 must leave at most this fraction of the teacher's MACs ("a real amount")
MAX_MAC_RATIO = 0.85
#: ONNX Runtime against PyTorch: at most this fraction of the logit scale (timm's own check: 3 decimals)
PARITY = 1e-3


@dataclass
class Row:
    """What one model reached (the table's row; plain data, written as JSON)."""

    source: str                      # timm, torchvision or third-party
    group: str                       # the timm name prefix, the torchvision family, the package
    model: str                       # the reference, as a user gives it
    status: str = "failed"           # passed, refused, failed
    stage: str = "build"             # the stage it reached (the last one tried)
    reason: str = ""                 # why it stopped: the refusal, or the failure's first line
    input_size: int | None = None
    feature_shape: list[int] = field(default_factory=list)
    macs: int | None = None          # the teacher's
    macs_pruned: int | None = None   # channels:0.5
    scheme: str = ""                 # the family's own scheme, e.g. blocks:layer1.1
    macs_scheme: int | None = None
    feature_error_before: float | None = None   # held-out pre-pool MSE of the pruned student
    feature_error_after: float | None = None    # after the short MiR run
    onnx_max_error: float | None = None          # ONNX Runtime against PyTorch, max |logit difference|
    seconds: float = 0.0


def _images(count: int, config: DataConfig, seed: int) -> UnlabeledImages:
    """``count`` random images at the model's input size (uint8, as decoded images are) whose power
    falls as 1/f^2 with spatial frequency, as in photographs: unlike white noise, their statistics
    hardly change under the random crops and resizes of training."""
    g = torch.Generator().manual_seed(seed)
    size = config.input_size
    fy, fx = torch.fft.fftfreq(size).view(-1, 1), torch.fft.fftfreq(size).view(1, -1)
    amplitude = 1.0 / torch.sqrt(fx ** 2 + fy ** 2).clamp(min=1.0 / size)
    phase = torch.rand(count, config.in_chans, size, size, generator=g) * 2 * torch.pi
    images = torch.fft.ifft2(amplitude * torch.exp(1j * phase)).real
    images = (images - images.mean((2, 3), keepdim=True)) / images.std((2, 3), keepdim=True)
    return UnlabeledImages((images * 50 + 128).clamp(0, 255).to(torch.uint8))


def _views(images: UnlabeledImages, config: DataConfig) -> torch.Tensor:
    return normalize(center_crop(images.images, config.input_size), config)


@torch.no_grad()
def _like_trained(model: nn.Module, x: torch.Tensor) -> None:
    """Random weights as they come are degenerate for mimicking: timm zero-initialises the last norm
    of every residual branch and starts layer scales near zero, so a branch adds nothing and pruning
    it changes nothing. Give every constant 1-D parameter (norm weights and biases, layer scales,
    biases) random values, then estimate BatchNorm statistics on ``x``, as a trained network has them
    (on views drawn as its training drew them: a student's statistics move toward those of its own
    training views, and a teacher's from other views would be a mismatch no training removes soon)."""
    g = torch.Generator().manual_seed(0)
    for name, p in model.named_parameters():
        if p.dim() == 1 and p.numel() > 1 and float(p.std()) == 0:
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
            else:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None   # a cumulative average over the batch
    model.train()
    model(x)
    model.eval()
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def _natural_scheme(model: torch.nn.Module) -> str:
    """One transformer block's attention (the middle one) where the model has such blocks, else its
    last residual block, else none."""
    blocks = transformer_blocks(model)
    if blocks:
        return f"attention:{blocks[len(blocks) // 2].removeprefix('model.')}"
    blocks = residual_blocks(model)
    return f"blocks:{blocks[-1].removeprefix('model.')}" if blocks else ""


def _image_folder(images: UnlabeledImages, root: Path) -> Path:
    """The images as PNG files: the calibration data of ``mimir quantize``, as a user gives it."""
    root.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images.images):
        array = img.permute(1, 2, 0).numpy()
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(root / f"{i}.png")
    return root


def check(reference: str, source: str = "", group: str = "", input_size: int | None = None, steps: int = 16,
          samples: int = 8, work: str | Path | None = None, seed: int = 0, require_lower: bool = True) -> Row:
    """Take the model ``reference`` names through every stage (see the module docstring), here,
    in this process; its :class:`Row`. ``input_size`` overrides the model's own (smaller: faster);
    ``require_lower=False`` records the mimic run's held-out errors without requiring the second
    to be lower (on random-weight teachers a run of a few steps does not lower it reliably yet)."""
    row = Row(source, group, reference)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=work) as tmp, torch.random.fork_rng():
        torch.manual_seed(seed)   # the random weights (the caller's generator is left as it was)
        try:
            _stages(row, reference, input_size, steps, samples, Path(tmp), require_lower)
            row.status = "passed"
        except MimirError as err:
            row.status, row.reason = "refused", str(err)
        except Exception as err:  # noqa: BLE001 - a failure from inside a library is what the sweep records
            where = traceback.extract_tb(err.__traceback__)[-1]
            row.status = "failed"
            row.reason = f"{type(err).__name__}: {first_line(err, 200)} ({Path(where.filename).name}:{where.lineno})"
    row.seconds = round(time.perf_counter() - started, 1)
    return row


def _stages(row: Row, reference: str, input_size: int | None, steps: int, samples: int, tmp: Path,
            require_lower: bool) -> None:
    row.stage = "build"
    given = {"input_size": input_size} if input_size else {}
    # random weights: a registry or timm name is built, a MODULE:CALLABLE is called (as a user's model)
    named = is_model(reference) or timm_name(reference) is not None
    resolved = resolve_model(create_model(reference) if named else reference, given=given)
    teacher, config = resolved.model, resolved.config
    row.input_size = config.input_size
    few, held = _images(samples, config, 0), _images(samples, config, 1)
    x = _views(held, config)
    _like_trained(teacher, normalize(Augment(config.input_size)(few.images.repeat(4, 1, 1, 1)), config))
    with torch.no_grad():
        row.feature_shape = list(teacher.forward_features(x[:1]).shape)
        logits = teacher(x[:1]).shape

    row.stage = "prune"
    row.macs = count_macs_params(teacher, x)[0]
    student, _ = prune(teacher, "channels:0.5", x[:1], round_to=resolve_round_to(None))
    row.macs_pruned = count_macs_params(student, x)[0]
    with torch.no_grad():
        if student(x[:1]).shape != logits:
            raise RuntimeError(f"the student's logits are {tuple(student(x[:1]).shape)}, the teacher's {tuple(logits)}")
    if row.macs_pruned > MAX_MAC_RATIO * row.macs:
        raise RuntimeError(f"channels:0.5 left {row.macs_pruned / row.macs:.0%} of the MACs")

    row.stage = "scheme"
    row.scheme = _natural_scheme(teacher)
    if row.scheme:
        dropped, _ = prune(teacher, row.scheme, x[:1])
        row.macs_scheme = count_macs_params(dropped, x)[0]
        if row.macs_scheme >= row.macs:
            raise RuntimeError(f"{row.scheme} removed no MACs")

    row.stage = "mimic"
    row.feature_error_before = feature_mse(student, teacher, held, config)
    out = tmp / "student.safetensors"
    result = api.compress(teacher, data=few, samples=samples, batch_size=samples, iterations=steps, eval_data=None,
                          input_size=config.input_size,
                          prune="channels:0.5", progress=False, out=out)   # the default method: MiR
    row.feature_error_after = feature_mse(result.model, teacher, held, config)
    if require_lower and not row.feature_error_after < row.feature_error_before:
        raise RuntimeError(f"{steps} MiR steps did not lower the held-out feature error "
                           f"({row.feature_error_before:.4g} -> {row.feature_error_after:.4g})")

    row.stage = "save"
    loaded = load(out, trust_code=True)
    trained = copy.deepcopy(result.model).eval().to(memory_format=torch.contiguous_format)   # trained channels-last
    with torch.no_grad():
        difference = float((loaded(x) - trained(x)).abs().max())
    if difference != 0:
        raise RuntimeError(f"the reloaded student's outputs differ from the saved one's by up to {difference:.3g}")

    row.stage = "onnx"
    exported = api.export(str(out), tmp / "student.onnx", trust_code=True)
    row.onnx_max_error = exported["max_abs_diff"]
    if exported["relative_diff"] > PARITY:
        raise RuntimeError(f"ONNX Runtime differs from PyTorch by {exported['relative_diff']:.2g} of the logit scale")

    row.stage = "int8"
    folder = _image_folder(few, tmp / "calibration")
    api.quantize(str(out), tmp / "student.int8.onnx", data=str(folder), samples=samples, eval_data=None,
                 progress=False, trust_code=True)
