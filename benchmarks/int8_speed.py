"""Prune, then quantize: int8 students against the fp32 and int8 teacher - accuracy, file size and
latency side by side, and what each label-free recovery buys.

    .venv/bin/python benchmarks/int8_speed.py              # measure (about 40 minutes on 2 cores), write results and docs
    .venv/bin/python benchmarks/int8_speed.py --render     # docs/INT8.md and the block in docs/SHIPPING.md, from the results

What it measures (every number in the docs comes from ``benchmarks/results/int8.json``):

- ResNet-20 ``channels:0.5`` students trained by ``mimir.compress`` (MiR, the standard grid's 400
  iterations) on 50 and 500 Fashion-MNIST samples, seeds 1-3 (kept in ``$MIMIR_CACHE/bench-int8``, so
  a rerun resumes), each quantized with ``mimir.quantize`` on its own samples: recovery none, bias and
  mimic (minmax calibration), and the teacher quantized on the same samples; top-1 on the 10,000 test
  images in ONNX Runtime, file sizes. The calibration methods (minmax, entropy, percentile) are
  compared on seed 1.
- Latency (architecture only: one student per scheme): fp32 and int8 teacher, fp32 and int8
  students (``channels:0.5``, ``channels:0.5`` with ``round_to`` 16, ``channels-all:0.5``, four blocks
  dropped), timed in turns in ONNX Runtime and in OpenVINO (where installed), one thread, batch 1 and 64.
- Where the int8 time goes: ONNX Runtime's profile of the int8 teacher and student at batch 64.
- Mobile and transformer networks: MobileNetV2 (small-input stem, trained here for one epoch on
  Fashion-MNIST with ``mimir train-teacher mobilenet_v2 --epochs 1 --batch-size 128 --lr 0.05``) and
  the bundled ViT, each quantized on 500 samples (seed 1) with every recovery.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "int8.json"
DOC = ROOT / "docs" / "INT8.md"
README = ROOT / "docs" / "SHIPPING.md"
BLOCK = ("<!-- int8_speed -->", "<!-- /int8_speed -->")
SEEDS = (1, 2, 3)
SAMPLES = (50, 500)
ITERATIONS = 400
RECOVERIES = ("none", "bias", "mimic")
CALIBRATIONS = ("minmax", "entropy", "percentile")
SCHEMES = (("channels:0.5", None), ("channels:0.5", 16), ("channels-all:0.5", None),
           ("blocks:layer1.1,layer2.1,layer2.2,layer3.1", None))
MOBILENET = "mobilenet_v2"
GOALS = {"b64": 0.30, "b1": 0.35, "accuracy": 0.3, "size": 0.3, "recovered": 1.0}


def _cache() -> Path:
    from mimir.core import cache_root

    path = cache_root() / "bench-int8"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load(saved: dict, key: str, compute):
    """``saved[key]``, computed and written to the results file first when missing (resumable)."""
    if key not in saved:
        started = time.perf_counter()
        saved[key] = compute()
        print(f"{key}: {json.dumps(saved[key])[:300]} ({time.perf_counter() - started:.0f} s)", flush=True)
        RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
    return saved[key]


def _student(samples: int, seed: int) -> Path:
    import mimir

    path = _cache() / f"r20_c05_n{samples}_s{seed}.pt"
    if not path.exists():
        mimir.compress("resnet20", samples=samples, seed=seed, iterations=ITERATIONS, progress=False, out=path)
    return path


def _quantized(model: str, samples: int, seed: int, recovery: str, calibration: str = "minmax") -> dict:
    import mimir

    with_eval = mimir.quantize(model, _cache() / "last.int8.onnx", data="fashion-mnist", samples=samples, seed=seed,
                               calibration=calibration, recovery=recovery, eval_data="fashion-mnist",
                               progress=False)
    return {k: with_eval[k] for k in ("accuracy_fp32", "accuracy_int8", "size_bytes", "fp32_size_bytes", "seconds")}


def _mobilenet() -> str:
    path = _cache() / "mobilenet_v2_fashion_mnist.pt"
    if not path.exists():
        import mimir

        mimir.train_teacher(MOBILENET, epochs=1, batch_size=128, lr=0.05, out=path, progress=False)
    return str(path)


@functools.cache
def _resnet20_models() -> tuple:
    """(data config, {name: model}): the fp32 teacher and pruned students (their architectures: latency
    does not depend on the weights) and each one's int8 file, calibrated on 500 samples (seed 1)."""
    import torch

    from mimir.data.sources import load_samples
    from mimir.export import load_model
    from mimir.prune import prune
    from mimir.quantize import quantize_model
    from mimir.teachers import bundled_teacher_path

    teacher, config, _ = load_model(bundled_teacher_path("resnet20"))
    few = load_samples("fashion-mnist", 500, 1, config, progress=False)
    x = torch.zeros(1, 1, 28, 28)
    models: dict = {"teacher": teacher, "teacher int8": quantize_model(teacher, config, few).blob}
    for scheme, round_to in SCHEMES:
        name = scheme + (f" round_to={round_to}" if round_to else "")
        student, _ = prune(teacher, scheme, x, round_to=round_to)
        models[name] = student
        models[name + " int8"] = quantize_model(student, config, few).blob
    return config, models


def _latency(seconds: float) -> dict:
    from mimir.evaluate.latency import time_models

    config, models = _resnet20_models()
    runtimes = ["onnxruntime"]
    try:
        import openvino  # noqa: F401
        runtimes.append("openvino")
    except ImportError:
        pass
    out: dict = {}
    sessions: dict = {}
    for runtime in runtimes:
        for batch in (1, 64):
            t = time_models(models, config, runtime, batch, 1, seconds, sessions if runtime == "onnxruntime" else None)
            out[f"{runtime}/{batch}"] = {k: [round(v.median_ms, 4), round(v.iqr_ms, 4)] for k, v in t.items()}
            print(f"{runtime} b{batch}: " + ", ".join(f"{k} {v.median_ms:.3f}" for k, v in t.items()), flush=True)
    return out


def _profile() -> str:
    """ONNX Runtime's kernel time per operator and per output width, int8 teacher against int8 student."""
    import collections

    import numpy as np
    import onnxruntime as ort

    _, models = _resnet20_models()
    blobs = {name: blob for name, blob in models.items() if name.endswith(" int8")}
    lines = []
    for batch in (1, 64):
        lines.append(f"resnet20 int8, batch {batch}, 1 thread: ms per run in ONNX Runtime's kernels, by operator; "
                     "int8 convolutions by output width (channels)")
        for name, blob in blobs.items():
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.enable_profiling = True
            opts.log_severity_level = 3
            opts.profile_file_prefix = str(_cache() / "int8-profile")
            session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
            inp = np.random.default_rng(0).standard_normal((batch, 1, 28, 28)).astype(np.float32)
            runs = 200 if batch == 1 else 20
            for _ in range(runs):
                session.run(None, {"input": inp})
            trace = json.loads(Path(session.end_profiling()).read_text())
            by_op, by_width = collections.Counter(), collections.Counter()
            for e in trace:
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    ms = e["dur"] / runs / 1e3
                    by_op[e["args"]["op_name"]] += ms
                    if e["args"]["op_name"] == "QLinearConv":
                        shape = next(iter(e["args"]["output_type_shape"][0].values()))
                        by_width[shape[-1]] += ms   # QLinearConv runs channels-last: the last axis
            lines.append(f"  {name:<32} kernels {sum(by_op.values()):.3f}; " + ", ".join(
                f"{k} {v:.3f}" for k, v in by_op.most_common(4)) + "; QLinearConv by width " + ", ".join(
                f"{w}: {v:.3f}" for w, v in sorted(by_width.items())))
        lines.append("")
    return "\n".join(lines)


def measure(saved: dict, seconds: float) -> dict:
    for samples in SAMPLES:
        for seed in SEEDS:
            student = str(_student(samples, seed))
            for recovery in RECOVERIES:
                _load(saved, f"student/{samples}/{seed}/{recovery}", lambda: _quantized(student, samples, seed, recovery))
            _load(saved, f"teacher/{samples}/{seed}/none", lambda: _quantized("resnet20", samples, seed, "none"))
    for calibration in CALIBRATIONS:
        _load(saved, f"calibration/{calibration}",
              lambda: _quantized(str(_student(500, 1)), 500, 1, "none", calibration))
    for name, ref in (("mobilenet_v2", None), ("vit_p7", "vit_p7")):
        for recovery in RECOVERIES:
            _load(saved, f"{name}/{recovery}", lambda: _quantized(ref or _mobilenet(), 500, 1, recovery))
    _load(saved, "latency", lambda: _latency(seconds))
    _load(saved, "profile", _profile)
    return saved


# ----------------------------------------------------------------------------- rendering
def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} +- {std:.2f}"


def _ratio(saved: dict, column: str, name: str) -> float:
    t = saved["latency"][column]
    return t[name][0] / t["teacher"][0]


def tables(saved: dict) -> str:
    lines = ["**ResNet-20 `channels:0.5`, MiR students (400 iterations), Fashion-MNIST test accuracy in ONNX Runtime "
             "(mean +- std over seeds 1-3)**", "",
             "| samples | teacher fp32 | teacher int8 | student fp32 | student int8 | int8 + bias correction | "
             "int8 + mimic | int8 - fp32 (plain / bias / mimic) |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for samples in SAMPLES:
        rows = {r: [saved[f"student/{samples}/{s}/{r}"] for s in SEEDS] for r in RECOVERIES}
        teacher = [saved[f"teacher/{samples}/{s}/none"] for s in SEEDS]
        fp32 = [r["accuracy_fp32"] for r in rows["none"]]
        deltas = " / ".join(f"{statistics.mean(x['accuracy_int8'] - f for x, f in zip(rows[r], fp32)):+.2f}"
                            for r in RECOVERIES)
        lines.append(f"| {samples} | {teacher[0]['accuracy_fp32']:.2f} | "
                     f"{_mean_std([t['accuracy_int8'] for t in teacher])} | {_mean_std(fp32)} | "
                     + " | ".join(_mean_std([x["accuracy_int8"] for x in rows[r]]) for r in RECOVERIES)
                     + f" | {deltas} |")
    seconds = {r: statistics.mean(saved[f"student/{n}/{s}/{r}"]["seconds"].get("recover", 0.0)
                                  for n in SAMPLES for s in SEEDS) for r in RECOVERIES[1:]}
    s0 = saved["student/500/1/none"]
    t0 = saved["teacher/500/1/none"]
    lines += ["", f"Recovery time (mean per student, this machine): bias correction {seconds['bias']:.1f} s, "
                  f"mimic {seconds['mimic']:.1f} s. Files: student int8 {s0['size_bytes'] / 1e3:.0f} kB / fp32 "
                  f"{s0['fp32_size_bytes'] / 1e3:.0f} kB ({s0['size_bytes'] / s0['fp32_size_bytes']:.2f}), teacher "
                  f"{t0['size_bytes'] / 1e3:.0f} / {t0['fp32_size_bytes'] / 1e3:.0f} kB "
                  f"({t0['size_bytes'] / t0['fp32_size_bytes']:.2f}). Calibration methods (seed 1, 500 samples, "
                  "no recovery): " + ", ".join(
                      f"{c} {saved[f'calibration/{c}']['accuracy_int8']:.2f}" for c in CALIBRATIONS) + ".", ""]
    lines += ["**Latency against the fp32 teacher** (one thread; timed in turns; teacher: " + ", ".join(
        f"{'ORT' if k.startswith('onnx') else 'OpenVINO'} b{k.split('/')[1]} {v['teacher'][0]:.2f} ms"
        for k, v in saved["latency"].items()) + ")", ""]
    columns = list(saved["latency"])
    names = [n for n in saved["latency"][columns[0]] if n != "teacher"]
    lines += ["| model | " + " | ".join(f"{'ORT' if c.startswith('onnx') else 'OpenVINO'} b{c.split('/')[1]}"
                                       for c in columns) + " |", "|---|" + "---:|" * len(columns)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{_ratio(saved, c, name):.3f}"
                                                 for c in columns) + " |")
    lines += ["", "**Other networks** (500 samples, seed 1; accuracy in ONNX Runtime)", "",
              "| network | fp32 | int8 | int8 + bias correction | int8 + mimic |", "|---|---:|---:|---:|---:|"]
    for name in ("mobilenet_v2", "vit_p7"):
        r = {rec: saved[f"{name}/{rec}"] for rec in RECOVERIES}
        lines.append(f"| {name} | {r['none']['accuracy_fp32']:.2f} | " + " | ".join(
            f"{r[rec]['accuracy_int8']:.2f}" for rec in RECOVERIES) + " |")
    return "\n".join(lines)


def render(saved: dict) -> str:
    return "\n".join([
        "# int8: prune, then quantize", "",
        f"Generated by `.venv/bin/python benchmarks/int8_speed.py --render` from `benchmarks/results/int8.json`, "
        f"measured by `.venv/bin/python benchmarks/int8_speed.py` on {saved['date']} ({saved['machine']}; torch "
        f"{saved['torch']}, onnxruntime {saved['onnxruntime']}, openvino {saved.get('openvino', 'not installed')}).",
        "", "int8 = ONNX Runtime's static quantizer, QDQ format, int8 symmetric weights per output channel, uint8 "
        "activations per tensor calibrated on the run's own few samples (each sample's evaluation view and one "
        "training view); see [SHIPPING.md](SHIPPING.md#int8). Latency ratio = model / fp32 teacher median "
        "latency, all models timed in turns in one process (`mimir latency model.int8.onnx` does the same).", "",
        tables(saved), "", "## Where the int8 time goes", "",
        "ONNX Runtime fuses each QDQ group into an int8 kernel (`QLinearConv`, `QLinearAdd`) running "
        "channels-last; its profile of the same files (one thread):", "", "```", saved["profile"].strip("\n"),
        "```", ""])


def update_readme(saved: dict) -> None:
    from mimir._readme import replace_block

    if not replace_block(README, *BLOCK, tables(saved).strip()):
        raise SystemExit(f"{README} has no block for the tables: add the lines '{BLOCK[0]}' and '{BLOCK[1]}'")


def _render_deploy_page() -> None:
    """docs/DEPLOY.md shows the int8 rows too: render it again from its own results."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_speed", Path(__file__).with_name("deploy_speed.py"))
    deploy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy)
    deploy.DOC.write_text(deploy.render(json.loads(deploy.RESULTS.read_text())))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="timing per runtime and batch size")
    p.add_argument("--render", action="store_true", help="only render docs/INT8.md and the block in docs/SHIPPING.md")
    args = p.parse_args()
    if not args.render:
        import onnxruntime
        import torch

        from mimir.core import cpu_info

        saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        measure(saved, args.seconds)
        try:
            import openvino
            version = openvino.__version__.split("-")[0]
        except ImportError:
            version = "not installed"
        saved.update({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "machine": f"{cpu_info().describe()}, {os.cpu_count()} cores, {platform.machine()}",
                      "torch": str(torch.__version__), "onnxruntime": onnxruntime.__version__, "openvino": version})
        RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
    saved = json.loads(RESULTS.read_text())
    DOC.write_text(render(saved))
    update_readme(saved)
    _render_deploy_page()
    print(tables(saved))
    print(f"\nresults in {RESULTS}; tables in {DOC} and {README}")


if __name__ == "__main__":
    sys.exit(main())
