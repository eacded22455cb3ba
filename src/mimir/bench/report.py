"""Turning a results file into what people read: a Markdown table (mean +- std over seeds), PNG plots
(accuracy vs number of samples, one line per method; accuracy vs MACs) and which method won where."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mimir.bench.runner import read_results


@dataclass(frozen=True)
class Row:
    teacher: str
    prune: str
    samples: int
    method: str
    seeds: int
    mean: float | None
    std: float
    teacher_acc: float | None
    pruned_acc: float | None
    macs: float
    params: float
    teacher_macs: float
    train_seconds: float
    used_labels: bool
    iterations: int


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def aggregate(records: list[dict]) -> list[Row]:
    """One row per (teacher, prune, samples, method): mean +- std over the finished seeds (latest
    record per cell wins if a cell was run twice)."""
    latest: dict[str, dict] = {}
    for r in records:
        if r.get("status") == "ok":
            latest[r["key"]] = r
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in latest.values():
        c = r["config"]
        groups[(c["teacher"], c["prune"], c["samples"], c["method"])].append(r)
    rows = []
    for (teacher, prune, samples, method), cell in groups.items():
        s = [r["summary"] for r in cell]
        acc = [x["compressed"]["accuracy"] for x in s if x["compressed"]["accuracy"] is not None]
        rows.append(Row(
            teacher, prune, samples, method, len(cell),
            statistics.mean(acc) if acc else None, statistics.stdev(acc) if len(acc) > 1 else 0.0,
            _mean(x["teacher"]["accuracy"] for x in s), _mean(x["pruned"]["accuracy"] for x in s),
            statistics.mean(x["compressed"]["macs"] for x in s), statistics.mean(x["compressed"]["params"] for x in s),
            statistics.mean(x["teacher"]["macs"] for x in s), statistics.mean(x["train_seconds"] for x in s),
            bool(s[0]["used_labels"]), int(cell[0]["config"]["iterations"])))
    return sorted(rows, key=lambda r: (r.teacher, r.prune, r.samples, -(r.mean or 0)))


def _acc(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def markdown_table(rows: list[Row]) -> str:
    lines = ["| teacher | prune | samples | method | accuracy % (mean +- std) | seeds | vs teacher | pruned % | "
             "MACs | params | train s | labels |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        gap = "n/a" if r.mean is None or r.teacher_acc is None else f"{r.mean - r.teacher_acc:+.2f}"
        lines.append(f"| {r.teacher} | {r.prune} | {r.samples} | {r.method} | {_acc(r.mean)} +- {r.std:.2f} | "
                     f"{r.seeds} | {gap} | {_acc(r.pruned_acc)} | {r.macs / 1e6:.1f}M ({100 * r.macs / r.teacher_macs:.0f} %) | "
                     f"{r.params / 1e6:.3f}M | {r.train_seconds:.0f} | {'yes' if r.used_labels else 'no'} |")
    return "\n".join(lines)


def winners(rows: list[Row]) -> list[str]:
    """One sentence per (teacher, prune, samples): the best method and its margin over the runner-up."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if r.mean is not None and r.method != "none":
            groups[(r.teacher, r.prune, r.samples)].append(r)
    out = []
    for (teacher, prune, samples), group in sorted(groups.items()):
        group.sort(key=lambda r: -r.mean)
        best = group[0]
        text = f"{teacher}, {prune}, {samples} samples: **{best.method}** {best.mean:.2f} %"
        if len(group) > 1:
            second = group[1]
            margin = best.mean - second.mean
            within = " (within one std: not a clear win)" if margin <= max(best.std, second.std) else ""
            text += f", {margin:.2f} points ahead of {second.method}{within}"
        out.append(text)
    return out


def plot(rows: list[Row], out_dir: Path) -> list[Path]:
    """accuracy vs samples (one figure per teacher x prune) and accuracy vs MACs; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    setups = sorted({(r.teacher, r.prune) for r in rows})
    methods = sorted({r.method for r in rows})
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    for teacher, prune in setups:
        sub = [r for r in rows if (r.teacher, r.prune) == (teacher, prune) and r.mean is not None]
        if not sub:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method in sorted({r.method for r in sub}):
            pts = sorted((r.samples, r.mean, r.std) for r in sub if r.method == method)
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                        capsize=3, label=method, color=colors[method])
        if sub[0].teacher_acc is not None:
            ax.axhline(sub[0].teacher_acc, color="black", linestyle="--", linewidth=1, label="teacher")
        ax.set_xscale("log")
        ax.set_xticks(sorted({r.samples for r in sub}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("number of few samples")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"{teacher}, {prune}: accuracy vs samples")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        path = out_dir / f"acc_vs_samples_{teacher}_{prune.replace(':', '-').replace(',', '+')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in methods:
        pts = [(r.macs / 1e6, r.mean) for r in rows if r.method == method and r.mean is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=method, color=colors[method], alpha=0.8)
    for teacher in sorted({r.teacher for r in rows}):
        t = next(r for r in rows if r.teacher == teacher)
        if t.teacher_acc is not None:
            ax.scatter([t.teacher_macs / 1e6], [t.teacher_acc], marker="*", s=160, color="black")
            ax.annotate(f"{teacher} teacher", (t.teacher_macs / 1e6, t.teacher_acc), fontsize=8,
                        textcoords="offset points", xytext=(-12, -4), ha="right", va="top")
    ax.margins(x=0.08, y=0.08)
    ax.set_xlabel("MACs per image (millions)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("accuracy vs MACs (every setting, mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path = out_dir / "acc_vs_macs.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def write_report(results: str | Path, out_dir: str | Path, command: str = "") -> Path:
    """Write ``RESULTS.md`` and its plots into ``out_dir``; returns the Markdown path."""
    records = read_results(results)
    ok = [r for r in records if r.get("status") == "ok"]
    rows = aggregate(records)
    out_dir = Path(out_dir)
    plots = plot(rows, out_dir / "plots") if rows else []
    compute = sum(r["wall_seconds"] for r in ok)
    finished = sorted(r["finished_at"] for r in ok)
    versions = ok[-1]["versions"] if ok else {}
    iterations = sorted({r.iterations for r in rows})
    lines = ["# Benchmark results", "",
             f"Generated by `mimir report` on {datetime.now().strftime('%Y-%m-%d')} from `{results}` "
             f"({len(ok)} finished cells, {len(records) - len(ok)} failed or superseded lines)."]
    if command:
        lines += ["", f"Grid command: `{command}`"]
    if finished:
        lines += ["", f"Cells finished between {finished[0]} and {finished[-1]} (UTC); "
                      f"{compute / 3600:.2f} hours of cell wall time in all; iterations per iterative method: "
                      f"{', '.join(map(str, iterations))}; versions: "
                      + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    lines += ["", "Accuracy is top-1 on the evaluation set, mean +- std over seeds; MACs are multiply-accumulates "
                  "per image (and the share of the teacher's); `train s` is the method's own time per cell.", "",
              "## Who won where", ""] + [f"- {w}" for w in winners(rows)] + ["", "## Table", "", markdown_table(rows),
                                                                              "", "## Plots", ""]
    lines += [f"![{p.stem}](plots/{p.name})" for p in plots]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "RESULTS.md"
    path.write_text("\n".join(lines) + "\n")
    return path
