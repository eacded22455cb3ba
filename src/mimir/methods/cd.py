"""``cd`` and ``cd-ft``: Cross Distillation (Bai et al., AAAI 2020), layer by layer, no labels.

For every conv whose input channels were pruned, in order, with the teacher's input ``X_t`` and the student's input ``X_s``
at that layer (the student's earlier layers already refitted) on the few samples:

- correction ``L_c = ||W_s * X_t - W_t * X_t||^2``  (student weights fed the teacher's input)
- imitation  ``L_i = ||W_t * X_s - W_s * X_s||^2``  (teacher weights fed the student's input)

with the teacher restricted to the channels the student kept; the loss ``mu L_c + (1 - mu) L_i`` is
a mean over output elements, minimised over ``W_s`` with Adam. The student is the shared pruned
student (L1 filter pruning), so CD's own group hard-threshold channel selection is not used.

Chosen where the protocol is open (all options, via ``MethodInput.options``): ``mu`` 0.6,
``cd_steps`` 400 Adam steps per layer (the paper's 2000-3000 cost ~6x more here for little gain
on small nets), ``cd_lr`` 1e-3, mini-batches of ``batch_size`` samples, no augmentation.

``cd-ft`` adds the public code's last step: fine-tuning the whole network with cross-entropy on the
labels of the few samples (the shared loop, ``cd_ft_lr`` 1e-3; the public code's 1e-5 barely
moves a network under this loop's SGD schedule). It is the only CD variant that sees labels.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mimir.data.transforms import normalize
from mimir.methods._base import Method, MethodInput, fit, register_method, seeded
from mimir.methods._layers import capture, pruned_convs
from mimir.methods.bp import supervised


def _conv(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def cross_distill_layer(conv: nn.Conv2d, teacher_conv: nn.Conv2d, x_t: torch.Tensor, x_s: torch.Tensor,
                        kept_out: list[int], kept_in: list[int], mu: float, steps: int, lr: float,
                        batch_size: int, generator: torch.Generator) -> list[float]:
    """Refit ``conv`` (the student's) in place; returns the loss of every step."""
    w_t = teacher_conv.weight.detach()
    b_t = teacher_conv.bias.detach() if teacher_conv.bias is not None else None
    w_t_kept = w_t[kept_out][:, kept_in]
    b_t_kept = b_t[kept_out] if b_t is not None else None
    params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
    optimizer = torch.optim.Adam(params, lr=lr)
    losses = []
    n = x_t.shape[0]
    for _ in range(steps):
        idx = torch.randint(n, (min(batch_size, n),), generator=generator)
        xt, xs = x_t[idx], x_s[idx]
        with torch.no_grad():
            target_c = _conv(teacher_conv, xt, w_t, b_t)[:, kept_out]
            target_i = _conv(teacher_conv, xs, w_t_kept, b_t_kept)
        correction = F.mse_loss(_conv(conv, xt[:, kept_in], conv.weight, conv.bias), target_c)
        imitation = F.mse_loss(_conv(conv, xs, conv.weight, conv.bias), target_i)
        loss = mu * correction + (1 - mu) * imitation
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@register_method
class CrossDistillation(Method):
    """Cross Distillation: layer-wise correction + imitation with Adam (no labels)."""

    name = "cd"
    iterative = False
    finetune = False
    options = {"mu": 0.6, "cd_steps": 400, "cd_lr": 1e-3}
    ranges = {"mu": "[0, 1]", "cd_steps": "[1, inf)", "cd_lr": "(0, inf)"}
    quick_options = {"cd_steps": 1}

    def run(self, inp: MethodInput) -> nn.Module:
        teacher, student = inp.teacher.eval(), inp.student.eval()
        mu, steps, lr = self.option(inp, "mu"), self.option(inp, "cd_steps"), self.option(inp, "cd_lr")
        images, config = inp.samples.images, inp.data_config
        generator = seeded(inp.seed)
        layers = pruned_convs(teacher, student, inp.arch, normalize(images[:2], config), self.name)
        # a layer that kept all its inputs starts at W_s = W_t restricted: both terms are exactly 0
        # and stay 0 (no gradient), so only layers with pruned input channels are refitted
        layers = [l for l in layers if len(l.kept_in) < teacher.get_submodule(l.conv).in_channels]
        for layer in tqdm(layers, desc=self.name, disable=not inp.progress, leave=False):
            x_t = capture(teacher, layer.conv, images, config, want="input")
            x_s = capture(student, layer.conv, images, config, want="input")
            cross_distill_layer(
                student.get_submodule(layer.conv), teacher.get_submodule(layer.conv), x_t, x_s,
                layer.kept_out, layer.kept_in, mu, steps, lr, inp.train.batch_size, generator)
        for p in student.parameters():
            p.requires_grad_(True)
        if self.finetune:
            fit(replace(inp, train=inp.train.with_(lr=self.option(inp, "cd_ft_lr"))), supervised(student), desc="cd-ft")
        return student.eval()


@register_method
class CrossDistillationFinetuned(CrossDistillation):
    """Cross Distillation, then fine-tuning with the labels of the few samples."""

    name = "cd-ft"
    needs_labels = True
    iterative = True
    finetune = True
    options = {**CrossDistillation.options, "cd_ft_lr": 1e-3}
    ranges = {**CrossDistillation.ranges, "cd_ft_lr": "(0, inf)"}
