"""The one training loop: every iterative method (and teacher training) runs its steps here.

A method describes *what* it optimises as a :class:`Task` (the module, what of it is compared,
with which loss, against the teacher's target or the labels); :func:`train` decides *how* the steps
run: seeded batches (:mod:`mimir.engine.views`), device and precision (:mod:`mimir.engine.runtime`),
data parallelism (:mod:`mimir.engine.distributed`), checkpoints and resume
(:mod:`mimir.engine.checkpoint`). SGD, iteration-based as in the published MiR protocol, learning
rate x ``gamma`` at each milestone (fractions of the run) or cosine decay.

The loop does not synchronise with the device every step: losses stay on the device and are read
(for the progress bar and the non-finite check) every ``log_every`` steps and before a checkpoint.
"""

from __future__ import annotations

import itertools
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from mimir.core import DataConfig, frozen_except
from mimir.data.transforms import normalize
from mimir.engine import distributed as dist
from mimir.engine.checkpoint import Checkpointing, load_training_state, save_training_state, set_rng_state
from mimir.engine.runtime import Runtime
from mimir.engine.views import (
    BatchSchedule,
    CropFlipViews,
    LargeViewStream,
    PolicyViews,
    TargetCache,
    is_small,
    large_view_loader,
)
from mimir.errors import MimirError

#: the learning rate of each optimiser when none is given: SGD's is the published MiR protocol's;
#: AdamW's the best of 1e-4, 3e-4, 1e-3, 2e-3 and 4e-3 for the bundled ViT's student (docs/BEYOND-MIR.md)
DEFAULT_LR = {"sgd": 0.02, "adamw": 2e-3}


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are the published MiR protocol (methods.md)."""

    iterations: int = 2000
    batch_size: int = 64
    lr: float | None = None  # None: the optimiser's default, DEFAULT_LR (0.02 for SGD: the MiR protocol)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[float, ...] = (0.4, 0.8)
    gamma: float = 0.1
    schedule: str = "step"  # "step" (milestones) or "cosine"
    nesterov: bool = False
    optimizer: str = "sgd"  # "sgd" (the MiR protocol) or "adamw" (training a ViT teacher from scratch)
    warmup: float = 0.0     # fraction of the iterations with a linear learning-rate warm-up
    ema: float = 0.0        # > 0: the result is an exponential moving average of the weights, this decay
    views: int = 1          # views of each sample in a batch (a batch of views x min(batch_size, samples))
    augment: bool = True
    policy: str = "none"    # augmentation policy after crop and flip: none, randaugment, trivialaugment
    log_every: int = 20                 # steps between reads of the loss (progress bar, non-finite check)
    cache_bytes: int = 2 << 30          # largest teacher-target cache (see views.TargetCache)
    cache_targets: bool | None = None   # None: cache when it saves teacher passes and fits cache_bytes
    loader_workers: int = 4             # DataLoader workers for large-input augmentation on a GPU

    def with_(self, **changes) -> "TrainConfig":
        return replace(self, **changes)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]


@dataclass
class Task:
    """What a method optimises.

    ``forward(module, x)`` is what is compared (e.g. the pre-pool map; a tensor or a tuple of
    tensors); ``loss(output, target)`` compares it with ``target(x)`` - the teacher's output on the
    same view, computed under ``no_grad`` and cached when the views are finite - or, when ``target``
    is None, with the labels. ``trainable(module)`` names the parameters the optimiser updates
    (default: all), or gives them as groups (``{"params": [...], "lr_scale": s}``: a group's
    learning rate is scaled by ``s``); every other parameter is frozen for the run, so it gets no gradient.
    ``train_mode`` False keeps the module in eval mode (BatchNorm statistics frozen). ``mix(x,
    step)`` transforms each whole batch before module and target see it (see
    :mod:`mimir.engine.mixing`)."""

    module: nn.Module
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    target: Callable[[torch.Tensor], torch.Tensor] | None = None
    trainable: Callable[[nn.Module], list[nn.Parameter] | list[dict]] | None = None
    train_mode: bool = True
    mix: Callable[[torch.Tensor, int], torch.Tensor] | None = None


Outputs = torch.Tensor | tuple[torch.Tensor, ...]


def _float(out: Outputs) -> Outputs:
    """fp32 copies of floating-point outputs (a tensor or a tuple of them); labels pass unchanged."""
    if isinstance(out, tuple):
        return tuple(_float(o) for o in out)
    return out.float() if out.is_floating_point() else out


@dataclass
class TrainLog:
    """What a training run did: the loss of every step (this process's share), the one-off setup
    time (the teacher-target cache) and the time spent in steps."""

    losses: list[float]
    steps: int
    setup_seconds: float
    step_seconds: float
    cached_targets: bool

    @property
    def iterations_per_second(self) -> float:
        return self.steps / self.step_seconds if self.step_seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        return {"steps": self.steps, "setup_seconds": round(self.setup_seconds, 3),
                "step_seconds": round(self.step_seconds, 3),
                "iterations_per_second": round(self.iterations_per_second, 3), "cached_targets": self.cached_targets}


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; a checkpoint to resume from was written first (``path``)."""

    def __init__(self, path) -> None:
        super().__init__(str(path))
        self.path = path


class _Objective(nn.Module):
    """The module DistributedDataParallel (and torch.compile) wrap: ``forward(module, x)``."""

    def __init__(self, module: nn.Module, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.module = module
        self._forward = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.module, x)


def lr_factor(cfg: TrainConfig, it: int) -> float:
    """The learning rate of step ``it`` as a fraction of ``cfg.learning_rate``."""
    warm = round(cfg.warmup * cfg.iterations)
    if it < warm:
        return (it + 1) / warm
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * it / cfg.iterations))
    return cfg.gamma ** sum(it >= round(m * cfg.iterations) for m in cfg.milestones)


def averaged(module: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``module``'s weights and floating-point buffers (None when
    ``decay`` is 0), its decay warmed up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates
    (as timm's ModelEma with warm-up) so that the pruned start does not weigh on a short run."""
    if decay <= 0:
        return None

    @torch.no_grad()
    def update(average: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        d = min(decay, (1 + float(n)) / (10 + float(n)))
        if average[0].is_floating_point():
            torch._foreach_lerp_(average, current, 1 - d)
        else:   # integer buffers (BatchNorm's step count) follow the module
            torch._foreach_copy_(average, current)

    return AveragedModel(module, multi_avg_fn=update, use_buffers=True)


@contextmanager
def _catch_interrupt(enabled: bool):
    """Turn the first Ctrl-C into a flag the loop checks between steps (so a checkpoint is written
    from a consistent state); a second Ctrl-C interrupts at once."""
    flag = {"set": False}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["set"]:
            raise KeyboardInterrupt
        flag["set"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _param_groups(chosen: list) -> list[dict]:
    """``Task.trainable``'s answer as optimiser groups: a list of parameters is one group; a list
    of groups (dicts with ``params`` and an optional ``lr_scale``) is taken as it is."""
    chosen = list(chosen)
    if chosen and isinstance(chosen[0], dict):
        return [{"params": list(g["params"]), "lr_scale": float(g.get("lr_scale", 1.0))} for g in chosen]
    return [{"params": chosen, "lr_scale": 1.0}]


def _optimizer(groups: list[dict], cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for g in groups for p in g["params"])
    params = [{"params": g["params"], "lr": cfg.learning_rate * g["lr_scale"]} for g in groups]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=fused or None)
    return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov, fused=fused or None)


def _warm_up(objective: nn.Module, module: nn.Module, x: torch.Tensor, runtime: Runtime) -> None:
    """One forward and backward pass without an optimiser step, to make ``torch.compile`` build its
    graphs; the module's state (BatchNorm statistics) is restored and the gradients dropped, so
    the run is the same as without it."""
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    with runtime.autocast():
        out = objective(x)
    sum(o.float().sum() for o in (out if isinstance(out, tuple) else (out,))).backward()
    with torch.no_grad():
        module.load_state_dict(state)
    for p in module.parameters():
        p.grad = None


def _stop_requested(interrupted: dict, done: int, every: int, device: torch.device) -> bool:
    """Whether Ctrl-C asks to stop after step ``done``. Data-parallel processes must stop at the
    same step, so they agree (one all-reduce) every ``every`` steps and otherwise go on."""
    if not dist.is_distributed():
        return interrupted["set"]
    if done % every:
        return False
    flag = torch.tensor([float(interrupted["set"])], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _check_finite(losses: torch.Tensor, start: int, stop: int, ckpt: Checkpointing | None) -> None:
    window = losses[start:stop]
    if bool(torch.isfinite(window).all()):
        return
    bad = int((~torch.isfinite(window)).nonzero()[0]) + start
    kept = (f"the last good checkpoint is '{ckpt.path}'" if ckpt is not None and ckpt.path.is_file()
            else "use --checkpoint-every N to keep resumable checkpoints")
    raise MimirError(f"the loss became {float(losses[bad])} at iteration {bad + 1}",
                     f"lower --lr or use --precision fp32; {kept}")


def _batches(images: torch.Tensor, config: DataConfig, cfg: TrainConfig, schedule: BatchSchedule, seed: int,
             runtime: Runtime, start: int, mix: Callable[[torch.Tensor, int], torch.Tensor] | None = None
             ) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]], CropFlipViews | None]:
    """(local sample indices, local view ids or None, normalised local batch on the device) per step,
    and the finite view set when there is one (for the target cache). ``mix`` is applied to the
    whole global batch before it is split between processes, so that N processes mix (partners,
    weights, boxes) exactly as one does."""
    part = dist.shard(schedule.size)
    if is_small(config) or not cfg.augment:
        views = CropFlipViews(images, config, runtime.device, augment=cfg.augment)
        policy = PolicyViews(cfg.policy) if cfg.augment and cfg.policy != "none" else None
        rendered = part if mix is None else slice(0, schedule.size)   # mixing needs the partners too

        def small() -> Iterator:
            for step in range(start, cfg.iterations):
                idx = schedule.indices(step)[rendered]
                v = views.draw(step, seed, schedule.size)[rendered]
                if policy is None:
                    x = runtime.batch(views.render(idx, v))
                else:
                    x = runtime.batch(normalize(policy(views.crop(idx, v), seed, step,
                                                       range(rendered.start, rendered.stop)), config))
                if mix is None:
                    yield idx, v if policy is None else None, x
                else:
                    yield idx[part], None, mix(x, step)[part]
        # a policy or mixing makes the views unbounded: no finite view set to cache targets for
        return small(), views if policy is None and mix is None else None
    workers = cfg.loader_workers if runtime.device.type == "cuda" else 0
    stream = LargeViewStream(images, config, schedule, seed, start, cfg.iterations, cfg.policy)

    def large() -> Iterator:
        for step, (idx, batch) in enumerate(large_view_loader(stream, workers, runtime.pin_memory), start=start):
            if mix is None:
                yield idx[part], None, normalize(runtime.batch(batch[part]), config)
            else:
                yield idx[part], None, mix(normalize(runtime.batch(batch), config), step)[part]
    return large(), None


def train(task: Task, images: torch.Tensor, labels: torch.Tensor | None, config: DataConfig, cfg: TrainConfig,
          seed: int = 0, runtime: Runtime = Runtime(), progress: bool = True, desc: str = "train",
          checkpoint: Checkpointing | None = None) -> TrainLog:
    """Run ``cfg.iterations`` SGD steps of ``task`` on the uint8 ``images`` (labels: for tasks
    without a teacher target)."""
    if task.target is None and labels is None:
        raise ValueError("a task without a teacher target needs labels")
    if task.target is None and task.mix is not None:
        raise ValueError("mixing needs a teacher target: a label cannot follow a mixed view")
    module = runtime.model(task.module)
    module.train(task.train_mode)
    dist.sync_batchnorm(module, runtime.device)
    try:
        return _run(task, module, images, labels, config, cfg, seed, runtime, progress, desc, checkpoint)
    finally:
        dist.revert_batchnorm(module)


@dataclass
class _State:
    """What one training run updates and what a checkpoint holds of it."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    losses: torch.Tensor
    ema: AveragedModel | None = None
    start: int = 0

    def resume(self, checkpoint: Checkpointing) -> None:
        """Continue from ``checkpoint``: weights, optimiser, schedule, scaler, losses and the RNGs."""
        state = load_training_state(checkpoint)
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.start = int(state["step"])
        self.losses[:self.start] = state["losses"].to(self.losses.device)
        set_rng_state(state["rng"])

    def save(self, checkpoint: Checkpointing, done: int) -> None:
        _check_finite(self.losses, 0, done, checkpoint)
        if dist.is_main():
            save_training_state(checkpoint, done, self.module, self.optimizer, self.scheduler, self.scaler,
                                self.losses, self.ema)
        dist.barrier()


def _objective(module: nn.Module, task: Task, runtime: Runtime) -> nn.Module:
    """The module the steps call: ``task.forward`` on ``module``, data-parallel and compiled as asked."""
    objective: nn.Module = _Objective(module, task.forward)
    if dist.is_distributed():
        device = runtime.device
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    return torch.compile(objective) if runtime.compile else objective


def _target_cache(task: Task, views: CropFlipViews | None, target: Callable, cfg: TrainConfig, runtime: Runtime,
                  start: int, local: slice) -> TargetCache | None:
    """The teacher's target of every view computed once, where the views are finite and that saves
    teacher passes within ``cfg.cache_bytes`` (or ``cfg.cache_targets`` says so)."""
    if task.target is None or views is None or start >= cfg.iterations:
        return None
    probe = target(runtime.batch(views.render(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))))
    size = sum(t.numel() * t.element_size() for t in (probe if isinstance(probe, tuple) else (probe,)))
    lookups = (cfg.iterations - start) * (local.stop - local.start)
    worthwhile = TargetCache.worthwhile(views, lookups, size, cfg.cache_bytes)
    if cfg.cache_targets if cfg.cache_targets is not None else worthwhile:
        return TargetCache.build(views, lambda x: target(runtime.batch(x)))
    return None


def _run(task: Task, module: nn.Module, images: torch.Tensor, labels: torch.Tensor | None, config: DataConfig,
         cfg: TrainConfig, seed: int, runtime: Runtime, progress: bool, desc: str,
         checkpoint: Checkpointing | None) -> TrainLog:
    device = runtime.device
    groups = _param_groups(task.trainable(module) if task.trainable is not None else module.parameters())
    params = [p for g in groups for p in g["params"]]
    schedule = BatchSchedule(len(images), cfg.batch_size, seed, cfg.views)
    local = dist.shard(schedule.size)
    loss_scale = (local.stop - local.start) * dist.world_size() / schedule.size   # 1 unless shards are uneven

    with frozen_except(module, params), _catch_interrupt(checkpoint is not None) as interrupted:
        objective = _objective(module, task, runtime)
        optimizer = _optimizer(groups, cfg, device)
        state = _State(module, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(cfg, it)),
                       runtime.scaler(), torch.zeros(cfg.iterations, device=device), averaged(module, cfg.ema))
        if checkpoint is not None and checkpoint.resume:
            state.resume(checkpoint)
        start = state.start
        batches, views = _batches(images, config, cfg, schedule, seed, runtime, start, task.mix)
        labels_on_device = labels.to(device) if labels is not None else None

        @torch.no_grad()
        def teacher_target(x: torch.Tensor) -> Outputs:
            with runtime.autocast():
                return task.target(x)

        setup_started = time.perf_counter()
        cache = _target_cache(task, views, teacher_target, cfg, runtime, start, local)
        if runtime.compile and start < cfg.iterations:   # compile now, so that it counts as setup, not as steps
            first = next(batches)
            batches = itertools.chain([first], batches)
            _warm_up(objective, module, first[2], runtime)

        bar = tqdm(total=cfg.iterations, initial=start, desc=desc, dynamic_ncols=True, leave=False,
                   disable=not progress or not dist.is_main())
        checked = start
        steps_started = time.perf_counter()
        for step, (idx, v, x) in enumerate(batches, start=start):
            if cache is not None:
                target = cache.lookup(idx, v)
            elif task.target is not None:
                target = teacher_target(x)
            else:
                target = labels_on_device[idx.to(device)]
            _step(objective, task, state, x, target, runtime, loss_scale, step)
            done = step + 1
            bar.update()
            if done % cfg.log_every == 0 or done == cfg.iterations:
                _check_finite(state.losses, checked, done, checkpoint)
                checked = done
                bar.set_postfix(loss=f"{float(state.losses[step]):.4g}", lr=f"{state.scheduler.get_last_lr()[0]:.2g}")
            if checkpoint is not None and done < cfg.iterations:
                if checkpoint.every and done % checkpoint.every == 0:
                    state.save(checkpoint, done)
                if _stop_requested(interrupted, done, cfg.log_every, device):
                    state.save(checkpoint, done)
                    bar.close()
                    raise TrainingInterrupted(checkpoint.path)
        bar.close()
        if state.ema is not None:   # the result is the average
            with torch.no_grad():
                module.load_state_dict(state.ema.module.state_dict())
        history = state.losses.tolist()   # waits for the device: the step time below is real
        ended = time.perf_counter()
    return TrainLog(history, cfg.iterations - start, steps_started - setup_started, ended - steps_started,
                    cache is not None)


def _step(objective: nn.Module, task: Task, state: _State, x: torch.Tensor, target: Outputs, runtime: Runtime,
          loss_scale: float, step: int) -> None:
    """One optimiser step on batch ``x`` against ``target``; its loss stays on the device."""
    with runtime.autocast():
        out = objective(x)
    loss = task.loss(_float(out), _float(target))
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss * loss_scale if loss_scale != 1 else loss).backward()
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update_parameters(state.module)
    state.losses[step] = loss.detach()
