"""MiR - Mimicking then Replacing (Wang et al., CVPR 2022).

*Mimic*: train the student's body end to end so that its pre-pool feature map matches the
teacher's, ``MSE(body_S(x), body_T(x))`` (mean reduction) on augmented few samples, no labels, the
teacher in eval mode, the student in train mode (BatchNorm statistics update). *Replace*: the
result is the student body under an exact copy of the teacher's head (pool + classifier).

``mir-postpool`` is the paper's ablation: the same, but on globally pooled features.
"""

from __future__ import annotations

import torch
from torch import nn

from mimir.methods._base import Method, MethodInput, copy_head, fit, head_parameters, register_method


@register_method
class MiR(Method):
    """MiR: mimic the teacher's pre-pool feature map (MSE), then put the teacher's head on top (no labels)."""

    name = "mir"
    post_pool = False

    def run(self, inp: MethodInput) -> nn.Module:
        teacher, student = inp.teacher.eval(), inp.student.train()
        criterion = nn.MSELoss()

        def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
            f = model.forward_features(x)
            return model.forward_head(f, pre_logits=True) if self.post_pool else f

        def loss_fn(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                target = features(teacher, x)
            return criterion(features(student, x), target)

        head = head_parameters(student)
        fit(inp, loss_fn, [p for p in student.parameters() if id(p) not in head], desc=self.name)
        copy_head(student, teacher)
        return student.eval()


@register_method
class MiRPostPool(MiR):
    """MiR ablation: mimic the globally pooled features instead of the pre-pool map (no labels)."""

    name = "mir-postpool"
    post_pool = True
