"""MiR - Mimicking then Replacing (Wang et al., CVPR 2022).

*Mimic*: train the student's body end to end so that its pre-pool feature map matches the
teacher's, ``MSE(body_S(x), body_T(x))`` (mean reduction) on augmented few samples, no labels, the
teacher in eval mode, the student in train mode (BatchNorm statistics update). *Replace*: the
result is the student body under an exact copy of the teacher's head (pool + classifier).

``mir-postpool`` is the paper's ablation: the same, but on globally pooled features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mimir.engine import Task
from mimir.methods._base import Method, MethodInput, body_parameters, copy_head, fit, register_method


@register_method
class MiR(Method):
    """MiR: mimic the teacher's pre-pool feature map (MSE), then put the teacher's head on top (no labels)."""

    name = "mir"
    post_pool = False

    def features(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        f = model.forward_features(x)
        return model.forward_head(f, pre_logits=True) if self.post_pool else f

    def run(self, inp: MethodInput) -> nn.Module:
        teacher, student = inp.teacher.eval(), inp.student
        task = Task(student, forward=self.features, loss=F.mse_loss,
                    target=lambda x: self.features(teacher, x), trainable=body_parameters)
        fit(inp, task, desc=self.name)
        copy_head(student, teacher)
        return student.eval()


@register_method
class MiRPostPool(MiR):
    """MiR ablation: mimic the globally pooled features instead of the pre-pool map (no labels)."""

    name = "mir-postpool"
    post_pool = True
