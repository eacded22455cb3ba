"""The coverage report: rows against the expected statuses, a summary per group of the goals,
and the table (``docs/COVERAGE.md``)."""

from __future__ import annotations


def compare(rows: list[dict], models: dict[str, dict]) -> tuple[list[str], list[str]]:
    """(regressions, unexpected passes) of ``rows`` against the expected statuses."""
    regressions, surprises = [], []
    for r in rows:
        expected = models.get(r["model"], {}).get("expected", "unknown")
        if expected == "passed" and r["status"] != "passed":
            regressions.append(f"{r['model']}: expected to pass, {r['status']} at {r['stage']}: {r['reason']}")
        elif expected not in ("passed", "unknown") and r["status"] == "passed":
            surprises.append(f"{r['model']}: expected {expected}, passed")
    return regressions, surprises


def _mac(value) -> str:
    return "" if value is None else f"{value / 1e6:.1f}M"


def _ratio(value, whole) -> str:
    return "" if value is None or not whole else f"{value / whole:.2f}"


def _error(value) -> str:
    return "" if value is None else f"{value:.3g}"


def summary(rows: list[dict]) -> list[str]:
    """Passed of tried, per group of the goals."""
    def line(label: str, chosen: list[dict]) -> str:
        passed = sum(r["status"] == "passed" for r in chosen)
        refused = sum(r["status"] == "refused" for r in chosen)
        share = f"{100 * passed / len(chosen):.0f} %" if chosen else "-"
        return f"| {label} | {passed} / {len(chosen)} ({share}) | {refused} | {len(chosen) - passed - refused} |"

    timm_rows = [r for r in rows if r["source"] == "timm"]
    maps = [r for r in rows if len(r.get("feature_shape") or []) == 4]
    return ["| group | passed | refused in one line | failed |", "|---|---:|---:|---:|",
            line("common families (the issue's list, one model each)", [r for r in rows if r["source"] == "common"]),
            line("torchvision classifiers", [r for r in rows if r["source"] == "torchvision"]),
            line("timm name prefixes (smallest model of each)", timm_rows),
            line("models whose pre-pool map is a feature map", maps),
            line("third-party nn.Modules", [r for r in rows if r["source"] == "third-party"]),
            line("all", rows)]


def render(rows: list[dict], models: dict[str, dict]) -> str:
    versions = next((r["versions"] for r in rows if r.get("versions")), {})
    regressions, surprises = compare(rows, models)
    order = {m: i for i, m in enumerate(models)}
    rows = sorted(rows, key=lambda r: order.get(r["model"], len(order)))
    lines = ["# Coverage: every family a user holds, through every stage", "",
             "Written by `.venv/bin/python benchmarks/coverage.py --render` from "
             "`benchmarks/results/coverage.jsonl`; do not edit by hand. Each model: random weights at its own "
             "input size, one thread, a process of its own; stages build (split) -> prune (channels:0.5) -> "
             "scheme (the family's own: one residual block dropped, or one block's attention) -> mimic (a short "
             "MiR run lowers the held-out pre-pool error) -> save (.safetensors, reloaded identically) -> onnx "
             "(ONNX Runtime matches PyTorch) -> int8 (quantized, runs). MACs are counted by operator.", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".", "", *summary(rows), ""]
    if regressions or surprises:
        lines += ["Against `benchmarks/coverage-models.yaml`: "
                  + "; ".join([f"{len(regressions)} regression(s)"] * bool(regressions)
                              + [f"{len(surprises)} unexpected pass(es)"] * bool(surprises)) + ".", ""]
        lines += [f"- {x}" for x in regressions + surprises] + [""]
    lines += ["| source | group | model | input | status | stage | MACs | channels:0.5 | scheme | scheme MACs | "
              "feature error before -> after | ONNX max error | s | reason |",
              "|---|---|---|---:|---|---|---:|---:|---|---:|---|---:|---:|---|"]
    for r in rows:
        errors = ("" if r.get("feature_error_before") is None else
                  f"{_error(r['feature_error_before'])} -> {_error(r.get('feature_error_after'))}")
        reason = (r.get("reason") or "").replace("|", "\\|")
        lines.append(f"| {r['source']} | {r['group']} | `{r['model']}` | {r.get('input_size') or ''} | {r['status']} | "
                     f"{r['stage']} | {_mac(r.get('macs'))} | {_ratio(r.get('macs_pruned'), r.get('macs'))} | "
                     f"{r.get('scheme') or ''} | {_ratio(r.get('macs_scheme'), r.get('macs'))} | {errors} | "
                     f"{_error(r.get('onnx_max_error'))} | {r.get('seconds', 0):.0f} | {reason} |")
    return "\n".join(lines) + "\n"
