"""Do the MACs that pruning saves turn into time saved? Teacher and students timed interleaved in
PyTorch and ONNX Runtime, at batch 1 and 64, one thread and all threads, beside the MAC ratio and
MiR's accuracy (from the committed standard grid).

    .venv/bin/python benchmarks/deploy_speed.py              # measure (a few minutes), write results and docs
    .venv/bin/python benchmarks/deploy_speed.py --render     # docs/DEPLOY.md and the block in docs/SHIPPING.md, from the results
    .venv/bin/python benchmarks/deploy_speed.py --profile    # ONNX Runtime's time per operator, teacher vs students

Latency depends on the architecture, not on the weights' values, so each student is the bundled
teacher pruned with the setting (the same architecture MiR trains); the accuracy column is MiR's
(500 samples, the grid's iterations, mean +- std over its seeds) from
``benchmarks/results/fashion-mnist.jsonl`` ("-" where the grid has no such cell).

The mobile networks (MobileNetV2 from mimir's registry and timm's EfficientNet-Lite0, 224 px,
random weights: no bundled teacher, and latency does not depend on the weights) are pruned with
``channels:0.3`` and ``channels:0.5`` without rounding and with ``round_to`` 8 and 16, timed in ONNX
Runtime at one thread, batch 1 and 8 (64 images of 224 px would take minutes per row). The ``auto``
column says on which CPU the default rounding (:mod:`mimir.prune.rounding`: 16 with AVX-512, 8 with
AVX2) makes that row's architecture.

Efficiency = (1 - latency ratio) / (1 - MAC ratio): the share of the MAC saving that became time
saving. Goal (issues 10 and 22): >= 0.8 for channel pruning and >= 0.95 for block dropping in ONNX
Runtime at one thread, batch 1 and 64 (8 for the mobile networks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "deploy-speed.json"
GRID = ROOT / "benchmarks" / "results" / "fashion-mnist.jsonl"
DOC = ROOT / "docs" / "DEPLOY.md"
README = ROOT / "docs" / "SHIPPING.md"   # the page that shows the tables (a generated block)
BLOCK = ("<!-- deploy_speed -->", "<!-- /deploy_speed -->")

R20_BLOCKS = "blocks:layer1.1,layer2.1,layer2.2,layer3.1"
R56_BLOCKS = ("blocks:layer1.1,layer1.3,layer1.5,layer1.7,layer2.1,layer2.3,layer2.5,layer2.7,"
              "layer3.1,layer3.3,layer3.5,layer3.7")
SETTINGS = {   # teacher -> [(scheme, round_to)]
    "resnet20": [("channels:0.5", None), ("channels:0.75", None), ("channels:0.75", 8), ("channels-all:0.5", None),
                 (R20_BLOCKS, None)],
    "resnet56": [("channels:0.5", None), ("channels:0.75", None), ("channels-all:0.5", None), (R56_BLOCKS, None)],
}
#: mobile networks at 224 px, random weights: teacher -> [(scheme, round_to)], timed in ORT at one thread
MOBILE = {name: [(s, r) for s in ("channels:0.3", "channels:0.5") for r in (None, 8, 16)]
          for name in ("mobilenet_v2", "timm:efficientnet_lite0")}
MOBILE_BATCHES = (1, 8)
#: the CPUs whose default rounding the ``auto`` column names, by their channel block
AUTO = {"AVX-512": 16, "AVX2": 8}
GOALS = {"channels": 0.8, "blocks": 0.95}


def label(scheme: str, round_to: int | None) -> str:
    short = f"blocks ({len(scheme.split(','))} dropped)" if scheme.startswith("blocks:") else scheme
    return short + (f" round_to={round_to}" if round_to else "")


def _widths(model) -> list[int]:
    from torch import nn

    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def _students(teacher, settings: list, x) -> tuple[dict, dict]:
    """The pruned students by label, and for each the CPUs (``AUTO``) whose default rounding makes
    the same architecture."""
    from mimir.prune import prune

    made: dict = {}

    def student(scheme: str, round_to: int | None):
        if (scheme, round_to) not in made:
            made[(scheme, round_to)] = prune(teacher, scheme, x, round_to=round_to)[0].eval()
        return made[(scheme, round_to)]

    models = {label(s, r): student(s, r) for s, r in settings}
    auto = {label(s, r): [cpu for cpu, k in AUTO.items() if _widths(student(s, k)) == _widths(models[label(s, r)])]
            for s, r in settings if not s.startswith("blocks:")}
    return models, auto


def measure(seconds: float) -> dict:
    import torch

    from mimir.core import DataConfig
    from mimir.evaluate import count_macs_params
    from mimir.evaluate.latency import RUNTIMES, time_models
    from mimir.export import load_model
    from mimir.models import create_model
    from mimir.teachers import bundled_teacher_path

    all_threads = os.cpu_count() or 1
    out = {"threads": sorted({1, all_threads}), "teachers": {}}
    grids = {name: (settings, RUNTIMES, out["threads"], (1, 64)) for name, settings in SETTINGS.items()}
    grids.update({name: (settings, ("onnxruntime",), [1], MOBILE_BATCHES) for name, settings in MOBILE.items()})
    for teacher_name, (settings, runtimes, thread_counts, batches) in grids.items():
        if teacher_name in SETTINGS:
            teacher, config, _ = load_model(bundled_teacher_path(teacher_name))
            origin = "the bundled Fashion-MNIST teacher"
        else:
            config = DataConfig()   # 3 x 224 x 224, 1000 classes
            teacher = create_model(teacher_name, num_classes=config.num_classes).eval()
            origin = "random weights"
        x = torch.zeros(1, config.in_chans, config.input_size, config.input_size)
        students, auto = _students(teacher, settings, x)
        models = {"teacher": teacher, **students}
        macs = {k: count_macs_params(m, x)[0] for k, m in models.items()}
        timings: dict = {}
        sessions: dict = {}
        for runtime in runtimes:
            for threads in thread_counts:
                for batch in batches:
                    t = time_models(models, config, runtime, batch, threads, seconds, sessions)
                    timings[f"{runtime}/{threads}/{batch}"] = {k: [v.median_ms, v.iqr_ms] for k, v in t.items()}
                    print(f"{teacher_name} {runtime} threads={threads} batch={batch}: " + ", ".join(
                        f"{k} {v.median_ms:.3f} ms" for k, v in t.items()), flush=True)
        out["teachers"][teacher_name] = {
            "input": f"{config.in_chans} x {config.input_size} x {config.input_size}, {origin}",
            "settings": [{"label": label(s, r), "scheme": s, "round_to": r} for s, r in settings],
            "auto": auto, "macs": macs, "timings": timings}
    return out


def grid_accuracy(teacher: str, scheme: str, round_to: int | None, samples: int = 500) -> str:
    """MiR's accuracy in the committed standard grid, mean +- std over seeds."""
    import statistics

    if teacher not in SETTINGS:
        return "-"

    from mimir.bench import read_results
    from mimir.bench.report import recipe_of

    acc = {}
    for r in read_results(GRID):
        c = recipe_of(r)
        if (r.get("status") == "ok" and c["teacher"] == teacher and c["prune"] == scheme and c["method"] == "mir"
                and c["samples"] == samples and c.get("round_to") == round_to):
            acc[r["key"]] = (r["summary"]["compressed"]["accuracy"], int(c["iterations"]))
    if not acc:
        return "-"
    values = [a for a, _ in acc.values()]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} +- {std:.2f}"


def _kind(scheme: str) -> str:
    return "blocks" if scheme.startswith("blocks:") else "channels"


def tables(saved: dict) -> str:
    """The Markdown tables (one per teacher), every figure computed from the saved medians."""
    lines = []
    names = {"onnxruntime": "ORT", "torch": "torch"}
    for teacher_name, t in saved["teachers"].items():
        macs = t["macs"]
        columns = [(rt, int(th), int(b)) for rt, th, b in (k.split("/") for k in t["timings"])]
        columns.sort(key=lambda c: (c[0] != "onnxruntime", c[1], c[2]))
        batches = " / ".join(f"b{b}" for rt, th, b in columns if rt == "onnxruntime" and th == 1)
        head = " | ".join(f"{names[rt]} {th}t b{b}" for rt, th, b in columns)
        auto = "auto" in t
        lines += ["", f"**{teacher_name}** ({t.get('input', 'the bundled Fashion-MNIST teacher')}; teacher: " + ", ".join(
            f"{names[rt]} {th}t b{b} {t['timings'][f'{rt}/{th}/{b}']['teacher'][0]:.2f} ms" for rt, th, b in columns)
            + ")", "",
            f"| student | MiR accuracy (500 samples) | MAC ratio | {head} | efficiency ORT 1t {batches} |"
            + (" auto |" if auto else ""),
            "|---|---:|---:|" + "---:|" * len(columns) + "---:|" + ("---|" if auto else "")]
        for s in t["settings"]:
            key = s["label"]
            mac_ratio = macs[key] / macs["teacher"]
            cells, eff = [], []
            for rt, th, b in columns:
                tim = t["timings"][f"{rt}/{th}/{b}"]
                ratio = tim[key][0] / tim["teacher"][0]
                cells.append(f"{ratio:.3f}")
                if rt == "onnxruntime" and th == 1:
                    e = (1 - ratio) / (1 - mac_ratio)
                    mark = "" if e >= GOALS[_kind(s["scheme"])] else " (below goal)"
                    eff.append(f"{e:.3f}{mark}")
            acc = grid_accuracy(teacher_name, s["scheme"], s["round_to"])
            picked = (" " + ", ".join(t["auto"].get(key, [])) + " |") if auto else ""
            lines.append(f"| {key} | {acc} | {mac_ratio:.3f} | " + " | ".join(cells) + " | " + " / ".join(eff) + " |"
                         + picked)
    return "\n".join(lines)


def render(saved: dict) -> str:
    return "\n".join([
        "# Deployment speed: MACs saved against time saved", "",
        f"Generated by `.venv/bin/python benchmarks/deploy_speed.py --render` from "
        f"`benchmarks/results/deploy-speed.json`, measured by `.venv/bin/python {saved['command']}` on "
        f"{saved['date']} ({saved['machine']}; torch {saved['torch']}, onnxruntime {saved['onnxruntime']}).", "",
        "Latency ratio = student / teacher median latency, teacher and students timed in turns in one process "
        "(`mimir latency` does the same for one model). ORT = ONNX Runtime on the file `mimir export` writes "
        "(BatchNorm folded, every graph optimisation, input and output bound beforehand); torch = PyTorch eager, "
        "eval mode, fp32. `1t` / `2t` = threads, `b1` / `b64` = batch size. Efficiency = (1 - latency ratio) / "
        "(1 - MAC ratio), the share of the MAC saving that became time saving (goal: 0.8 for channel pruning, "
        "0.95 for block dropping). Accuracy: MiR on 500 Fashion-MNIST samples, "
        "from `benchmarks/results/fashion-mnist.jsonl` (the standard grid's iterations; mean +- std over seeds). "
        "The mobile networks (224 px, random weights: latency does not depend on them) are timed in ORT at one "
        "thread, batch 1 and 8. `auto`: the CPUs on which `mimir compress`'s default rounding (the CPU's channel "
        "block: 16 with AVX-512, 8 with AVX2; see [SHIPPING.md](SHIPPING.md#do-the-macs-saved-become-time-saved)) "
        "makes that row's architecture; the rows were measured on the CPU named above only (an AVX2 CPU's "
        "choice is simulated with `MIMIR_CPU_FLAGS=avx2`, its kernels are not).",
        tables(saved), "", "## Where the time goes", "",
        "ONNX Runtime's own profile of the same files (one thread; `--profile` prints it again). `run` is the "
        "whole `InferenceSession.run`; `outside kernels` is its fixed cost (graph walk, allocation), the same "
        "for teacher and students however many MACs they save; ORT fuses every BatchNorm, ReLU and residual "
        "addition into the convolutions, so `Conv` is nearly all of the kernel time, and `conv by width` splits "
        "it by the convolutions' output channels. The last block is torch.profiler's view of PyTorch eager "
        "(self time per operator; the profiler's own overhead inflates it).", "", "```",
        saved["profile"].strip("\n"), "```", ""] + _int8_section())


def _int8_section() -> list[str]:
    """The int8 rows, from ``benchmarks/results/int8.json`` (written by ``benchmarks/int8_speed.py``)."""
    import importlib.util

    results = RESULTS.with_name("int8.json")
    if not results.exists():
        return []
    spec = importlib.util.spec_from_file_location("int8_speed", Path(__file__).with_name("int8_speed.py"))
    int8 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(int8)
    return ["## int8", "", "Pruned, then quantized (`mimir compress --quantize int8`, `mimir quantize`); from "
            "`benchmarks/results/int8.json`, measured by `.venv/bin/python benchmarks/int8_speed.py` (its page, with "
            "ONNX Runtime's int8 profile: [INT8.md](INT8.md)).", "", int8.tables(json.loads(results.read_text())), ""]


def update_readme(saved: dict) -> None:
    """Rewrite the tables between the ``BLOCK`` markers of ``README``."""
    from mimir._readme import replace_block

    if not replace_block(README, *BLOCK, tables(saved).strip()):
        raise SystemExit(f"{README} has no block for the tables: add the lines '{BLOCK[0]}' and '{BLOCK[1]}'")


def profile() -> str:
    """ONNX Runtime's own per-operator time (one thread), teacher against students, batch 1 and 64."""
    import collections

    import numpy as np
    import onnxruntime as ort
    import torch

    from mimir.export import load_model
    from mimir.export.onnx import onnx_bytes
    from mimir.prune import prune
    from mimir.teachers import bundled_teacher_path

    lines = []
    for teacher_name, settings in SETTINGS.items():
        teacher, config, _ = load_model(bundled_teacher_path(teacher_name))
        x0 = torch.zeros(1, 1, config.input_size, config.input_size)
        models = {"teacher": teacher, **{label(s, r): prune(teacher, s, x0, round_to=r)[0] for s, r in settings}}
        for batch in (1, 64):
            lines += ["", f"{teacher_name}, batch {batch}, 1 thread: ms per run: the whole run; ONNX Runtime's kernels "
                          "by operator; conv kernels by output width (channels)"]
            x = np.random.default_rng(0).standard_normal((batch, 1, config.input_size, config.input_size),
                                                         dtype=np.float32)
            for name, model in models.items():
                options = ort.SessionOptions()
                options.intra_op_num_threads, options.enable_profiling, options.log_severity_level = 1, True, 3
                options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "mimir_ort_profile")
                session = ort.InferenceSession(onnx_bytes(model, config), options, providers=["CPUExecutionProvider"])
                runs = 200 if batch == 1 else 10
                for _ in range(runs + 5):
                    session.run(None, {"input": x})
                trace = Path(session.end_profiling())
                events = json.loads(trace.read_text())
                trace.unlink()
                by_op, by_width, total, seen = collections.Counter(), collections.Counter(), 0.0, 0
                for e in events:
                    if e.get("cat") == "Session" and e["name"] == "model_run":
                        total += e["dur"]
                        seen += 1
                    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                        by_op[e["args"]["op_name"]] += e["dur"]
                        if e["args"]["op_name"] == "Conv":
                            shape = e["args"].get("output_type_shape") or [{}]
                            dims = next(iter(shape[0].values()), [0, 0])
                            by_width[dims[1] if len(dims) > 1 else 0] += e["dur"]
                scale = 1e3 * seen
                kernels = sum(by_op.values()) / scale
                lines.append(f"  {name:<34} run {total / scale:.3f} (kernels {kernels:.3f}, outside kernels "
                             f"{total / scale - kernels:.3f}); " + ", ".join(
                                 f"{op} {v / scale:.3f}" for op, v in by_op.most_common(4)) + "; conv by width " +
                             ", ".join(f"{w}: {v / scale:.3f}" for w, v in sorted(by_width.items())))
    return "\n".join(lines)


def torch_profile() -> str:
    """torch.profiler's self time per operator (one thread), ResNet-20 teacher against channels:0.5."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from mimir.evaluate.latency import torch_threads
    from mimir.export import load_model
    from mimir.prune import prune
    from mimir.teachers import bundled_teacher_path

    teacher, config, _ = load_model(bundled_teacher_path("resnet20"))
    student = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))[0].eval()
    lines = ["", "resnet20 in PyTorch eager, 1 thread: ms per run of the profiled self time, top operators"]
    for batch in (1, 64):
        x = torch.randn(batch, 1, config.input_size, config.input_size)
        for name, model in (("teacher", teacher.eval()), ("channels:0.5", student)):
            runs = 200 if batch == 1 else 10
            with torch_threads(1), torch.inference_mode():
                for _ in range(10):
                    model(x)
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(runs):
                        model(x)
            events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
            total = sum(e.self_cpu_time_total for e in events) / runs / 1e3
            lines.append(f"  batch {batch:<3} {name:<13} {total:.3f} (" + ", ".join(
                f"{e.key} {e.self_cpu_time_total / runs / 1e3:.3f}" for e in events[:5]) + ")")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="timing per runtime, thread count and batch size")
    p.add_argument("--render", action="store_true", help="only render docs/DEPLOY.md and the block in docs/SHIPPING.md")
    p.add_argument("--profile", action="store_true", help="print ONNX Runtime's per-operator profile instead")
    args = p.parse_args()
    if args.profile:
        print(profile() + "\n" + torch_profile())
        return
    if not args.render:
        import platform

        import onnxruntime
        import torch

        from mimir.core import cpu_info

        saved = measure(args.seconds)
        saved["profile"] = profile() + "\n" + torch_profile()
        saved.update({"command": " ".join(["benchmarks/deploy_speed.py"] + sys.argv[1:]),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "machine": f"{cpu_info().describe()}, {os.cpu_count()} cores, {platform.machine()}",
                      "torch": str(torch.__version__), "onnxruntime": onnxruntime.__version__})
        RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
    saved = json.loads(RESULTS.read_text())
    DOC.write_text(render(saved))
    update_readme(saved)
    print(tables(saved))
    print(f"\nresults in {RESULTS}; table in {DOC} and {README}")


if __name__ == "__main__":
    main()
