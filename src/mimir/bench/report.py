"""Turning a results file into what people read: a Markdown table (mean +- std over seeds), PNG plots
(accuracy vs number of samples, one line per method; accuracy vs MACs) and which method won where."""

from __future__ import annotations

import json
import statistics
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
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
    cell_seconds: float
    used_labels: bool
    iterations: int
    setting: str = ""   # the recipe fields that tell this group from others with the same teacher/prune/samples/method
    recipe: dict = field(default_factory=dict, compare=False)   # the group's recipe, seed left out


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


_SHOWN = ("teacher", "prune", "samples", "method")
_COMPARED = ("teacher", "prune", "samples")
_SOURCES = ("data", "extra_data")


def recipe_of(record: dict) -> dict:
    """The full recipe of a result line, every field present (lines written before recipes were
    recorded hold the benchmark cell's fields under ``config``; the rest take their defaults)."""
    from mimir.recipe import recipe_defaults

    given = record.get("recipe") or record.get("config") or {}
    return {**recipe_defaults(), **given}


def _setting(recipe: dict, varying: list[str]) -> str:
    return ", ".join(f"{k}={json.dumps(recipe[k], sort_keys=True) if isinstance(recipe[k], dict) else recipe[k]}"
                     for k in varying)


def aggregate(records: list[dict]) -> list[Row]:
    """One row per recipe except the seed: mean +- std over the finished seeds (latest record per
    cell wins if a cell was run twice). Cells whose recipes differ in anything but the seed
    (iterations, options, device, ...) are never averaged together; the fields that differ are
    named in the row's ``setting``, and so are ``data`` and ``extra_data`` wherever the file holds
    more than one source of images."""
    latest: dict[str, dict] = {}
    for r in records:
        if r.get("status") == "ok":
            latest[r["key"]] = r
    groups: dict[str, list[dict]] = defaultdict(list)
    recipes: dict[str, dict] = {}
    for r in latest.values():
        recipe = {k: v for k, v in recipe_of(r).items() if k != "seed"}
        key = json.dumps(recipe, sort_keys=True)
        groups[key].append(r)
        recipes[key] = recipe
    # a field is named in ``setting`` where it tells apart groups of one comparison (teacher, prune,
    # samples: the methods compared in a row of winners) that the table's own columns do not
    shown: dict[tuple, list[dict]] = defaultdict(list)
    for rec in recipes.values():
        shown[tuple(rec[k] for k in _COMPARED)].append(rec)
    fields = sorted({k for rec in recipes.values() for k in rec} - set(_SHOWN))

    def differ(k: str, recs) -> bool:
        return len({json.dumps(rec.get(k), sort_keys=True) for rec in recs}) > 1

    # where the images came from is named in every row once the file holds more than one source
    sources = [k for k in _SOURCES if differ(k, recipes.values())]
    varying = {s: [k for k in fields if k in sources or differ(k, recs)] for s, recs in shown.items()}
    rows = []
    for key, cell in groups.items():
        c = recipes[key]
        s = [r["summary"] for r in cell]
        acc = [x["compressed"]["accuracy"] for x in s if x["compressed"]["accuracy"] is not None]
        rows.append(Row(
            c["teacher"], c["prune"], c["samples"], c["method"], len(cell),
            statistics.mean(acc) if acc else None, statistics.stdev(acc) if len(acc) > 1 else 0.0,
            _mean(x["teacher"]["accuracy"] for x in s), _mean(x["pruned"]["accuracy"] for x in s),
            statistics.mean(x["compressed"]["macs"] for x in s), statistics.mean(x["compressed"]["params"] for x in s),
            statistics.mean(x["teacher"]["macs"] for x in s), statistics.mean(x["train_seconds"] for x in s),
            statistics.mean(r["wall_seconds"] for r in cell), bool(s[0]["used_labels"]),
            int(c["iterations"]), _setting(c, varying[tuple(c[k] for k in _COMPARED)]), c))
    return sorted(rows, key=lambda r: (r.teacher, r.prune, r.samples, r.setting, -(r.mean or 0)))


def _acc(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def markdown_table(rows: list[Row]) -> str:
    with_setting = any(r.setting for r in rows)
    extra = "setting | " if with_setting else ""
    lines = [f"| teacher | prune | samples | method | {extra}accuracy % (mean +- std) | seeds | vs teacher | "
             "pruned % | MACs | params | train s | cell s | labels |",
             "|---|---|---:|---|" + ("---|" if with_setting else "") + "---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        gap = "n/a" if r.mean is None or r.teacher_acc is None else f"{r.mean - r.teacher_acc:+.2f}"
        macs = f"{r.macs / 1e6:.1f}M ({100 * r.macs / r.teacher_macs:.0f} %)"
        setting = f"{r.setting} | " if with_setting else ""
        lines.append(f"| {r.teacher} | {r.prune} | {r.samples} | {r.method} | {setting}{_acc(r.mean)} +- {r.std:.2f} | "
                     f"{r.seeds} | {gap} | {_acc(r.pruned_acc)} | {macs} | {r.params / 1e6:.3f}M | "
                     f"{r.train_seconds:.0f} | {r.cell_seconds:.0f} | {'yes' if r.used_labels else 'no'} |")
    return "\n".join(lines)


def winners(rows: list[Row]) -> list[str]:
    """One sentence per (teacher, prune, samples, setting) where at least two methods ran: the best
    method and its margin over the runner-up (a lone method, e.g. one ablation variant, won nothing)."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if r.mean is not None and r.method != "none":
            groups[(r.teacher, r.prune, r.samples, r.setting)].append(r)
    out = []
    for (teacher, prune, samples, setting), group in sorted(groups.items()):
        if len(group) < 2:
            continue
        best, second = sorted(group, key=lambda r: -r.mean)[:2]
        where = f" ({setting})" if setting else ""
        margin = best.mean - second.mean
        within = " (within one std: not a clear win)" if margin <= max(best.std, second.std) else ""
        out.append(f"{teacher}, {prune}, {samples} samples{where}: **{best.method}** {best.mean:.2f} %, "
                   f"{margin:.2f} points ahead of {second.method}{within}")
    return out


ABLATED = ("mir", "mir-plus")   # methods whose options are ingredients, measured against plain mir


def _data_of(recipe: dict) -> str:
    extra = f" + {Path(recipe['extra_data']).name}" if recipe.get("extra_data") else ""
    return f"{recipe['data']}{extra}"


def _ingredients(row: Row) -> str:
    from mimir.methods import get_method

    options = row.recipe.get("options") or {}
    if row.method not in ABLATED or row.method == "mir":
        return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    plain = get_method("mir").options
    changed = {k: v for k, v in get_method(row.method).options.items() if plain[k] != v}
    return f"{row.method} (" + ", ".join(f"{k}={v}" for k, v in sorted({**changed, **options}.items())) + ")"


def ablation(rows: list[Row]) -> list[str]:
    """Table lines: every ``mir`` with options and every ``mir-plus`` next to plain ``mir`` with the
    same recipe otherwise (teacher, pruning, samples, data, iterations); empty when there is none."""
    def context(r: Row) -> str:
        return json.dumps({k: v for k, v in r.recipe.items() if k not in ("method", "options")}, sort_keys=True)

    plain = {context(r): r for r in rows if r.method == "mir" and not r.recipe.get("options") and r.mean is not None}
    pairs = [(r, plain[context(r)]) for r in rows if r.method in ABLATED and r.mean is not None
             and (r.method != "mir" or r.recipe.get("options")) and context(r) in plain]
    if not pairs:
        return []
    lines = ["| teacher | prune | samples | data | iterations | ingredients | accuracy % | mir % | gain | seeds | "
             "train s | mir train s |", "|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r, base in sorted(pairs, key=lambda p: (p[0].teacher, p[0].prune, p[0].samples, _data_of(p[0].recipe),
                                                 p[0].iterations, -(p[0].mean - p[1].mean))):
        lines.append(f"| {r.teacher} | {r.prune} | {r.samples} | {_data_of(r.recipe)} | {r.iterations} | "
                     f"{_ingredients(r)} | {r.mean:.2f} +- {r.std:.2f} | {base.mean:.2f} +- {base.std:.2f} | "
                     f"{r.mean - base.mean:+.2f} | {r.seeds} | {r.train_seconds:.0f} | {base.train_seconds:.0f} |")
    return lines


SPAN = 20.0  # points shown below the best teacher; results further down are named under the axis


def _y_range(rows: list[Row]) -> tuple[float, float]:
    """Limits that keep the differences between the good methods readable: from the lowest result
    (or ``SPAN`` points under the best teacher, whichever is higher) to just above the teacher."""
    highs = [r.mean + r.std for r in rows] + [r.teacher_acc for r in rows if r.teacher_acc is not None]
    low = max(min(r.mean - r.std for r in rows), max(highs) - SPAN)
    margin = 0.05 * max(max(highs) - low, 1.0)
    return low - margin, max(highs) + margin


def _below_note(rows: list[Row], low: float) -> str:
    """'below the axis: none 11.73 %, cd 29.14-30.26 %' for the results the y range leaves out."""
    below: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.mean < low:
            below[r.method].append(r.mean)
    parts = [f"{m} {min(v):.2f} %" if round(min(v), 2) == round(max(v), 2) else f"{m} {min(v):.2f}-{max(v):.2f} %"
             for m, v in sorted(below.items())]
    return "below the axis: " + ", ".join(parts) if parts else ""


def _decorate(ax, rows: list[Row], xlabel: str, handles: list | None = None, legend_below: bool = False) -> None:
    """Y range, labels and grid; the legend in the lower right, or under the axes (``legend_below``)
    where the lowest points sit at the left and right edges and a legend inside would hide them."""
    low, high = _y_range(rows)
    ax.set_ylim(low, high)
    note = _below_note(rows, low)
    ax.set_xlabel(xlabel + (f"\n{note}" if note else ""))
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    if legend_below:
        ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    else:
        ax.legend(handles=handles, fontsize=8, ncol=2, loc="lower right")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _samples_plot_name(teacher: str, prune: str) -> str:
    return f"acc_vs_samples_{teacher}_{prune.replace(':', '-').replace(',', '+')}.png"


def _time_groups(rows: list[Row]) -> dict[str, list[Row]]:
    """Plot name -> rows, for each (teacher, prune, samples, data) where a method ran with several
    iteration budgets: accuracy against training time, so a user can choose a schedule."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if r.mean is not None and r.method != "none":
            groups[(r.teacher, r.prune, r.samples, _data_of(r.recipe))].append(r)
    out = {}
    for (teacher, prune, samples, data), sub in sorted(groups.items()):
        budgets = defaultdict(set)
        for r in sub:
            budgets[(r.method, _ingredients(r))].add(r.iterations)
        if any(len(b) > 1 for b in budgets.values()):
            tag = f"{teacher}_{prune}_{samples}_{Path(data).name}".replace(":", "-").replace(",", "+").replace(" ", "")
            out[f"acc_vs_time_{tag}.png"] = sub
    return out


def _by_method(sub: list[Row]) -> dict[tuple[str, str], list[Row]]:
    """(method, ingredients) -> its rows, in label order: one line of a time plot or table."""
    lines: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in sub:
        lines[(r.method, _ingredients(r))].append(r)
    return dict(sorted(lines.items()))


def _method_label(method: str, ingredients: str) -> str:
    """'mir', 'mir (mix=cutmix)' or 'mir-plus (augment=..., ...)'."""
    if ingredients.startswith(method):
        return ingredients
    return f"{method} ({ingredients})" if ingredients else method


def time_table(rows: list[Row]) -> list[str]:
    """Table lines: accuracy (and the method's training seconds) per iteration budget, one line per
    method in each setting where some method ran with several budgets; empty when there is none."""
    groups = _time_groups(rows)
    if not groups:
        return []
    budgets = sorted({r.iterations for sub in groups.values() for r in sub})
    lines = ["| teacher | prune | samples | data | method | " + " | ".join(f"{b} its" for b in budgets) + " |",
             "|---|---|---:|---|---|" + "---:|" * len(budgets)]
    for sub in groups.values():
        r0 = sub[0]
        for label, line in _by_method(sub).items():
            at = {r.iterations: r for r in line}
            cells = [f"{at[b].mean:.2f} % ({at[b].train_seconds:.0f} s)" if b in at else "-" for b in budgets]
            lines.append(f"| {r0.teacher} | {r0.prune} | {r0.samples} | {_data_of(r0.recipe)} | "
                         f"{_method_label(*label)} | " + " | ".join(cells) + " |")
    return lines


def plot_names(rows: list[Row]) -> list[str]:
    """The file names :func:`plot` writes for ``rows``, in order."""
    rows = [r for r in rows if r.mean is not None]
    if not rows:
        return []
    return ([_samples_plot_name(t, p) for t, p in sorted({(r.teacher, r.prune) for r in rows})] + ["acc_vs_macs.png"]
            + list(_time_groups(rows)))


def plot(rows: list[Row], out_dir: Path) -> list[Path]:
    """Accuracy vs samples (one figure per teacher x prune, a line per method) and accuracy vs MACs
    (a panel per sample count shared by several settings; colour = method, marker = pruning
    scheme); returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in rows if r.mean is not None]  # cells run without evaluation data have nothing to plot
    if not rows:
        return []
    paths = []
    methods = sorted({r.method for r in rows})
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    for teacher, prune in sorted({(r.teacher, r.prune) for r in rows}):
        sub = [r for r in rows if (r.teacher, r.prune) == (teacher, prune)]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method, setting in sorted({(r.method, r.setting) for r in sub}):
            pts = sorted((r.samples, r.mean, r.std) for r in sub if (r.method, r.setting) == (method, setting))
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                        capsize=3, label=f"{method} ({setting})" if setting else method, color=colors[method])
        if sub[0].teacher_acc is not None:
            ax.axhline(sub[0].teacher_acc, color="black", linestyle="--", linewidth=1, label="teacher")
        ax.set_xscale("log")
        ax.set_xticks(sorted({r.samples for r in sub}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlim(min(r.samples for r in sub) / 1.3, max(r.samples for r in sub) * 1.3)
        ax.set_title(f"{teacher}, {prune}: accuracy vs samples (mean +- std over seeds)")
        _decorate(ax, sub, "number of few samples (log scale)")
        paths.append(_save(fig, out_dir / _samples_plot_name(teacher, prune)))
        plt.close(fig)

    settings_per_count = defaultdict(set)
    for r in rows:
        settings_per_count[r.samples].add((r.teacher, r.prune))
    counts = sorted(n for n, s in settings_per_count.items() if len(s) > 1) or sorted(settings_per_count)
    schemes = sorted({r.prune for r in rows})
    markers = dict(zip(schemes, "osD^v<>ph*"))
    fig, axes = plt.subplots(1, len(counts), figsize=(6.5 * len(counts), 5), squeeze=False)
    for ax, count in zip(axes[0], counts):
        sub = [r for r in rows if r.samples == count]
        for r in sub:
            ax.scatter([r.macs / 1e6], [r.mean], marker=markers.get(r.prune, "o"), color=colors[r.method],
                       s=45, alpha=0.85, edgecolors="none")
        for teacher in sorted({r.teacher for r in sub}):
            t = next(r for r in sub if r.teacher == teacher)
            if t.teacher_acc is not None:
                ax.scatter([t.teacher_macs / 1e6], [t.teacher_acc], marker="*", s=160, color="black", zorder=3)
                ax.annotate(f"{teacher} teacher", (t.teacher_macs / 1e6, t.teacher_acc), fontsize=8,
                            textcoords="offset points", xytext=(-8, 6), ha="right")
        macs = [r.macs for r in sub] + [r.teacher_macs for r in sub]
        log_x = max(macs) > 4 * min(macs)  # several teachers: keep the small ones readable
        if log_x:
            ax.set_xscale("log")
        ax.margins(x=0.1)
        handles = [Line2D([], [], linestyle="", marker="o", color=colors[m], label=m)
                   for m in sorted({r.method for r in sub})]
        handles += [Line2D([], [], linestyle="", marker=markers.get(p, "o"), color="gray", label=p)
                    for p in sorted({r.prune for r in sub})]
        ax.set_title(f"{count} samples: accuracy vs MACs (mean over seeds)")
        _decorate(ax, sub, "MACs per image (millions" + (", log scale)" if log_x else ")"), handles)
    paths.append(_save(fig, out_dir / "acc_vs_macs.png"))
    plt.close(fig)
    for name, sub in _time_groups(rows).items():
        fig, ax = plt.subplots(figsize=(7, 5.5))
        for label, line in _by_method(sub).items():
            pts = sorted((r.train_seconds, r.mean, r.std, r.iterations) for r in line)
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                        label=_method_label(*label))
            for t, acc, _, its in pts:
                ax.annotate(str(its), (t, acc), fontsize=7, textcoords="offset points", xytext=(4, -10))
        if sub[0].teacher_acc is not None:
            ax.axhline(sub[0].teacher_acc, color="black", linestyle="--", linewidth=1, label="teacher")
        ax.set_xscale("log")
        for formatter in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
            formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False))  # 200, 300 rather than 2x10^2
        ax.margins(x=0.08)
        r0 = sub[0]
        ax.set_title(f"{r0.teacher}, {r0.prune}, {r0.samples} samples, {_data_of(r0.recipe)}:\n"
                     "accuracy vs training time (labels: iterations)", fontsize=10)
        _decorate(ax, sub, "training seconds per run (log scale)", legend_below=True)
        paths.append(_save(fig, out_dir / name))
        plt.close(fig)
    return paths


def busy_seconds(records: list[dict]) -> float:
    """Wall-clock seconds during which at least one cell was running: the union of the cells'
    ``[finished_at - wall_seconds, finished_at]`` intervals, so gaps between sessions do not count
    and parallel workers are not counted twice."""
    ends = [datetime.fromisoformat(r["finished_at"]).timestamp() for r in records]
    spans = sorted((end - r["wall_seconds"], end) for r, end in zip(records, ends))
    total = 0.0
    merged: list[float] = []  # the [start, end] of the run of overlapping cells being merged
    for start, end in spans:
        if merged and start <= merged[1]:
            merged[1] = max(merged[1], end)
            continue
        total += merged[1] - merged[0] if merged else 0.0
        merged = [start, end]
    return total + (merged[1] - merged[0] if merged else 0.0)


def _cell_minutes(ok: list[dict]) -> str:
    minutes = sorted(r["wall_seconds"] / 60 for r in ok)
    return (f"cells took {minutes[0]:.1f} to {minutes[-1]:.1f} minutes each "
            f"(median {statistics.median(minutes):.1f})")


def _busy(ok: list[dict]) -> str:
    timed = all("T" in r["finished_at"] for r in ok)  # lines converted from older runs may hold only a date
    return (f"{busy_seconds(ok) / 3600:.2f} hours of wall-clock time with cells running" if timed
            else "wall-clock time unknown (some cells record only a date)")


def render_markdown(records: list[dict], results: str, command: str = "") -> str:
    """The text of ``RESULTS.md``: a function of the result lines alone (its date is the last
    cell's), so regenerating it from the same file gives the same text."""
    ok = [r for r in records if r.get("status") == "ok"]
    rows = aggregate(records)
    compute = sum(r["wall_seconds"] for r in ok)
    finished = sorted(r["finished_at"] for r in ok)
    versions = ok[-1]["versions"] if ok else {}
    commits = sorted({r.get("commit", "unknown") for r in ok})
    devices = sorted({r.get("device") or r.get("summary", {}).get("device") or "unrecorded" for r in ok})
    iterations = sorted({r.iterations for r in rows})
    lines = ["# Benchmark results", "",
             f"Generated by `mimir report` from `{results}` ({len(ok)} finished cells, "
             f"{len(records) - len(ok)} failed or superseded lines)."]
    if command:
        lines += ["", f"Grid command: `{command}`"]
    if finished:
        lines += ["", f"Cells finished between {finished[0]} and {finished[-1]} (UTC); {_busy(ok)} "
                      f"({compute / 3600:.2f} hours of cell time summed over parallel workers); {_cell_minutes(ok)}; "
                      f"iterations per iterative method: {', '.join(map(str, iterations))}; code: "
                      f"{', '.join(commits)}; devices: {'; '.join(devices)}; versions: "
                      + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    lines += ["", "Accuracy is top-1 on the evaluation set, mean +- std over seeds; cells are grouped by their whole "
                  "recipe except the seed (a `setting` column names what else differs, when anything does). MACs "
                  "are multiply-accumulates per image (and the share of the teacher's); `train s` is the method's "
                  "own time per cell (mean over seeds), `cell s` the whole cell's wall time (loading, pruning, "
                  "training, evaluation).", "",
              "## Who won where", ""] + [f"- {w}" for w in winners(rows)] + ["", "## Table", "", markdown_table(rows)]
    ablated = ablation(rows)
    if ablated:
        lines += ["", "## Ablation: what each ingredient adds to MiR", "",
                  "Each `mir` with options, and each `mir-plus`, against plain `mir` with the same recipe otherwise "
                  "(same samples, data, pruning and iterations); `gain` is the difference of the means.", ""] + ablated
    timed = time_table(rows)
    if timed:
        lines += ["", "## Accuracy against training time", "",
                  "Where a method ran with several iteration budgets: mean accuracy over seeds and, in brackets, "
                  "the method's own training seconds per run (the `train s` column above), so a schedule can be "
                  "chosen for the time it costs.", ""] + timed
    shown = synthetic_sets(records)
    if shown:
        lines += ["", "## Synthesised images", "",
                  "What `--data synthetic:N` made from each teacher alone (the first 64 images of the first seed's "
                  "set; one class per image in turn, no real image involved):", ""]
        lines += [f"![{Path(name).stem}](plots/{name})" for name in shown]
    lines += ["", "## Plots", ""]
    lines += [f"![{Path(name).stem}](plots/{name})" for name in plot_names(rows)]
    return "\n".join(lines) + "\n"


def synthetic_sets(records: list[dict]) -> dict[str, dict]:
    """PNG name -> the result line it shows, one per teacher and ``synthetic:N`` (the first seed)."""
    from mimir.data.synthetic import parse_synthetic

    sets: dict[str, dict] = {}
    seen = set()
    for r in sorted((r for r in records if r.get("status") == "ok"), key=lambda r: recipe_of(r)["seed"]):
        c = recipe_of(r)
        n = parse_synthetic(c["data"])
        if n is not None and (c["teacher"], c["weights"], c["data"]) not in seen:
            seen.add((c["teacher"], c["weights"], c["data"]))
            sets[f"synthetic_{c['teacher']}_{n}_seed{c['seed']}.png"] = r
    return sets


def plot_synthetic(records: list[dict], out_dir: Path, count: int = 64) -> list[Path]:
    """A grid of the synthesised images of :func:`synthetic_sets`: the set the cells trained on,
    from mimir's synthesis cache when the grid ran on this machine, otherwise synthesised again
    with the cell's teacher, input settings, seed and kind of device (the same images; a grid run
    on a GPU and drawn where there is none is synthesised on the CPU, with a warning)."""
    import torch
    from PIL import Image

    from mimir.data.synthetic import parse_synthetic, synthetic_images
    from mimir.recipe import Recipe
    from mimir.resolve import load_teacher

    paths = []
    for name, record in synthetic_sets(records).items():
        r = Recipe.from_dict(recipe_of(record))
        model, config = load_teacher(r.teacher, r.weights, r.feature_layer, r.data_config, r.input_settings())
        ran_on = str((record.get("summary") or {}).get("device", "cpu")).split()[0].partition(":")[0]
        here = "cuda" if ran_on == "cuda" and torch.cuda.is_available() else "cpu"
        if here != ran_on:
            warnings.warn(f"{name}: the cells synthesised their images on {ran_on}; drawn from a new synthesis on "
                          f"the CPU, which may differ slightly")
        images = synthetic_images(model.to(here), config, parse_synthetic(r.data), r.seed,
                                  progress=False).images[:count].cpu()
        side = int(len(images) ** 0.5 + 0.999)
        n, c, h, w = images.shape
        canvas = torch.zeros(c, side * (h + 2), side * (w + 2), dtype=torch.uint8)
        for i, img in enumerate(images):
            y, x = divmod(i, side)
            canvas[:, y * (h + 2) + 1:y * (h + 2) + 1 + h, x * (w + 2) + 1:x * (w + 2) + 1 + w] = img
        array = canvas.permute(1, 2, 0).squeeze(-1).numpy()
        picture = Image.fromarray(array).resize((array.shape[1] * 3, array.shape[0] * 3), Image.NEAREST)
        out_dir.mkdir(parents=True, exist_ok=True)
        picture.save(out_dir / name)
        paths.append(out_dir / name)
    return paths


def readme_block(records: list[dict], name: str) -> str:
    """What the README says about a results file, between markers that :func:`update_readme` replaces."""
    ok = [r for r in records if r.get("status") == "ok"]
    rows = aggregate(records)
    body = [f"<!-- mimir report {name}: generated by `mimir report ... --readme`, do not edit by hand -->"]
    if ok:
        body.append(f"{len(ok)} cells; {_cell_minutes(ok)}; {_busy(ok)}. Who won where:")
        body += [""] + [f"- {w}" for w in winners(rows)]
    body.append(f"<!-- /mimir report {name} -->")
    return "\n".join(body)


def update_readme(readme: str | Path, records: list[dict], name: str) -> bool:
    """Replace the README's block for ``name`` (returns False when the README has no such block)."""
    path = Path(readme)
    text = path.read_text()
    start = text.find(f"<!-- mimir report {name}:")
    end_marker = f"<!-- /mimir report {name} -->"
    end = text.find(end_marker, start)
    if start < 0 or end < 0:
        return False
    path.write_text(text[:start] + readme_block(records, name) + text[end + len(end_marker):])
    return True


def write_report(results: str | Path, out_dir: str | Path, command: str = "") -> Path:
    """Write ``RESULTS.md`` and its plots into ``out_dir``; returns the Markdown path."""
    records = read_results(results)
    rows = aggregate(records)
    out_dir = Path(out_dir)
    if rows:
        plot(rows, out_dir / "plots")
    plot_synthetic(records, out_dir / "plots")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "RESULTS.md"
    path.write_text(render_markdown(records, str(results), command))
    return path
