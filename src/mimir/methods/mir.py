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
- ``pooled``: weight of an MSE term on the globally pooled features as well (a ViT's class token).
- ``normalize``: ``position`` compares the maps with each position's feature vector standardised.
- ``relations``: weight of MiniLM-v2's q/k/v self-attention relations of every attention both keep.
- ``optimizer``: ``sgd`` (the protocol) or ``adamw`` (its own default learning rate unless ``--lr``),
  ``warmup``: fraction of the run with a linear learning-rate warm-up.
- ``ema``: the result is a moving average of the student's weights with this decay (warmed up).
- ``views``: each sample this many times per batch, each time in its own view.
- ``layer_decay``: layer-wise learning-rate decay, x ``layer_decay`` per residual block from the output.

``mir-plus`` is MiR with the options that measurably helped as its defaults, chosen by the
teacher's family (docs/BEYOND-MIR.md).
"""

from __future__ import annotations

import math
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
from mimir.models.anatomy import attention_modules, body_parameters, layer_groups, residual_blocks

SCHEDULES = ("step", "cosine")
OPTIMIZERS = ("sgd", "adamw")
NORMALIZE = ("none", "position")


@register_method
class MiR(Method):
    """MiR: mimic the teacher's pre-pool feature map (MSE), then put the teacher's head on top (no labels)."""

    name = "mir"
    post_pool = False
    options = {"mix": "none", "mix_alpha": 1.0, "mix_prob": 1.0, "augment": "none", "schedule": "step",
               "kd": 0.0, "temperature": 4.0, "stages": 0.0, "pooled": 0.0, "normalize": "none",
               "optimizer": "sgd", "warmup": 0.0, "ema": 0.0, "relations": 0.0, "views": 1,
               "layer_decay": 1.0}
    choices = {"mix": MIXES, "augment": POLICIES, "schedule": SCHEDULES, "normalize": NORMALIZE,
               "optimizer": OPTIMIZERS}
    ranges = {"mix_alpha": "(0, inf)", "mix_prob": "(0, 1]", "kd": "[0, inf)", "temperature": "(0, inf)",
              "stages": "[0, inf)", "pooled": "[0, inf)", "warmup": "[0, 1)", "ema": "[0, 1)",
              "relations": "[0, inf)", "views": "[1, inf)", "layer_decay": "(0, 1]"}
    ablation_base = "mir"   # mir with options is an ablation of plain mir

    def features(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        f = model.forward_features(x)
        return model.forward_head(f, pre_logits=True) if self.post_pool else f

    def run(self, inp: MethodInput) -> nn.Module:
        teacher, student = inp.teacher.eval(), inp.student
        o = self.settings(inp)
        cfg = inp.train.with_(policy=o["augment"], schedule=o["schedule"], optimizer=o["optimizer"],
                              warmup=o["warmup"], ema=o["ema"], views=o["views"])
        trainable = body_parameters if o["layer_decay"] == 1 else lambda m: layer_groups(m, o["layer_decay"])
        mix = None
        if o["mix"] != "none":
            saliency = pre_pool_energy(teacher) if o["mix"] == "salient" else None
            mix = Mixer(o["mix"], o["mix_alpha"], o["mix_prob"], inp.seed, saliency)
        if not (o["kd"] or o["stages"] or o["pooled"] or o["relations"]) and o["normalize"] == "none":
            # the published method: one MSE on one map
            task = Task(student, forward=self.features, loss=F.mse_loss,
                        target=lambda x: self.features(teacher, x), trainable=trainable, mix=mix)
            fit(inp, task, desc=self.name, cfg=cfg)
        else:
            # a default (mir-plus) stage term is dropped with a warning where the pruning leaves no
            # stage its shape; one asked for explicitly is an error there
            names = shared_stages(teacher, student, inp.data_config, required="stages" in inp.options) \
                if o["stages"] else []
            pairs = shared_attention(teacher, student) if o["relations"] else {}
            qkv, heads = [f"{n}.qkv" for n in pairs], list(pairs.values())
            with _taps(teacher, names) as t_taps, _taps(student, names) as s_taps, \
                    _taps(teacher, qkv) as t_qkv, _taps(student, qkv) as s_qkv:
                task = Task(student, forward=lambda m, x: self._outputs(m, x, o, s_taps, s_qkv),
                            loss=lambda out, tgt: self._loss(out, tgt, o, heads), trainable=trainable, mix=mix,
                            target=lambda x: self._outputs(teacher, x, o, t_taps, t_qkv))
                fit(inp, task, desc=self.name, cfg=cfg)
        copy_head(student, teacher)
        return student.eval()

    def _outputs(self, model: nn.Module, x: torch.Tensor, o: dict, taps: list, qkv: list
                 ) -> tuple[torch.Tensor, ...]:
        """(mimicked features, [pooled features], [logits], earlier stage outputs..., q/k/v
        projections...) of one forward pass."""
        taps.clear()
        qkv.clear()
        f = model.forward_features(x)
        out = [model.forward_head(f, pre_logits=True) if self.post_pool else f]
        if o["pooled"] > 0:
            out.append(model.forward_head(f, pre_logits=True))
        if o["kd"] > 0:
            out.append(model.forward_head(f))
        return tuple(out + taps + qkv)

    @staticmethod
    def _loss(out: tuple[torch.Tensor, ...], target: tuple[torch.Tensor, ...], o: dict, heads: list[int]
              ) -> torch.Tensor:
        """The weighted sum of the terms ``o`` asks for; ``heads``: the relation heads of each
        compared attention, whose q/k/v projections end ``out`` and ``target``."""
        norm = per_position if o["normalize"] == "position" else (lambda f: f)
        loss = F.mse_loss(norm(out[0]), norm(target[0]))
        rest = 1
        if o["pooled"] > 0:
            loss = loss + o["pooled"] * F.mse_loss(out[rest], target[rest])
            rest += 1
        if o["kd"] > 0:
            loss = loss + o["kd"] * kd_loss(out[rest], target[rest], o["temperature"])
            rest += 1
        end = len(out) - len(heads)
        for s, t in zip(out[rest:end], target[rest:end]):
            loss = loss + o["stages"] * F.mse_loss(norm(s), norm(t))
        for s, t, h in zip(out[end:], target[end:], heads):
            loss = loss + o["relations"] * relation_loss(s, t, h)
        return loss


def shared_attention(teacher: nn.Module, student: nn.Module) -> dict[str, int]:
    """The attention modules both models keep (by name), each with the number of relation heads its
    q/k/v relations are compared in: the smaller of the two head counts."""
    t, s = attention_modules(teacher), attention_modules(student)
    shared = {n: min(t[n].num_heads, s[n].num_heads) for n in t if n in s}
    if not shared:
        raise MimirError("option relations: teacher and student keep no attention module in common",
                         "drop the relations option (it needs a transformer that keeps some attention)")
    return shared


def relation_loss(student_qkv: torch.Tensor, teacher_qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """MiniLM-v2's self-attention relation distillation (Wang et al., 2021): from the fused q/k/v
    projections (B, N, 3 D) of one attention, split into ``heads`` relation heads whatever each
    model's own head count, the KL divergence between the teacher's and the student's query-query,
    key-key and value-value relations softmax(A A^T / sqrt(d)), averaged over the three."""
    total = 0.0
    for s, t in zip(student_qkv.chunk(3, dim=-1), teacher_qkv.chunk(3, dim=-1)):
        log_s, log_t = (_relations(a, heads) for a in (s, t))
        total = total + F.kl_div(log_s, log_t, log_target=True, reduction="none").sum(-1).mean()
    return total / 3


def _relations(a: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = a.shape
    a = a.reshape(b, n, heads, d // heads).transpose(1, 2)
    return F.log_softmax(a @ a.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)


def per_position(f: torch.Tensor) -> torch.Tensor:
    """``f`` with the feature vector at each position standardised (zero mean, unit variance over
    the channels): a (B, C, H, W) map over C, a (B, N, C) token map over C, pooled (B, C) over C.
    Matching these weighs every position (token) alike, however large its activations."""
    dim = 1 if f.ndim == 4 else -1
    mean = f.mean(dim, keepdim=True)
    var = f.var(dim, keepdim=True, unbiased=False)
    return (f - mean) * torch.rsqrt(var + 1e-5)


@register_method
class MiRPostPool(MiR):
    """MiR ablation: mimic the globally pooled features instead of the pre-pool map (no labels)."""

    name = "mir-postpool"
    post_pool = True
    ablation_base = None


@register_method
class MiRPlus(MiR):
    """MiR with the best measured recipe of the teacher's family as its defaults (no labels).

    A CNN: mixup views, RandAugment, earlier stages mimicked too, AdamW with warm-up, cosine
    schedule. A Vision Transformer: the same without mixing or the stage term."""

    name = "mir-plus"
    # the best combination of the ablation (ResNet-20, channels:0.75, 50 samples, 400 iterations,
    # seeds 1-3: 90.80 +- 0.06 % against mir's 88.27 +- 0.58 %; logit KD left out, -7.6 points):
    # every teacher's defaults before runs recorded their options
    unrecorded_options = {**MiR.options, "mix": "mixup", "augment": "randaugment", "stages": 1.0,
                          "schedule": "cosine"}
    # then AdamW (2e-3) with a 5 % warm-up in place of SGD, ahead in every setting of
    # benchmarks/beyond-mir-cnn.yaml at 400 and 2000 iterations
    options = {**unrecorded_options, "optimizer": "adamw", "warmup": 0.05}
    # a Vision Transformer's student: without mixing or the stage term (benchmarks/beyond-mir-vit.yaml)
    family_options = {"transformer": {"mix": "none", "stages": 0.0}}


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
