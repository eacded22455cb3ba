"""Issue-2 benchmark: MiR before vs after global pooling on the bundled ResNet-20 teacher.

    .venv/bin/python benchmarks/mir_pooling.py --results runs/mir_pooling.jsonl

Runs every (samples, seed, method) cell not yet in the results file (one JSON line per finished
cell, so an interrupted run continues where it stopped), then prints mean +- std per setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import mimir


def run(args) -> None:
    results = Path(args.results)
    done = set()
    if results.exists():
        for line in results.read_text().splitlines():
            r = json.loads(line)
            done.add((r["samples"], r["seed"], r["method"], r["iterations"]))
    for samples in args.samples:
        for seed in args.seeds:
            for method in args.methods:
                key = (samples, seed, method, args.iterations)
                if key in done:
                    continue
                started = time.perf_counter()
                summary = mimir.compress(args.teacher, samples=samples, seed=seed, prune=args.prune, method=method,
                                         iterations=args.iterations, progress=False).summary
                print(f"{method:<13} samples {samples:<5} seed {seed}: {summary['compressed']['accuracy']:.2f} % "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
                with results.open("a") as f:
                    f.write(json.dumps(summary) + "\n")


def report(args) -> None:
    rows = [json.loads(line) for line in Path(args.results).read_text().splitlines()]
    rows = [r for r in rows if r["iterations"] == args.iterations]
    teacher = rows[0]["teacher"]["accuracy"]
    print(f"\nResNet-20 teacher {teacher:.2f} %, prune {args.prune}, {args.iterations} iterations, "
          f"Fashion-MNIST test set (10,000 images); mean +- std over seeds")
    print(f"{'samples':>8} {'method':<13}{'seeds':>6}{'pruned':>10}{'compressed':>18}{'gap to teacher':>16}{'train s':>9}")
    for samples in args.samples:
        for method in args.methods:
            cell = [r for r in rows if r["samples"] == samples and r["method"] == method]
            if not cell:
                continue
            acc = [r["compressed"]["accuracy"] for r in cell]
            mean, std = statistics.mean(acc), statistics.stdev(acc) if len(acc) > 1 else 0.0
            pruned = statistics.mean(r["pruned"]["accuracy"] for r in cell)
            secs = statistics.mean(r["train_seconds"] for r in cell)
            print(f"{samples:>8} {method:<13}{len(cell):>6}{pruned:>9.2f}%{mean:>11.2f} +- {std:.2f}"
                  f"{mean - teacher:>+15.2f}{secs:>9.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="runs/mir_pooling.jsonl")
    p.add_argument("--teacher", default="resnet20")
    p.add_argument("--prune", default="channels:0.5")
    p.add_argument("--samples", type=int, nargs="+", default=[50, 500])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--methods", nargs="+", default=["mir", "mir-postpool"])
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        run(args)
    report(args)


if __name__ == "__main__":
    main()
