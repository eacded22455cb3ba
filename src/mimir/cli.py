"""The ``mimir`` command. It only parses arguments and calls :mod:`mimir.api`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from pathlib import Path

import timm

from mimir import api
from mimir._version import library_versions
from mimir.bench import aggregate, dry_run_config, load_config, read_results, run_bench, winners, write_report
from mimir.bench.cells import finished_keys, finished_records, outdated
from mimir.bench.config import check_inputs
from mimir.bench.executors import cell_states, log_folder, submit
from mimir.bench.report import mixed_devices, update_readme
from mimir.bench.runner import Stopped
from mimir.cluster import EXECUTORS, Resources, require, submit_compress
from mimir.engine import TrainingInterrupted
from mimir.errors import MimirError
from mimir.methods import get_method, list_methods
from mimir.models import list_models
from mimir.prune.families import family_rows, format_rows
from mimir.prune.families import update_readme as update_families_block
from mimir.recipe import (
    Recipe,
    add_recipe_flags,
    flag_of,
    load_recipe,
    parse_options,
    recipe_defaults,
    recipe_from_flags,
    settings,
)
from mimir.teachers import bundled_teachers


def _add_train_teacher(sub) -> None:
    p = sub.add_parser("train-teacher", help="train a registry model on all of Fashion-MNIST (with labels)")
    p.add_argument("model", help="registry model name, e.g. resnet20")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--optimizer", default="sgd", help="sgd (Nesterov, default) or adamw (for ViTs)")
    p.add_argument("--warmup", type=float, default=0.0, help="fraction of the steps with a linear lr warm-up")
    p.add_argument("--out", required=True, help="where to write the trained teacher (.pt)")
    _add_runtime(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _run_train_teacher(args) -> int:
    info = api.train_teacher(args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, seed=args.seed, out=args.out,
                             progress=not args.json, device=args.device, precision=args.precision,
                             optimizer=args.optimizer, warmup=args.warmup)
    if args.json:
        print(json.dumps(info))
    else:
        print(f"{args.model}: test accuracy {info['test_accuracy']:.2f} % after {args.epochs} epochs "
              f"({info['train_seconds']:.0f} s); written to {args.out}")
    return 0


def _add_runtime(p) -> None:
    """--device / --precision, declared with the recipe's fields of those names."""
    for name in ("device", "precision"):
        p.add_argument(flag_of(name), default=recipe_defaults()[name],
                       help=f"{settings()[name].help} (default: {recipe_defaults()[name]})")


def _add_trust_code(p) -> None:
    p.add_argument("--trust-code", action="store_true", default=False,
                   help="let a saved file of your own model import and call the MODULE:CALLABLE it names "
                        "(a file never runs code otherwise)")


def _add_compress(sub) -> None:
    # the recipe's flags come from its declarations (mimir.recipe); each defaults to "not given", so
    # that --recipe FILE supplies it unless the flag overrides it
    p = sub.add_parser("compress", help="prune a teacher and train the student on a few unlabeled images",
                       description="Prune TEACHER, train the student with METHOD on N few samples, "
                                   "measure teacher / pruned / compressed, and optionally save the result. "
                                   "Every setting is recorded in the saved file as its recipe.")
    p.add_argument("--recipe", help="take every setting from a YAML recipe or a model saved by mimir; "
                                    "flags given as well override it")
    add_recipe_flags(p)
    p.add_argument("--out", help="write the compressed model here (.pt, loadable with weights_only=True)")
    p.add_argument("--checkpoint", help="training checkpoint file (default: OUT.ckpt); written every "
                                        "--checkpoint-every N iterations and on Ctrl-C")
    p.add_argument("--checkpoint-every", type=int, default=0, help="write the checkpoint every N iterations")
    p.add_argument("--resume", action="store_true", default=False,
                   help="continue the interrupted run from its checkpoint")
    _add_trust_code(p)
    p.add_argument("--json", action="store_true", default=False,
                   help="print the summary as one JSON object on stdout")
    p.add_argument("--no-latency", action="store_true", default=False,
                   help="skip timing teacher and student in ONNX Runtime (batch 1, one thread) at the end")
    _add_executor(p, "a process here (default); slurm: one Slurm job running torchrun on --gpus GPUs of --nodes "
                     "nodes, requeued and resumed on preemption (pip install 'mimir[cluster]'); submitit-local: "
                     "the same job as a process of this machine")
    for flag, kind, text in (("--gpus", int, "GPUs per node (default 0)"),
                             ("--processes", int, "torchrun processes per node (default: --gpus, at least 1)"),
                             ("--nodes", int, "nodes (default 1; torchrun meets on the first)"),
                             ("--cpus", int, "CPUs per node (default: one per process)")):
        p.add_argument(flag, type=kind, help=f"with --executor slurm / submitit-local: {text}")
    _add_job_flags(p, "the job")


def _add_executor(p, text: str) -> None:
    p.add_argument("--executor", choices=EXECUTORS, default="local", help=f"local: {text}")


def _add_job_flags(p, per: str) -> None:
    """The scheduler flags compress and bench share."""
    for flag, kind, text in (("--partition", str, "Slurm partition"), ("--time", int, f"minutes for {per}"),
                             ("--mem", str, f"memory for {per} (per node), e.g. 16G")):
        p.add_argument(flag, type=kind, help=f"with --executor slurm / submitit-local: {text}")
    p.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                   help=f"any other sbatch parameter for {per}, e.g. qos=high (repeatable)")


def _sbatch_pairs(items: list[str]) -> dict[str, str] | None:
    return parse_options(items, "--sbatch", "qos=high") or None


def recipe_from_args(args) -> Recipe:
    """The recipe the flags describe: ``--recipe FILE`` (if given) with every given flag on top."""
    base = load_recipe(args.recipe, trust_code=getattr(args, "trust_code", False)) \
        if getattr(args, "recipe", None) else None
    return recipe_from_flags(vars(args), base)


def _fmt_acc(v) -> str:
    return "n/a" if v is None else f"{v:.2f} %"


def summary_table(summary: dict) -> str:
    """The end-of-run table: teacher, pruned-before-training and compressed models (and their int8
    models, with --quantize)."""
    method = summary["method"]
    rows = [("teacher", "teacher", summary["teacher"]), ("pruned (before training)", "student", summary["pruned"]),
            (f"compressed ({method})", "student", summary["compressed"])]
    if "compressed_int8" in summary:
        rows[1:1] = [("teacher int8", "teacher_int8", {**summary["teacher"], **summary["teacher_int8"]})]
        rows.append((f"compressed ({method}) int8", "student_int8", {**summary["compressed"],
                                                                      **summary["compressed_int8"]}))
    t_macs, t_params = summary["teacher"]["macs"], summary["teacher"]["params"]
    lat = summary.get("latency")
    head = f"{'model':<28}{'accuracy':>10}{'params':>12}{'MACs':>12}{'of teacher':>12}" + (
        f"{'latency':>12}{'of teacher':>12}" if lat else "")
    lines = [head, "-" * len(head)]
    for label, timed, r in rows:
        line = (f"{label:<28}{_fmt_acc(r['accuracy']):>10}{r['params'] / 1e6:>11.3f}M"
                f"{r['macs'] / 1e6:>11.2f}M{100 * r['macs'] / t_macs:>11.1f}%")
        if lat:   # the pruned and the compressed student share one architecture, so one latency
            t = lat[f"{timed}_ms"]
            line += f"{t:>9.3f} ms{100 * t / lat['teacher_ms']:>11.1f}%"
        lines.append(line)
    lines.append(f"MACs = multiply-accumulates per image; params of teacher {t_params:,}")
    if lat:
        lines.append(f"latency = ONNX Runtime, batch {lat['batch']}, {lat['threads']} thread, CPU; median of the "
                     f"models timed in turns (spread: IQR {lat['teacher_iqr_ms']:.3f} / {lat['student_iqr_ms']:.3f} "
                     f"ms, teacher / student); 'mimir latency' for more")
    if "compressed_int8" in summary:
        c, t = summary["compressed_int8"], summary["teacher_int8"]
        q = c["quantization"]
        lines.append(f"int8 = {q['format']}, {q['weights']} {q['weight_granularity']}, {q['activations']} calibrated "
                     f"({q['calibration']}) on {q['calibration_images']} views of the {q['samples']} samples"
                     f"{', 7-bit weights (no VNNI)' if q['reduce_range'] else ''}, recovery {q['recovery']}; "
                     f"ONNX files: compressed {c['size_bytes'] / 1e3:.0f} kB int8 / {c['fp32_size_bytes'] / 1e3:.0f} "
                     f"kB fp32 ({c['size_bytes'] / c['fp32_size_bytes']:.2f}), teacher {t['size_bytes'] / 1e3:.0f} / "
                     f"{t['fp32_size_bytes'] / 1e3:.0f} kB; quantized in {c['seconds']:.0f} s + {t['seconds']:.0f} s")
    return "\n".join(lines)


_JOB_FLAGS = ("gpus", "processes", "nodes", "cpus", "partition", "time", "mem", "sbatch")


def _run_compress(args) -> int:
    recipe = recipe_from_args(args)
    out = getattr(args, "out", None)
    if args.executor != "local":
        return _submit_compress(args, recipe, out)
    given = [f"--{name}" for name in _JOB_FLAGS if getattr(args, name) not in (None, [])]
    if given:
        raise MimirError(f"{given[0]} is for a job (--executor slurm or submitit-local)",
                         "add --executor slurm, or drop it (on this machine: torchrun --nproc_per_node=P -m mimir ...)")
    # a checkpoint goes beside --out, or where --checkpoint says; in the current folder only when
    # --checkpoint-every (or --resume) asks for one without either (Ctrl-C alone never drops one there)
    checkpoint = getattr(args, "checkpoint", None) or (f"{out}.ckpt" if out else None)
    if checkpoint is None and (args.checkpoint_every or args.resume):
        checkpoint = f"mimir-{recipe.key}.ckpt"
    if not args.json and os.environ.get("RANK", "0") == "0":   # under torchrun, rank 0 speaks for all
        length = f"{recipe.iterations} iterations" if get_method(recipe.method).iterative else "no SGD iterations"
        print(f"mimir compress: teacher {recipe.teacher}, method {recipe.method}, prune {recipe.prune}, "
              f"{recipe.samples} samples of {recipe.data} (seed {recipe.seed}), {length}", flush=True)
    result = api.compress(recipe=recipe, progress=not args.json, out=out, checkpoint=checkpoint,
                          checkpoint_every=args.checkpoint_every, resume=args.resume, latency=not args.no_latency,
                          trust_code=args.trust_code)
    if not result.summary:   # a torchrun process other than rank 0: rank 0 reports
        return 0
    summary = result.summary
    if args.json:
        print(json.dumps(summary))
        return 0
    for line in get_method(recipe.method).summary_lines(summary):
        print(line)
    print(summary_table(summary))
    if summary["used_labels"]:
        print(f"note: method '{recipe.method}' used the labels of the {recipe.samples} samples")
    print(f"trained in {summary['train_seconds']:.0f} s ({summary['iterations']} iterations), "
          f"{summary['wall_seconds']:.0f} s in all")
    if "training" in summary:
        t = summary["training"]
        print(f"device {summary['device']}, {summary['processes']} process(es): "
              f"{t['iterations_per_second']:.2f} iterations/s"
              + (f" after {t['setup_seconds']:.1f} s computing the teacher's targets once" if t["cached_targets"] else ""))
    if out:
        print(f"written to {out}" + (f" and {summary['int8_out']}" if "int8_out" in summary else ""))
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy, parameters, MACs (and latency) of a model")
    p.add_argument("model", help="a mimir checkpoint, a registry name with a bundled teacher, or an ONNX file mimir "
                                 "wrote (e.g. an int8 model: measured in ONNX Runtime)")
    p.add_argument("--data", default="fashion-mnist", help="'fashion-mnist' (its test set) or an ImageNet-style folder")
    p.add_argument("--latency", action="store_true", help="also time one forward pass on the CPU")
    _add_runtime(p)
    _add_trust_code(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _run_evaluate(args) -> int:
    result = api.evaluate(args.model, data=args.data, latency=args.latency, progress=not args.json,
                          device=args.device, precision=args.precision, trust_code=args.trust_code)
    if args.json:
        print(json.dumps(result))
        return 0
    line = f"{args.model}: accuracy {_fmt_acc(result['accuracy'])}"
    if result["params"] is not None:
        line += f", {result['params']:,} params, {result['macs'] / 1e6:.2f} M MACs"
    if "size_bytes" in result:
        q = result["quantization"]
        line += f", {result['size_bytes'] / 1e3:.0f} kB" + (
            f" ({q['type']} {q['format']}, ONNX Runtime on the CPU)" if q else " (ONNX Runtime on the CPU)")
    if "latency_ms" in result:
        line += f", {result['latency_ms']:.2f} ms per image (PyTorch, CPU, 1 thread, median)"
    print(line)
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a model as ONNX (checked in ONNX Runtime), safetensors or .pt",
                       description="Export MODEL. ONNX files have a dynamic batch dimension and BatchNorm folded "
                                   "into the convolutions, pass the onnx checker and are run in ONNX Runtime "
                                   "against PyTorch on real images before they are written.")
    _add_model_source(p)
    p.add_argument("--format", choices=["onnx", "safetensors", "pt"],
                   help="default: from --out's suffix")
    p.add_argument("--out", required=True, help="the file to write (.onnx, .safetensors or .pt)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _add_model_source(p) -> None:
    """MODEL, or --teacher NAME --weights FILE as in compress, and --input-size."""
    p.add_argument("model", nargs="?", help="a mimir file (.pt or .safetensors), or a registry name with a "
                                            "bundled teacher")
    p.add_argument("--teacher", help="instead of MODEL: a registry name with --weights, or MODULE:CALLABLE")
    p.add_argument("--weights", help="plain state-dict file for --teacher (as in compress)")
    p.add_argument("--input-size", type=int, help="square input size in pixels (needed for MODULE:CALLABLE; "
                                                  "default: the model's own)")
    _add_trust_code(p)


def _model_arg(args) -> str:
    model = args.model or args.teacher
    if model is None or (args.model and args.teacher):
        raise MimirError("give either MODEL or --teacher NAME (with --weights FILE), not both or neither",
                         f"e.g. mimir {args.command} runs/resnet20_mir.pt")
    return model


def _run_export(args) -> int:
    result = api.export(_model_arg(args), args.out, format=args.format, weights=args.weights,
                        input_size=args.input_size, trust_code=args.trust_code)
    if args.json:
        print(json.dumps(result))
    elif result["format"] == "onnx":
        print(f"{result['out']}: ONNX (opset {result['opset']}, dynamic batch, BatchNorm nodes left: "
              f"{result['batchnorm_left']}); ONNX Runtime vs PyTorch on {result['inputs']}: max |logit difference| "
              f"{result['max_abs_diff']:.3g} ({result['relative_diff']:.2g} of the logit scale), "
              f"top-1 agreement {result['top1_agreement']:.2f} %")
    else:
        print(f"{result['out']}: written as {result['format']}")
    return 0


def _add_latency(sub) -> None:
    p = sub.add_parser("latency", help="time a compressed model against its teacher (interleaved, CPU)",
                       description="Teacher and student are timed in turns in one process, so that their ratio "
                                   "holds on a noisy machine; prints medians, spreads, the latency ratio and the "
                                   "MAC ratio.")
    _add_model_source(p)
    p.add_argument("--against", help="the teacher to compare with (default: the one the file records)")
    p.add_argument("--runtime", default="both", choices=["torch", "onnxruntime", "openvino", "both"],
                   help="both = torch and onnxruntime; openvino needs pip install 'mimir[openvino]' "
                        "(an int8 ONNX model runs in the ONNX runtimes only)")
    p.add_argument("--batch", default="1,64", help="batch sizes, comma-separated (default: 1,64)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default: 1, the compute-bound figure; small models are fastest on one)")
    p.add_argument("--seconds", type=float, default=1.0, help="timing per runtime and batch size (default: 1)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise MimirError(f"{flag} '{text}' is not a comma-separated list of integers", f"pass e.g. {flag} 1,64") from None


def _run_latency(args) -> int:
    runtimes = ("onnxruntime", "torch") if args.runtime == "both" else (args.runtime,)
    result = api.latency(_model_arg(args), against=args.against, weights=args.weights, runtimes=runtimes,
                         batches=_int_list(args.batch, "--batch"), threads=args.threads, seconds=args.seconds,
                         input_size=args.input_size, trust_code=args.trust_code)
    if args.json:
        print(json.dumps(result))
        return 0
    macs = "" if result["macs"] is None else f"MACs {result['macs'] / 1e6:.2f}M vs {result['teacher_macs'] / 1e6:.2f}M " \
                                              f"(ratio {result['macs_ratio']:.3f}); "
    print(f"{result['model']} against {result['teacher']}: {macs}{result['threads']} thread(s)")
    head = f"{'runtime':<13}{'batch':>6}{'teacher ms':>12}{'(IQR)':>9}{'student ms':>12}{'(IQR)':>9}" \
           f"{'latency ratio':>15}{'MAC ratio':>11}"
    print(head + "\n" + "-" * len(head))
    mac_ratio = "n/a" if result["macs_ratio"] is None else f"{result['macs_ratio']:.3f}"
    for runtime, per_batch in result["runtimes"].items():
        for batch, r in per_batch.items():
            print(f"{runtime:<13}{batch:>6}{r['teacher_ms']:>12.3f}{r['teacher_iqr_ms']:>9.3f}{r['student_ms']:>12.3f}"
                  f"{r['student_iqr_ms']:>9.3f}{r['latency_ratio']:>15.3f}{mac_ratio:>11}")
            for name in [k[:-6] for k in r if k.endswith("_ratio") and k != "latency_ratio"]:
                print(f"{'':<13}{'':>6}{'':>12}{'':>9}{r[name + '_ms']:>12.3f}{r[name + '_iqr_ms']:>9.3f}"
                      f"{r[name + '_ratio']:>15.3f}  ({name.replace('_', ' ')})")
    return 0


def _add_quantize(sub) -> None:
    p = sub.add_parser("quantize", help="write an int8 ONNX model calibrated on a few unlabeled images",
                       description="Quantize MODEL (a compressed mimir file, or any teacher) to int8 with ONNX "
                                   "Runtime's static quantizer (QDQ: int8 per-channel weights, uint8 activations "
                                   "calibrated on the samples), optionally recover what int8 loses, and measure "
                                   "fp32 and int8 accuracy. The file is checked to run in ONNX Runtime first.")
    _add_model_source(p)
    p.add_argument("--out", required=True, help="the int8 ONNX file to write (e.g. model.int8.onnx)")
    p.add_argument("--data", help="unlabeled images to calibrate on: 'fashion-mnist', a folder, or synthetic:N "
                                  "(default: the data the model's recipe records, else fashion-mnist)")
    p.add_argument("--samples", type=int, help="how many (default: the recipe's, else 500)")
    p.add_argument("--seed", type=int, help="seed of the draw (default: the recipe's, else 0)")
    for name in ("calibration", "quantize_recovery"):
        p.add_argument("--recovery" if name == "quantize_recovery" else flag_of(name), dest=name,
                       default=recipe_defaults()[name], choices=settings()[name].valid_words(),
                       help=f"{settings()[name].help} (default: {recipe_defaults()[name]})")
    p.add_argument("--eval-data", default="auto", help="labelled data for fp32 and int8 accuracy (default: the "
                                                       "recipe's; 'none': skip)")
    p.add_argument("--device", default="auto", help="where the mimic recovery trains (auto, cpu, cuda, cuda:N)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _run_quantize(args) -> int:
    eval_data = None if args.eval_data == "none" else args.eval_data
    result = api.quantize(_model_arg(args), args.out, data=args.data, samples=args.samples, seed=args.seed,
                          calibration=args.calibration, recovery=args.quantize_recovery, eval_data=eval_data,
                          weights=args.weights, input_size=args.input_size, device=args.device,
                          progress=not args.json, trust_code=args.trust_code)
    if args.json:
        print(json.dumps(result))
        return 0
    q = result["quantization"]
    print(f"{result['out']}: int8 {q['format']} ({q['weights']} {q['weight_granularity']}, {q['activations']}"
          f"{', 7-bit weights: this CPU has no VNNI' if q['reduce_range'] else ''}), calibrated ({q['calibration']}) on "
          f"{q['calibration_images']} views of {result['samples']} images of {result['data']} (seed {result['seed']}), "
          f"recovery {q['recovery']}; {', '.join(f'{k} {v:.1f} s' for k, v in result['seconds'].items())}")
    print(f"  operators in int8: {', '.join(f'{k} {v}' for k, v in q['int8'].items())}; left in fp32: "
          f"{', '.join(f'{k} {v}' for k, v in q['fp32'].items()) or 'none'}")
    print(f"  file {result['size_bytes'] / 1e3:.0f} kB (fp32 ONNX {result['fp32_size_bytes'] / 1e3:.0f} kB, ratio "
          f"{result['size_bytes'] / result['fp32_size_bytes']:.2f})" + (
              f"; accuracy fp32 {_fmt_acc(result['accuracy_fp32'])} -> int8 {_fmt_acc(result['accuracy_int8'])} "
              f"(ONNX Runtime)" if "accuracy_int8" in result else ""))
    return 0


def _submit_compress(args, recipe: Recipe, out: str | None) -> int:
    """Submit the run as one job; submitit-local waits for it (for trying the path here)."""
    if not out:
        raise MimirError(f"--executor {args.executor} needs --out (where the job writes the model)",
                         "add --out FILE on storage the job's nodes share")
    if args.resume:
        raise MimirError(f"--resume with --executor {args.executor}: a requeued job resumes by itself",
                         "submit the same command without --resume; or resume here without --executor")
    processes = args.processes if args.processes is not None else max(1, args.gpus or 0)
    if processes < 1:
        raise MimirError(f"--processes must be at least 1 (got {processes})", "pass a positive number")
    resources = Resources().with_(gpus=args.gpus, nodes=args.nodes, cpus=args.cpus or processes, partition=args.partition,
                                  time=args.time, mem=args.mem, sbatch=_sbatch_pairs(args.sbatch))
    run_args = [flag for flag, on in (("--json", args.json), ("--no-latency", args.no_latency),
                                      ("--trust-code", args.trust_code)) if on]
    if args.checkpoint_every:
        run_args += ["--checkpoint-every", str(args.checkpoint_every)]
    job = submit_compress(recipe, out, args.executor, resources, processes, run_args, checkpoint=args.checkpoint)
    where = f"{resources.nodes} node(s) x {processes} process(es)" + (f", {resources.gpus} GPU(s) per node"
                                                                       if resources.gpus else "")
    print(f"mimir compress: job {job.job_id} ({where}) submitted with --executor {args.executor}; "
          f"log {job.paths.stdout}")
    if args.executor == "slurm":
        print(f"it writes {out} when it finishes; follow it with: tail -f {job.paths.stdout}")
        return 0
    try:
        job.result()
    except Exception:   # noqa: BLE001 - submitit's FailedJobError: the run's own error is in its log
        said = [line for line in (job.stderr() or "").splitlines() if line.startswith("error: ")]
        raise MimirError(f"job {job.job_id} failed" + (f": {said[-1][len('error: '):]}" if said else ""),
                         f"see its log {job.paths.stderr}") from None
    print(f"job {job.job_id} finished: written to {out}")
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark grid from a YAML file (resumable, one JSON line per cell)")
    p.add_argument("config", help="YAML grid, e.g. benchmarks/fashion-mnist.yaml")
    p.add_argument("--results", help="JSON-lines results file (default: benchmarks/results/<config name>.jsonl)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default: 1)")
    p.add_argument("--dry-run", metavar="FOLDER",
                   help="check the grid on FOLDER (ImageNet-style) with random weights, 1 iteration, 4 images")
    p.add_argument("--list", action="store_true", help="only list the cells and which are finished (with "
                   "--executor slurm: the cells that would be submitted and their sbatch parameters, submitting nothing)")
    p.add_argument("--status", action="store_true", help="what each cell is doing: done, queued, running (its job), "
                   "failed (the reason and the log), and the grid's totals")
    _add_executor(p, "a process pool here (--workers; default); slurm: the unfinished cells as one Slurm job "
                     "array through submitit (pip install 'mimir[cluster]'); submitit-local: the same jobs as "
                     "processes of this machine")
    for flag, kind, text in (("--cpus-per-cell", int, "CPUs per cell"),
                             ("--gpus-per-cell", int, "GPUs per cell (a cell then runs on its GPU)"),
                             ("--array-parallelism", int, "cells running at once")):
        p.add_argument(flag, type=kind, help=f"with --executor slurm / submitit-local: {text} (default: the grid "
                                             "file's slurm: section)")
    _add_job_flags(p, "each cell")


def _resources(args, config) -> Resources:
    """The grid file's ``slurm:`` section with the command line's flags on top."""
    sbatch = _sbatch_pairs(args.sbatch)
    resources = config.resources
    return resources.with_(partition=args.partition, time=args.time, cpus=args.cpus_per_cell, gpus=args.gpus_per_cell,
                           mem=args.mem, array_parallelism=args.array_parallelism,
                           sbatch={**resources.sbatch, **sbatch} if sbatch else None)


def _run_bench(args) -> int:
    config = load_config(args.config)
    if args.workers < 1:
        raise MimirError(f"--workers must be at least 1 (got {args.workers})", "pass a positive number")
    if args.dry_run:
        config = dry_run_config(config, args.dry_run, args.dry_run)
    results = args.results or f"benchmarks/results/{config.name}.jsonl"
    resources = _resources(args, config)
    if args.status or (args.list and args.executor != "local"):
        states = cell_states(config.cells, results)
        for cell in config.cells:
            st = states[cell.key]
            print(f"{st.state:<13} {cell.key}  {cell.describe()}" + (f": {st.detail}" if st.detail else "") +
                  (f" (log {st.log})" if st.state == "failed" and st.log else ""))
        counts = {}
        for st in states.values():
            counts[st.state] = counts.get(st.state, 0) + 1
        print(f"{len(config.cells)} cells: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
        if args.list:
            todo = [c for c in config.cells if states[c.key].state in ("failed", "not submitted")]
            print(f"--executor {args.executor} would submit {len(todo)} cells as one job array, logs in "
                  f"{log_folder(results)}" + (", with:" if args.executor == "slurm" else ""))
            if args.executor == "slurm":
                require(args.executor, scheduler=False)   # submitit writes the lines; no Slurm needed to see them
                print("\n".join(resources.sbatch_lines(log_folder(results), f"mimir-{config.name}",
                                                        array=max(1, len(todo)))))
        return 0
    if args.list:
        records = read_results(results)
        done, rerun = finished_keys(records, config.cells), {c.key for c in outdated(records, config.cells)}
        for cell in config.cells:
            print(f"{'done ' if cell.key in done else 'to do'}  {cell.key}  {cell.describe()}" +
                  (" (ran before with other defaults: runs again)" if cell.key in rerun else ""))
        return 0
    if args.executor != "local":
        return _submit_bench(args, config, results, resources)
    records = run_bench(config, results, workers=args.workers, random_weights=bool(args.dry_run))
    failed = [r for r in records if r["status"] != "ok"]
    print(f"{len(records) - len(failed)} cells finished, {len(failed)} failed; results in {results}")
    return 1 if failed else 0


def _submit_bench(args, config, results: str, resources: Resources) -> int:
    """Submit the cells neither finished nor waiting; failed ones are named first, with their logs."""
    require(args.executor)
    check_inputs(config)
    states = cell_states(config.cells, results)
    for cell in config.cells:
        if states[cell.key].state == "failed":
            st = states[cell.key]
            print(f"failed before, submitted again: {cell.describe()}: {st.detail}" + (f" (log {st.log})" if st.log else ""))
    todo = [c for c in config.cells if states[c.key].state in ("failed", "not submitted")]
    waiting = sum(st.state in ("queued", "running") for st in states.values())
    print(f"bench {config.name}: {len(config.cells)} cells, {len(todo)} to submit with --executor {args.executor}, "
          f"{waiting} queued or running")
    jobs = submit(todo, results, config.name, args.executor, resources)
    if args.executor == "slurm":
        if jobs:
            print(f"submitted job array {str(jobs[0].job_id).split('_')[0]} ({len(jobs)} cells), logs in "
                  f"{log_folder(results)}; follow it with: mimir bench {args.config} --status")
        return 0
    done = finished_records(read_results(results), todo)
    failed = [c for c in todo if c.key not in done]
    print(f"{len(todo) - len(failed)} cells finished, {len(failed)} failed; results in {results}")
    return 1 if failed else 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="Markdown table, plots and winners from a results file")
    p.add_argument("results", help="JSON-lines results file written by 'mimir bench'")
    p.add_argument("--out", default="docs", help="folder for RESULTS.md and plots/ (default: docs)")
    p.add_argument("--grid-command", default="", help="the 'mimir bench' command to quote in the report")
    p.add_argument("--readme", help="also rewrite this file's generated summary block for the results "
                                    "(between '<!-- mimir report NAME: ... -->' and '<!-- /mimir report NAME -->')")


def _run_report(args) -> int:
    if not Path(args.results).is_file():
        raise MimirError(f"results file '{args.results}' does not exist", "run 'mimir bench CONFIG' first")
    path = write_report(args.results, args.out, command=args.grid_command)
    records = read_results(args.results)
    for line in winners(aggregate(records)):
        print(line.replace("**", ""))
    for line in mixed_devices(records):
        print(f"warning: {line}", file=sys.stderr)
    print(f"report written to {path}")
    if args.readme:
        name = Path(args.results).stem
        if not update_readme(args.readme, records, name):
            raise MimirError(f"'{args.readme}' has no block for '{name}'",
                             f"add the lines '<!-- mimir report {name}: -->' and '<!-- /mimir report {name} -->' "
                             "where the summary belongs")
        print(f"summary of {name} updated in {args.readme}")
    return 0


def _add_listing(sub) -> None:
    p = sub.add_parser("models", help="list registry models and bundled teachers (--timm: the tested timm families)")
    p.add_argument("--timm", nargs="?", const="", metavar="PATTERN",
                   help="without PATTERN: what mimir prunes and drops in each tested timm family; with it: "
                        "timm's model names matching PATTERN (e.g. 'resnet*'), usable as timm:NAME")
    p.add_argument("--readme", help="with --timm: also rewrite this file's generated block of the table")
    sub.add_parser("methods", help="list compression methods")


def _run_models(args) -> int:
    if args.timm is not None:
        return _run_timm_models(args.timm, args.readme)
    bundled = set(bundled_teachers())
    for name in list_models():
        print(name + ("  (bundled Fashion-MNIST teacher)" if name in bundled else ""))
    return 0


def _run_timm_models(pattern: str, readme: str | None) -> int:

    if pattern:
        names = timm.list_models(pattern)
        if not names:
            raise MimirError(f"timm has no model matching '{pattern}'", "try a wider pattern, e.g. 'resnet*'")
        print("\n".join(f"timm:{n}" for n in names))
        return 0
    rows = family_rows()
    print(format_rows(rows))
    if readme and not update_families_block(readme, rows):
        raise MimirError(f"'{readme}' has no 'mimir models --timm' block",
                         "add the lines '<!-- mimir models --timm: -->' and '<!-- /mimir models --timm -->'")
    print("\nAny timm classifier can be named timm:NAME with --weights FILE (nothing is downloaded); "
          "the families above are tested. 'mimir models --timm PATTERN' lists names.")
    return 0


def _run_methods(args) -> int:
    for name in list_methods():
        m = get_method(name)
        doc = (type(m).__doc__ or sys.modules[type(m).__module__].__doc__ or "").strip().splitlines()[0]
        print(f"{name:<14}{'uses labels  ' if m.needs_labels else 'label-free   '}{doc}")
        if m.options:
            print(f"{'':<27}options: " + ", ".join(
                f"{k}={v}" + (f" ({'|'.join(m.choices[k])})" if k in m.choices else "") +
                (f" in {m.ranges[k]}" if k in m.ranges else "") for k, v in m.options.items()))
        for family, changes in m.family_options.items():
            print(f"{'':<27}for a {family} teacher: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mimir", description="Few-sample network compression (MiR and baselines).")
    parser.add_argument("--version", action="store_true", help="print mimir's version and exit (with -v: also the "
                                                               "versions of Python and the libraries it runs on)")
    parser.add_argument("-v", "--verbose", action="store_true", help="with --version: every library's version")
    sub = parser.add_subparsers(dest="command")
    _add_compress(sub)
    _add_evaluate(sub)
    _add_export(sub)
    _add_latency(sub)
    _add_quantize(sub)
    _add_train_teacher(sub)
    _add_bench(sub)
    _add_report(sub)
    _add_listing(sub)
    return parser


_RUNNERS = {"compress": _run_compress, "evaluate": _run_evaluate, "export": _run_export, "latency": _run_latency, "quantize": _run_quantize,
            "train-teacher": _run_train_teacher,
            "bench": _run_bench, "report": _run_report,
            "models": _run_models, "methods": _run_methods}


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _print_version(verbose: bool) -> int:
    found = library_versions()
    print(f"mimir {found.pop('mimir')}")
    if verbose:
        for name, version in found.items():
            print(f"  {name:<14}{version}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        return _print_version(args.verbose)
    if args.command is None:
        parser.error("a command is required (mimir --help lists them)")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning  # "warning: skipped 2 unreadable ...", no source line
            return _RUNNERS[args.command](args)
    except MimirError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:
        if os.environ.get("RANK", "0") == "0":   # under torchrun, rank 0 wrote it and says so
            print(f"interrupted: checkpoint written to {stop.path}; run the same command with --resume to continue",
                  file=sys.stderr)
        return 130
    except Stopped as stop:   # a grid stopped by a signal: its finished cells are kept
        print(f"stopped by {signal.Signals(stop.signum).name}: every cell was stopped, the finished ones are kept; "
              "the same command continues", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
