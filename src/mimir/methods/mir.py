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

from mimir.data.transforms import Augment
from mimir.methods._base import Method, MethodInput, copy_head, head_parameters, register_method, seeded
from mimir.methods._loop import batch_stream, prepare, run_loop


@register_method
class MiR(Method):
    name = "mir"
    post_pool = False

    def run(self, inp: MethodInput) -> nn.Module:
        teacher, student, cfg = inp.teacher.eval(), inp.student.train(), inp.train
        generator = seeded(inp.seed)
        augment = Augment(inp.data_config.input_size) if cfg.augment else None
        batches = batch_stream((inp.samples.images,), cfg.batch_size, generator)
        head = head_parameters(student)
        criterion = nn.MSELoss()

        def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
            f = model.forward_features(x)
            return model.forward_head(f, pre_logits=True) if self.post_pool else f

        def loss_fn(batch):
            x = prepare(batch[0], inp.data_config, augment)
            with torch.no_grad():
                target = features(teacher, x)
            return criterion(features(student, x), target)

        body = [p for p in student.parameters() if id(p) not in head]
        run_loop(body, loss_fn, batches, cfg, desc=self.name, progress=inp.progress)
        copy_head(student, teacher)
        return student.eval()


@register_method
class MiRPostPool(MiR):
    name = "mir-postpool"
    post_pool = True
