"""Compare compression methods on the bundled Fashion-MNIST teachers, on identical samples.

    # issue 2: MiR before vs after pooling
    .venv/bin/python benchmarks/compare.py --methods mir mir-postpool
    # issue 3: every method
    .venv/bin/python benchmarks/compare.py --methods none bp kd fskd cd cd-ft mir mir-postpool practise

Each (method, samples, seed) cell not yet in the results file is run with ``mimir.compress`` and
appended as one JSON line the moment it finishes, so an interrupted run continues where it
stopped. Then mean +- std over seeds is printed per setting, with each method's training time.
PRACTISE chooses which blocks to drop (``--practise-prune``, default blocks:auto:4, which removes
about as many MACs as channels:0.5 does on ResNet-20); every other method uses ``--prune``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import mimir


def _prune_for(method: str, args) -> str:
    return args.practise_prune if method == "practise" else args.prune


def _key(r: dict) -> tuple:
    return r["method"], r["samples"], r["seed"], r["iterations_requested"], r["prune_requested"]


def _rows(path: Path) -> list[dict]:
    """Finished cells; a line cut short by an interruption is ignored (that cell runs again)."""
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def run(args) -> None:
    results = Path(args.results)
    done = {_key(r) for r in _rows(results)}
    for samples in args.samples:
        for seed in args.seeds:
            for method in args.methods:
                prune = _prune_for(method, args)
                if (method, samples, seed, args.iterations, prune) in done:
                    continue
                started = time.perf_counter()
                summary = mimir.compress(args.teacher, samples=samples, seed=seed, prune=prune, method=method,
                                         iterations=args.iterations, progress=False).summary
                summary.update(iterations_requested=args.iterations, prune_requested=prune)
                print(f"{method:<13} samples {samples:<5} seed {seed}: {summary['compressed']['accuracy']:.2f} % "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
                with results.open("a") as f:
                    f.write(json.dumps(summary) + "\n")


def report(args) -> None:
    rows = [r for r in _rows(Path(args.results))
            if r["iterations_requested"] == args.iterations and r["teacher_name"] == args.teacher]
    if not rows:
        print("no results yet")
        return
    teacher = rows[0]["teacher"]["accuracy"]
    print(f"\n{args.teacher} teacher {teacher:.2f} %, {args.iterations} iterations for iterative methods, "
          f"Fashion-MNIST test set (10,000 images); accuracy mean +- std over seeds")
    print(f"{'samples':>7}  {'method':<13}{'prune':<16}{'seeds':>5}{'pruned':>9}{'compressed':>17}"
          f"{'vs teacher':>11}{'MACs':>8}{'train s':>9}{'labels':>7}")
    for samples in args.samples:
        for method in args.methods:
            cell = [r for r in rows if r["samples"] == samples and r["method"] == method
                    and r["prune_requested"] == _prune_for(method, args)]
            if not cell:
                continue
            acc = [r["compressed"]["accuracy"] for r in cell]
            mean, std = statistics.mean(acc), statistics.stdev(acc) if len(acc) > 1 else 0.0
            pruned = statistics.mean(r["pruned"]["accuracy"] for r in cell)
            secs = statistics.mean(r["train_seconds"] for r in cell)
            macs = statistics.mean(r["compressed"]["macs"] for r in cell) / 1e6
            print(f"{samples:>7}  {method:<13}{cell[0]['prune_requested']:<16}{len(cell):>5}{pruned:>8.2f}%"
                  f"{mean:>10.2f} +- {std:<4.2f}{mean - teacher:>+10.2f}{macs:>7.1f}M{secs:>9.0f}"
                  f"{'yes' if cell[0]['used_labels'] else 'no':>7}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="benchmarks/results/methods.jsonl",
                   help="JSON-lines results file (tracked in git, so an unfinished grid resumes anywhere)")
    p.add_argument("--teacher", default="resnet20")
    p.add_argument("--prune", default="channels:0.5")
    p.add_argument("--practise-prune", default="blocks:auto:4")
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
