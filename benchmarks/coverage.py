"""The coverage sweep: every family a user holds, through every stage (:mod:`mimir.bench.coverage`).

    .venv/bin/python benchmarks/coverage.py                 # run what has no row yet (resumable), then render
    .venv/bin/python benchmarks/coverage.py --only 'timm:*' # a subset (fnmatch pattern on the model)
    .venv/bin/python benchmarks/coverage.py --rerun         # run every model again
    .venv/bin/python benchmarks/coverage.py --render        # docs/COVERAGE.md from the results, compared
                                                            # with the expected statuses
    .venv/bin/python benchmarks/coverage.py --select        # rebuild the list of models (timm prefixes,
                                                            # torchvision classifiers), keeping expectations
    .venv/bin/python benchmarks/coverage.py --expect        # the expected statuses := the results

The models and the status each is expected to reach are ``benchmarks/coverage-models.yaml``; the
rows ``benchmarks/results/coverage.jsonl`` (one JSON line per model, the latest counts); the
report ``docs/COVERAGE.md``. Comparing the rows with the expectations names every regression (a
model expected to pass that does not) and every unexpected pass; ``--render`` exits 1 on a
regression. Each model runs in a process of its own, one thread, at most ``--timeout`` seconds,
``--jobs`` at a time. The third-party models need their packages: ``.venv/bin/pip install
efficientnet-pytorch efficientnet-lite-pytorch`` (not dependencies of mimir).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from mimir.bench.coverage import (
    Candidate,
    compare,
    read_rows,
    render,
    summary,
    sweep,
    timm_candidates,
    torchvision_candidates,
)

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "benchmarks" / "coverage-models.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "coverage.jsonl"
DOC = ROOT / "docs" / "COVERAGE.md"

#: the common families the issue names, each by one small model (beside the smallest of each prefix)
COMMON = {
    "ResNet": "timm:resnet18", "ResNeXt": "timm:resnext26ts", "ResNet-D": "timm:resnet18d",
    "RegNet": "timm:regnetx_002", "EfficientNet": "timm:efficientnet_b0", "EfficientNetV2": "timm:efficientnetv2_rw_t",
    "MobileNetV2": "timm:mobilenetv2_050", "MobileNetV3": "timm:mobilenetv3_small_050",
    "ConvNeXt": "timm:convnext_atto", "ConvNeXtV2": "timm:convnextv2_atto", "DenseNet": "timm:densenet121",
    "VGG": "timm:vgg11", "DLA": "timm:dla34", "VoVNet": "timm:ese_vovnet19b_dw", "ViT": "timm:vit_tiny_patch16_224",
    "DeiT": "timm:deit_tiny_patch16_224", "BEiT": "timm:beit_base_patch16_224",
    "Swin": "timm:swin_tiny_patch4_window7_224",
}
#: nn.Modules none of us wrote, from pip packages (pip install efficientnet-pytorch efficientnet-lite-pytorch)
THIRD_PARTY = {"efficientnet-pytorch": "coverage_models:efficientnet_pytorch_b0",
               "efficientnet-lite-pytorch": "coverage_models:efficientnet_lite0"}


def select() -> None:
    """Write the list of models, keeping the expected status of those already listed."""
    old = _models()
    chosen = [Candidate("common", family, model) for family, model in COMMON.items()]
    chosen += timm_candidates() + torchvision_candidates()
    chosen += [Candidate("third-party", package, model) for package, model in THIRD_PARTY.items()]
    seen, entries = set(), []
    for c in chosen:
        if c.model in seen:
            continue
        seen.add(c.model)
        entries.append({"model": c.model, "source": c.source, "group": c.group,
                        "expected": old.get(c.model, {}).get("expected", "unknown")})
    _write_models(entries)
    print(f"{len(entries)} models in {MODELS}")


def _write_models(entries: list[dict]) -> None:
    MODELS.write_text("# written by benchmarks/coverage.py --select; 'expected' by --expect (passed, refused,\n"
                      "# failed or unknown); a regression is a model expected to pass that does not\n"
                      + yaml.safe_dump(entries, sort_keys=False, width=120))


def _models() -> dict[str, dict]:
    if not MODELS.exists():
        return {}
    return {m["model"]: m for m in yaml.safe_load(MODELS.read_text()) or []}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="fnmatch pattern of the models to run, e.g. 'timm:res*'")
    p.add_argument("--rerun", action="store_true", help="run models that have a row already")
    p.add_argument("--timeout", type=int, default=600, help="seconds per model (default 600)")
    p.add_argument("--jobs", type=int, default=2, help="models at a time, one thread each (default 2)")
    p.add_argument("--render", action="store_true", help="only render docs/COVERAGE.md and compare")
    p.add_argument("--select", action="store_true", help="rebuild the list of models")
    p.add_argument("--expect", action="store_true", help="set the expected statuses to the results")
    args = p.parse_args()
    if args.select:
        select()
        return 0
    models = _models()
    if args.expect:
        rows = {r["model"]: r for r in read_rows(RESULTS)}
        for m, entry in models.items():
            entry["expected"] = rows[m]["status"] if m in rows else entry.get("expected", "unknown")
        _write_models(list(models.values()))
        print(f"expected statuses of {len(models)} models set from {RESULTS}")
        return 0
    if not args.render:   # the third-party factories (coverage_models.py) import from this folder
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH")]))
        chosen = [Candidate(m["source"], m["group"], m["model"]) for m in models.values()
                  if args.only is None or fnmatch.fnmatch(m["model"], args.only)]
        started = time.time()
        sweep(chosen, RESULTS, timeout=args.timeout, rerun=args.rerun, jobs=args.jobs)
        print(f"swept {len(chosen)} models in {time.time() - started:.0f} s")
    rows = read_rows(RESULTS)
    DOC.write_text(render(rows, models))
    regressions, surprises = compare(rows, models)
    print("\n".join(summary(rows)))
    print("\n".join(f"REGRESSION {x}" for x in regressions) + "\n".join(f"unexpected pass {x}" for x in surprises))
    print(f"{len(rows)} rows, {dict(Counter(r['status'] for r in rows))}; report {DOC}")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
