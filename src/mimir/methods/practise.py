"""``practise``: PRACTISE block selection (Wang & Wu, CVPR 2023), then MiR. No labels.

Used with ``--prune blocks:auto:K``. For every droppable block of the teacher (input and output
shapes agree), alone: replace it by an identity-initialised 1x1 "adaptor" conv, train only the
adaptor (the shared loop's SGD settings, BatchNorm frozen) so the pre-pool map matches the
teacher's, and take the remaining MSE on the few samples (no augmentation) as the block's
*recoverability*. Score = recoverability / MACs saved by dropping the block (the paper divides by
latency saved; MACs are deterministic on a shared CPU). The K lowest scores are dropped, the student
is rebuilt from the teacher without them (no adaptors), and trained with MiR.

Chosen where the protocol is open: one adaptor in place of the block (the paper places adaptors
around the gap), ``practise_iterations`` 200 per candidate (option).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mimir.core import DataConfig, model_device
from mimir.data.datasets import UnlabeledImages
from mimir.engine import Runtime, Task, TrainConfig, train
from mimir.errors import MimirError
from mimir.evaluate import count_macs_params, feature_mse
from mimir.methods._base import MethodInput, register_method
from mimir.methods.mir import MiR
from mimir.models.anatomy import residual_blocks


def _channels_of(model: nn.Module, block: str, example: torch.Tensor) -> int:
    out: dict[str, int] = {}

    def hook(module, args, output) -> None:  # must return None, or it would replace the output
        out["c"] = output.shape[1]

    handle = model.get_submodule(block).register_forward_hook(hook)
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        handle.remove()
    return out["c"]


def _adaptor(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 1, bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        conv.bias.zero_()
    return conv


def recoverability(teacher: nn.Module, block: str, samples: UnlabeledImages, config: DataConfig,
                   cfg: TrainConfig, seed: int, example: torch.Tensor, runtime: Runtime = Runtime()) -> float:
    """Feature MSE left after training a 1x1 adaptor in place of ``block`` (BN frozen)."""
    model = copy.deepcopy(teacher).eval()
    adaptor = _adaptor(_channels_of(model, block, example))
    model.set_submodule(block, adaptor)
    task = Task(model, forward=lambda m, x: m.forward_features(x), loss=F.mse_loss,
                target=lambda x: teacher.forward_features(x), trainable=lambda m: list(adaptor.parameters()),
                train_mode=False)  # eval mode: BatchNorm frozen
    train(task, samples.images, None, config, cfg, seed, runtime, progress=False, desc=f"adaptor {block}")
    return feature_mse(model, teacher, samples, config, runtime=runtime)


def select_blocks(teacher: nn.Module, samples: UnlabeledImages, config: DataConfig, k: int, cfg: TrainConfig,
                  seed: int, progress: bool = True, runtime: Runtime = Runtime()) -> tuple[list[str], list[dict]]:
    """The K blocks to drop and the full ranking (best to drop first); ``cfg`` is the adaptors'
    training (its ``iterations`` per candidate)."""
    candidates = residual_blocks(teacher)
    if not 1 <= k <= len(candidates):
        raise MimirError(f"blocks:auto:{k} asks for {k} of {len(candidates)} droppable blocks",
                         f"choose K between 1 and {len(candidates)}")
    device = model_device(teacher)
    example = torch.zeros(1, config.in_chans, config.input_size, config.input_size, device=device)
    teacher_macs = count_macs_params(teacher, example)[0]
    ranking = []
    for block in tqdm(candidates, desc="practise: recoverability", disable=not progress, leave=False):
        pruned = copy.deepcopy(teacher)
        pruned.set_submodule(block, nn.Identity())
        saved = teacher_macs - count_macs_params(pruned, example)[0]
        error = recoverability(teacher, block, samples, config, cfg, seed, example, runtime)
        ranking.append({"block": block, "recoverability": error, "macs_saved": saved, "score": error / saved})
    ranking.sort(key=lambda r: (r["score"], r["block"]))
    return [r["block"] for r in ranking[:k]], ranking


@register_method
class Practise(MiR):
    """PRACTISE: drop the K most recoverable blocks per MAC saved, then MiR (no labels)."""

    name = "practise"
    selects_blocks = True
    options = {**MiR.options, "practise_iterations": 200}   # its final MiR takes the options of mir
    ranges = {**MiR.ranges, "practise_iterations": "[1, inf)"}
    quick_options = {"practise_iterations": 1}
    ablation_base = None

    def summary_lines(self, summary: dict) -> list[str]:
        lines = ["PRACTISE ranking (lower score = dropped first; score = recoverability / MACs saved):"]
        for i, r in enumerate(summary.get("ranking", []), start=1):
            mark = "dropped" if r["block"] in summary["dropped_blocks"] else ""
            lines.append(f"  {i:>2}. {r['block']:<14} recoverability {r['recoverability']:.4g}  "
                         f"MACs saved {r['macs_saved'] / 1e6:.2f}M  score {r['score']:.3g}  {mark}")
        return lines

    def choose_blocks(self, inp: MethodInput, k: int) -> tuple[list[str], list[dict]]:
        cfg = inp.train.with_(iterations=self.option(inp, "practise_iterations"))
        return select_blocks(inp.teacher, inp.samples, inp.data_config, k, cfg, inp.seed, inp.progress, inp.runtime)
