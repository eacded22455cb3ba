"""MiR - Mimicking then Replacing (Wang et al., CVPR 2022), and ``mir-plus``.

*Mimic*: train the student's body end to end so that its pre-pool feature map matches the
teacher's, ``MSE(body_S(x), body_T(x))`` (mean reduction) on augmented few samples, no labels, the
teacher in eval mode, the student in train mode (BatchNorm statistics update). *Replace*: the
result is the student body under an exact copy of the teacher's head (pool + classifier).

``mir-postpool`` is the paper's ablation: the same, but on globally pooled features.

Options (``--option KEY=VALUE``; ``mir``'s defaults are the published method, unchanged):

- ``mix``: ``mixup``, ``cutmix``, ``both`` or ``salient`` (CutMix at the teacher's salient regions)
  between the few images, ``mix_alpha`` (Beta parameter), ``mix_prob`` (fraction of images mixed).
  Teacher and student see the identical mixed view; the target is the teacher's answer to it.
- ``augment``: ``randaugment`` or ``trivialaugment`` after the crop and flip.
- ``schedule``: ``step`` (x0.1 at 40 % and 80 %) or ``cosine``.
- ``kd``: weight of a logit-distillation term (T = ``temperature``) through the head both share
  (the student's is a frozen copy of the teacher's).
- ``stages``: weight of an MSE term on each earlier stage's output (shapes shared by both).

``mir-plus`` is MiR with the options that measurably helped as its defaults (the ablation in
docs/beyond-mir/RESULTS.md).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from mimir.core import DataConfig, eval_mode, model_device
from mimir.data.transforms import POLICIES
from mimir.engine import Task
from mimir.engine.mixing import MIXES, Mixer, pre_pool_energy
from mimir.errors import MimirError
from mimir.methods._base import Method, MethodInput, copy_head, fit, register_method
from mimir.methods.kd import kd_loss
from mimir.models.anatomy import body_parameters, residual_blocks

SCHEDULES = ("step", "cosine")


@register_method
class MiR(Method):
    """MiR: mimic the teacher's pre-pool feature map (MSE), then put the teacher's head on top (no labels)."""

    name = "mir"
    post_pool = False
    options = {"mix": "none", "mix_alpha": 1.0, "mix_prob": 1.0, "augment": "none", "schedule": "step",
               "kd": 0.0, "temperature": 4.0, "stages": 0.0}
    choices = {"mix": MIXES, "augment": POLICIES, "schedule": SCHEDULES}
    ranges = {"mix_alpha": "(0, inf)", "mix_prob": "(0, 1]", "kd": "[0, inf)", "temperature": "(0, inf)",
              "stages": "[0, inf)"}
    ablation_base = "mir"   # mir with options is an ablation of plain mir

    def features(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        f = model.forward_features(x)
        return model.forward_head(f, pre_logits=True) if self.post_pool else f

    def run(self, inp: MethodInput) -> nn.Module:
        teacher, student = inp.teacher.eval(), inp.student
        o = {key: self.option(inp, key) for key in self.options}
        cfg = inp.train.with_(policy=o["augment"], schedule=o["schedule"])
        mix = None
        if o["mix"] != "none":
            saliency = pre_pool_energy(teacher) if o["mix"] == "salient" else None
            mix = Mixer(o["mix"], o["mix_alpha"], o["mix_prob"], inp.seed, saliency)
        if o["kd"] == 0 and o["stages"] == 0:   # the published method: one MSE on one map
            task = Task(student, forward=self.features, loss=F.mse_loss,
                        target=lambda x: self.features(teacher, x), trainable=body_parameters, mix=mix)
            fit(inp, task, desc=self.name, cfg=cfg)
        else:
            # a default (mir-plus) stage term is dropped with a warning where the pruning leaves no
            # stage its shape; one asked for explicitly is an error there
            names = shared_stages(teacher, student, inp.data_config, required="stages" in inp.options) \
                if o["stages"] else []
            with _taps(teacher, names) as t_taps, _taps(student, names) as s_taps:
                task = Task(student, forward=lambda m, x: self._outputs(m, x, o["kd"] > 0, s_taps),
                            loss=lambda out, tgt: self._loss(out, tgt, o), trainable=body_parameters, mix=mix,
                            target=lambda x: self._outputs(teacher, x, o["kd"] > 0, t_taps))
                fit(inp, task, desc=self.name, cfg=cfg)
        copy_head(student, teacher)
        return student.eval()

    def _outputs(self, model: nn.Module, x: torch.Tensor, logits: bool, taps: list) -> tuple[torch.Tensor, ...]:
        """(mimicked features, [logits], earlier stage outputs...) of one forward pass."""
        taps.clear()
        f = model.forward_features(x)
        out = [model.forward_head(f, pre_logits=True) if self.post_pool else f]
        if logits:
            out.append(model.forward_head(f))
        return tuple(out + taps)

    @staticmethod
    def _loss(out: tuple[torch.Tensor, ...], target: tuple[torch.Tensor, ...], o: dict) -> torch.Tensor:
        loss = F.mse_loss(out[0], target[0])
        rest = 1
        if o["kd"] > 0:
            loss = loss + o["kd"] * kd_loss(out[1], target[1], o["temperature"])
            rest = 2
        for s, t in zip(out[rest:], target[rest:]):
            loss = loss + o["stages"] * F.mse_loss(s, t)
        return loss


@register_method
class MiRPostPool(MiR):
    """MiR ablation: mimic the globally pooled features instead of the pre-pool map (no labels)."""

    name = "mir-postpool"
    post_pool = True
    ablation_base = None


@register_method
class MiRPlus(MiR):
    """MiR on mixup views with RandAugment, earlier stages mimicked too, cosine schedule (no labels)."""

    name = "mir-plus"
    # the best combination of the ablation (ResNet-20, channels:0.75, 50 samples, 400 iterations,
    # seeds 1-3: 90.80 +- 0.06 % against mir's 88.27 +- 0.58 %); logit KD is left out (-7.6 points)
    options = {**MiR.options, "mix": "mixup", "augment": "randaugment", "stages": 1.0, "schedule": "cosine"}


def shared_stages(teacher: nn.Module, student: nn.Module, config: DataConfig, required: bool = True) -> list[str]:
    """The modules whose outputs ``stages=`` matches: each stage (the parent of a run of residual
    blocks) but the last, or each block but the last when all blocks form one stage (a ViT); only
    those present in both models with outputs of the same shape. None at all is an error when
    ``required``, else a warning and an empty list."""
    blocks = residual_blocks(teacher)
    stages = list(dict.fromkeys(name.rpartition(".")[0] for name in blocks))
    names = (stages if len(stages) > 1 else blocks)[:-1]
    x = torch.zeros(1, config.in_chans, config.input_size, config.input_size, device=model_device(teacher))
    shapes = []
    for model in (teacher, student):
        present = [n for n in names if _has(model, n)]
        with _taps(model, present) as taps, eval_mode(model), torch.no_grad():
            model.forward_features(x)
        shapes.append(dict(zip(present, (t.shape for t in taps))))
    shared = [n for n in names if n in shapes[0] and shapes[0][n] == shapes[1].get(n)]
    if not shared and required:
        raise MimirError("option stages: no earlier stage has the same output shape in teacher and student",
                         "drop the stages option for this pruning scheme")
    if not shared:
        warnings.warn("no earlier stage has the same output shape in teacher and student under this pruning: "
                      "the stage term (stages) is left out", stacklevel=3)
    return shared


def _has(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


@contextmanager
def _taps(model: nn.Module, names: list[str]) -> Iterator[list[torch.Tensor]]:
    """A list that collects the outputs of the modules ``names`` (in call order) while it is open."""
    outputs: list[torch.Tensor] = []
    handles = [model.get_submodule(n).register_forward_hook(lambda m, i, o: outputs.append(o)) for n in names]
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()
