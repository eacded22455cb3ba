"""``fskd``: Few Sample Knowledge Distillation (Li et al., CVPR 2020), closed form, no SGD, no labels.

For every pruned conv, in order: take the pre-activation outputs of that layer on all few samples
(no augmentation) - the teacher's restricted to the channels the student kept, the student's after
its earlier layers were already fixed - flatten them to (N*H*W) x C and solve
``min_Q ||S Q - T||^2`` by least squares (normal equations in float64). Q, a 1x1 conv, is then
absorbed so the architecture and cost do not change.

BatchNorm is handled explicitly, not folded: the pre-activation is the BN output
``y = a * (W x) + c`` (a = gamma / sqrt(var + eps), c = beta - a * mean). With M = Q^T,
``M y = (M diag(a) W) x + M c``: the conv weight becomes ``M diag(a) W`` and the BN keeps its
running statistics but gets gamma = sqrt(var + eps) (scale 1) and beta = M c + mean. A conv without
BN absorbs Q into its weight (and bias).
"""

from __future__ import annotations

import torch
from torch import nn

from mimir.data.transforms import normalize
from mimir.methods._base import Method, MethodInput, register_method
from mimir.methods._layers import capture, pruned_convs


def least_squares(student_out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
    """Q (C_s x C_t) minimising ||S Q - T||^2, with S, T the N x C x H x W maps flattened per position."""
    s = student_out.permute(0, 2, 3, 1).reshape(-1, student_out.shape[1]).double()
    t = teacher_out.permute(0, 2, 3, 1).reshape(-1, teacher_out.shape[1]).double()
    gram, cross = s.T @ s, s.T @ t
    # solved on the CPU: its rank-revealing driver (gelsd) copes with a singular Gram matrix; CUDA has only gels
    return torch.linalg.lstsq(gram.cpu(), cross.cpu(), driver="gelsd").solution.to(student_out.device)


@torch.no_grad()
def absorb(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, q: torch.Tensor) -> None:
    """Make ``bn(conv(x))`` (or ``conv(x)``) equal to the old pre-activation followed by the 1x1 conv Q."""
    m = q.T.to(conv.weight.dtype)                      # 1x1 conv weight: new_j = sum_i M[j, i] old_i
    w = conv.weight.flatten(1)
    if bn is None:
        conv.weight.copy_((m @ w).view_as(conv.weight))
        if conv.bias is not None:
            conv.bias.copy_(m @ conv.bias)
        return
    std = torch.sqrt(bn.running_var + bn.eps)
    a = bn.weight / std
    c = bn.bias - a * bn.running_mean
    conv.weight.copy_((m @ (a[:, None] * w)).view_as(conv.weight))
    if conv.bias is not None:  # a bias before BN is scaled by a like the weights
        conv.bias.copy_(m @ (a * conv.bias))
    bn.weight.copy_(std)
    bn.bias.copy_(m @ c + bn.running_mean)


@register_method
class FSKD(Method):
    """Few Sample KD: closed-form 1x1 conv per pruned layer, absorbed (no SGD, no labels)."""

    name = "fskd"
    iterative = False

    def run(self, inp: MethodInput) -> nn.Module:
        teacher, student = inp.teacher.eval(), inp.student.eval()
        images, config = inp.samples.images, inp.data_config
        example = normalize(images[:2], config)
        for layer in pruned_convs(teacher, student, inp.arch, example, self.name):
            pre_act = layer.bn or layer.conv
            s = capture(student, pre_act, images, config)
            t = capture(teacher, pre_act, images, config)[:, layer.kept_out]
            q = least_squares(s, t)
            absorb(student.get_submodule(layer.conv), student.get_submodule(layer.bn) if layer.bn else None, q)
        return student.eval()
