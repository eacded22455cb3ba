"""``none``: the pruned student as it is, with no training (the floor every method must beat)."""

from __future__ import annotations

from torch import nn

from mimir.methods._base import Method, MethodInput, register_method


@register_method
class NoTraining(Method):
    """The pruned student as it is, no training: the floor every method must beat."""

    name = "none"
    iterative = False

    def run(self, inp: MethodInput) -> nn.Module:
        return inp.student.eval()
