"""How fast MiR trains: mimir's loop against a plain PyTorch loop and against mimir before issue 9.

    .venv/bin/python benchmarks/loop_speed.py                       # ResNet-20/56, channels:0.5, 50/500 samples
    .venv/bin/python benchmarks/loop_speed.py --teachers resnet20 --samples 50 --rounds 3
    .venv/bin/python benchmarks/loop_speed.py --profile             # where the time goes (torch.profiler)
    .venv/bin/python benchmarks/loop_speed.py --render              # docs/SPEED.md from the saved results

Every timing run writes its measurements to ``benchmarks/results/loop-speed.json`` and renders the
table in ``docs/SPEED.md`` from that file (``--render`` renders it again without measuring).

Every measurement runs in a fresh process, and the variants take turns (round 1: plain, before,
mimir; round 2: ...), so that the noise of a shared machine hits them alike; the median over rounds
is printed. Variants:

- ``plain``: a loop written here as a user would write it: the same pruned student, batch
  ``min(64, N)``, the teacher under ``no_grad`` every step, pad-and-crop + flip per image on tensors,
  ``torch.optim.SGD`` with the MiR settings, NCHW, fp32.
- ``before``: ``mimir.compress`` of the commit given by ``--before`` (default: the last commit
  before issue 9), checked out in a git worktree and imported in its own process.
- ``mimir``: this checkout's MiR method on its shared loop (what ``mimir.compress`` runs), with the
  teacher-target cache decided as for a 2000-iteration run. Its one-off setup (computing the
  teacher's target of every view once) is reported apart from its per-step time; ``@2000`` is the
  rate of a whole 2000-iteration run, setup included.
- ``mimir-compiled`` (with ``--compile``): the same with ``torch.compile``.
- ``floor``: what is left of a step when the data, the augmentation, the teacher and all bookkeeping
  cost nothing: the student's forward, MSE to a fixed precomputed target, backward and fused SGD
  step on one fixed batch, channels-last, fp32. No loop over these samples can be faster without
  faster kernels (``torch.compile``, lower precision, another device).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "a31ce1f"
RESULTS = ROOT / "benchmarks" / "results" / "loop-speed.json"
DOC = ROOT / "docs" / "SPEED.md"


def _models_and_samples(teacher_name: str, samples: int):
    """(teacher, data config, channels:0.5 student, the samples as uint8 images): the same for every variant."""
    import torch

    from mimir.data import load_fashion_mnist, sample_indices
    from mimir.export import load_model
    from mimir.prune import prune
    from mimir.teachers import bundled_teacher_path

    torch.manual_seed(0)
    teacher, config, _ = load_model(bundled_teacher_path(teacher_name))
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    train = load_fashion_mnist("train")
    return teacher, config, student, train.images[sample_indices(len(train), samples, 0, labels=train.labels)]


def _timed(step, iterations: int, profile: bool) -> dict:
    for _ in range(5):
        step()
    if profile:
        return {"profile": _profile(lambda: [step() for _ in range(20)])}
    started = time.perf_counter()
    for _ in range(iterations):
        step()
    return {"step_seconds": (time.perf_counter() - started) / iterations, "setup_seconds": 0.0}


def plain_loop(teacher_name: str, samples: int, iterations: int, profile: bool) -> dict:
    import torch
    import torch.nn.functional as F

    teacher, config, student, images = _models_and_samples(teacher_name, samples)
    body = [p for n, p in student.named_parameters() if not n.startswith("fc")]
    optimizer = torch.optim.SGD(body, lr=0.02, momentum=0.9, weight_decay=1e-4)
    mean, std = config.mean[0], config.std[0]
    batch = min(64, samples)
    student.train()

    def step() -> None:
        idx = torch.randperm(samples)[:batch]
        padded = F.pad(images[idx].float() / 255, (3, 3, 3, 3))
        crops = []
        for img in padded:                      # pad-and-crop + flip, image by image
            y, x = torch.randint(0, 7, (2,)).tolist()
            crop = img[:, y:y + 28, x:x + 28]
            crops.append(crop.flip(-1) if torch.rand(()) < 0.5 else crop)
        xb = (torch.stack(crops) - mean) / std
        with torch.no_grad():
            target = teacher.forward_features(xb)
        loss = F.mse_loss(student.forward_features(xb), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return _timed(step, iterations, profile)


def mimir_run(teacher_name: str, samples: int, iterations: int, profile: bool, compile: bool = False) -> dict:
    """mimir's MiR method on the shared loop, as ``mimir.compress`` runs it, for ``iterations``
    steps, with the teacher-target cache decided as for a 2000-iteration run."""
    import torch

    import mimir
    from mimir.data import load_fashion_mnist, sample_indices
    from mimir.export import load_model
    from mimir.teachers import bundled_teacher_path

    teacher, config, _ = load_model(bundled_teacher_path(teacher_name))
    train = load_fashion_mnist("train")
    few = train.subset(sample_indices(len(train), samples, 0, labels=train.labels)).without_labels()
    if not hasattr(mimir, "Recipe"):   # before issue 9: compress() is the only way in; it times the loop alone
        run = lambda its: mimir.compress(teacher_name, data=few, data_config=config, samples=samples,  # noqa: E731
                                         iterations=its, eval_data=None, progress=False).summary
        if profile:
            return {"profile": _profile(lambda: run(30))}
        return {"step_seconds": run(iterations)["train_seconds"] / iterations, "setup_seconds": 0.0}

    from mimir.engine import TrainConfig, resolve_runtime
    from mimir.engine.views import CropFlipViews, TargetCache
    from mimir.methods import MethodInput, get_method
    from mimir.prune import prune

    runtime = resolve_runtime("auto", "fp32", compile)
    views = CropFlipViews(few.images, config, runtime.device)
    cache = TargetCache.worthwhile(views, 2000 * min(64, samples), 64 * 7 * 7 * 4, TrainConfig().cache_bytes)

    def run(its: int):
        student, arch = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
        runtime.model(teacher), runtime.model(student)
        inp = MethodInput(teacher, student, few, config, TrainConfig(iterations=its, cache_targets=cache), seed=0,
                          progress=False, arch=arch, runtime=runtime)
        get_method("mir")(inp)
        return inp.logs[-1]

    if profile:
        return {"profile": _profile(lambda: run(30))}
    log = run(iterations)
    return {"step_seconds": log.step_seconds / log.steps, "setup_seconds": log.setup_seconds}


def floor_step(teacher_name: str, samples: int, iterations: int, profile: bool) -> dict:
    import torch
    import torch.nn.functional as F

    from mimir.data.transforms import normalize

    teacher, config, student, images = _models_and_samples(teacher_name, samples)
    x = normalize(images[:min(64, samples)].float() / 255, config).contiguous(memory_format=torch.channels_last)
    teacher.eval()
    with torch.no_grad():
        target = teacher.forward_features(x)
    student = student.to(memory_format=torch.channels_last).train()
    body = [p for n, p in student.named_parameters() if not n.startswith("fc")]
    optimizer = torch.optim.SGD(body, lr=0.02, momentum=0.9, weight_decay=1e-4, fused=True)

    def step() -> None:
        loss = F.mse_loss(student.forward_features(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _timed(step, iterations, profile)


def _profile(fn) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14)


def worker(args) -> None:
    if args.variant in ("plain", "floor"):
        out = (plain_loop if args.variant == "plain" else floor_step)(args.teacher, args.n, args.iterations,
                                                                      args.profile)
    else:
        out = mimir_run(args.teacher, args.n, args.iterations, args.profile, compile=args.variant == "mimir-compiled")
    print("RESULT " + json.dumps(out))


def _before_tree(ref: str) -> Path:
    tree = Path(os.environ.get("TMPDIR", "/tmp")) / f"mimir-before-{ref}"
    if not (tree / "src" / "mimir").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(tree), ref],
                       check=True, capture_output=True)
    return tree


def measure(variant: str, teacher: str, n: int, iterations: int, before: Path, profile: bool) -> dict:
    env = dict(os.environ)
    src = before / "src" if variant == "before" else ROOT / "src"
    env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, __file__, "--worker", variant, "--teacher", teacher, "--n", str(n),
           "--iterations", str(iterations)] + (["--profile"] if profile else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} {teacher} n={n} failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][7:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teachers", default="resnet20,resnet56")
    p.add_argument("--samples", default="50,500")
    p.add_argument("--iterations", type=int, default=100, help="timed iterations per measurement")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--before", default=BEFORE, help="git ref of the implementation before issue 9")
    p.add_argument("--compile", action="store_true", help="also time mimir with torch.compile")
    p.add_argument("--profile", action="store_true", help="print torch.profiler tables instead of timing")
    p.add_argument("--render", action="store_true", help="only render docs/SPEED.md from the saved results")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--teacher", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.variant = args.worker
        worker(args)
        return
    if args.render:
        DOC.write_text(render(json.loads(RESULTS.read_text())))
        print(f"{DOC} rendered from {RESULTS}")
        return
    import torch

    before = _before_tree(args.before)
    variants = ["plain", "before", "mimir"] + (["mimir-compiled"] if args.compile else []) + ["floor"]
    header = (f"torch {torch.__version__}, {torch.get_num_threads()} threads; channels:0.5 student; "
              f"{args.iterations} timed iterations, median of {args.rounds} rounds; before = {args.before}")
    print(header, flush=True)
    saved = {"command": " ".join(["benchmarks/loop_speed.py"] + sys.argv[1:]), "header": header,
             "machine": _machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": []}
    for teacher in args.teachers.split(","):
        for n in map(int, args.samples.split(",")):
            if args.profile:
                for v in variants:
                    print(f"\n=== {v}, {teacher}, {n} samples ===\n" +
                          measure(v, teacher, n, args.iterations, before, True)["profile"], flush=True)
                continue
            runs: dict[str, list[dict]] = {v: [] for v in variants}
            for _ in range(args.rounds):
                for v in variants:
                    runs[v].append(measure(v, teacher, n, args.iterations, before, False))
            entry = {"teacher": teacher, "samples": n, "runs": runs}
            saved["results"].append(entry)
            print(_table([entry], plain_text=True), flush=True)
    if not args.profile:
        RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
        DOC.write_text(render(saved))
        print(f"\nmeasurements in {RESULTS}; table in {DOC}")


def _machine() -> str:
    import platform

    from mimir.engine.runtime import _cpu_name

    return f"{_cpu_name()}, {os.cpu_count()} cores, {platform.machine()}"


def _table(entries: list[dict], plain_text: bool = False) -> str:
    lines = []
    for e in entries:
        runs = e["runs"]
        step = {v: statistics.median(r["step_seconds"] for r in rs) for v, rs in runs.items()}
        setup = {v: statistics.median(r["setup_seconds"] for r in rs) for v, rs in runs.items()}
        plain = 1 / step["plain"]
        lines += ["", f"{e['teacher']}, {e['samples']} samples (batch {min(64, e['samples'])})", "",
                  "| variant | s/it | it/s | setup s | it/s @2000 | x plain | x plain @2000 |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for v in runs:
            whole = 2000 / (setup[v] + 2000 * step[v])
            lines.append(f"| {v} | {step[v]:.4f} | {1 / step[v]:.2f} | {setup[v]:.1f} | {whole:.2f} | "
                         f"{(1 / step[v]) / plain:.2f} | {whole / plain:.2f} |")
    return "\n".join(lines)


def render(saved: dict) -> str:
    """docs/SPEED.md from the saved measurements."""
    return "\n".join([
        "# MiR training speed", "",
        f"Generated by `.venv/bin/python benchmarks/loop_speed.py --render` from `benchmarks/results/loop-speed.json`, "
        f"measured by `.venv/bin/python {saved['command']}` on {saved['date']} ({saved['machine']}; {saved['header']}).",
        "", "Variants (see the script's docstring): `plain` is a hand-written PyTorch loop (teacher every step, "
        "per-image pad-crop + flip, NCHW, SGD); `before` is mimir's loop before issue 9; `mimir` is the "
        "`mimir.engine` loop; `floor` is the student's own forward, backward and SGD step on one fixed batch "
        "with a precomputed target (what no loop can beat without faster kernels). `setup s` is the one-off cost of computing the teacher's target of every view; "
        "`@2000` includes it in a 2000-iteration run.", _table(saved["results"]), ""])


if __name__ == "__main__":
    main()
