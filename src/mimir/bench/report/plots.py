"""PNG plots of a report's rows: accuracy against samples (a figure per teacher and pruning),
against MACs (a panel per teacher and sample count) and against training time (where a method
ran with several iteration budgets).

Made to be read at a page's width (about 900 pixels): one colour per method throughout a report,
a marker (and a dashed line) for each of a method's variants, legends outside the axes so that
they hide no point, and a line's label naming only what tells it apart within its plot."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import matplotlib
import matplotlib.ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mimir.bench.report.aggregate import Row, data_of, time_groups
from mimir.recipe import recipe_defaults

SPAN = 20.0  # points shown below the best teacher; results further down are named under the axis
DPI = 110
FONT = 8                 # legend and annotation size, in points
MARKERS = "osD^v<>phXP8"   # a method's variants in turn ("*" is the teacher's)
DASHES = ("--", ":", "-.")   # the variants' lines, one style per round of markers


# --- what tells lines apart (no matplotlib needed) ---

@dataclass(frozen=True)
class LineStyle:
    label: str
    color: tuple
    marker: str
    linestyle: str
    filled: bool = True   # markers are hollow from the second round of markers on


def _values(recipe: dict, x: str) -> dict[tuple[str, str], object]:
    """The recipe's settings that can tell lines of one plot apart: its fields (not the method, nor
    the plot's x-axis field ``x``) and the options it sets, keyed ("field" or "option", name)."""
    fields = {("field", k): v for k, v in recipe.items() if k not in ("method", "options", x)}
    return {**fields, **{("option", k): v for k, v in sorted((recipe.get("options") or {}).items())}}


def _is_default(key: tuple[str, str], value) -> bool:
    """A recipe field at its default. An option a cell sets is never a default here: the method's
    defaults may depend on the teacher's family and on when the cell ran, so an option
    given is always named."""
    kind, name = key
    return kind == "field" and value == recipe_defaults().get(name)


def _shown(value) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and "/" in value:
        return Path(value).name   # a folder of images: its name
    return str(value)


def line_labels(recipes: list[dict], x: str) -> list[str]:
    """A legend label for each line of one plot, given each line's recipe (seed and ``x`` aside):
    the method, and in brackets each setting that differs between the plot's lines where this
    line sets it (an option) or its value is not the recipe's default (a field). A setting all
    lines share, or a field a line leaves at its default, is never named; lines that differ get
    different labels."""
    values = [_values(r, x) for r in recipes]
    keys = sorted(dict.fromkeys(k for v in values for k in v), key=lambda k: k[0] == "option")  # fields first
    varying = [k for k in keys if len({json.dumps(v.get(k), sort_keys=True) for v in values}) > 1]
    labels = []
    for recipe, v in zip(recipes, values):
        named = [f"{k[1]}={_shown(v[k])}" for k in varying if k in v and not _is_default(k, v[k])]
        labels.append(recipe["method"] + (f" ({', '.join(named)})" if named else ""))
    return labels


def method_colors(methods: Iterable[str]) -> dict[str, tuple]:
    """One colour per method, the same in every plot of a report (methods in name order)."""
    names = sorted(set(methods))
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {m: tuple(cmap(i % cmap.N)) for i, m in enumerate(names)}


def line_styles(recipes: list[dict], x: str, colors: dict[str, tuple]) -> list[LineStyle]:
    """Label, colour, marker and line style of each line of one plot: the method's colour; its
    plain line (nothing named) a solid line with circles, each further variant a marker of its own
    on a dashed line (hollow markers, another dash, once every marker is taken)."""
    labels = line_labels(recipes, x)
    variants: dict[str, list[str]] = defaultdict(list)
    for recipe, label in sorted(zip(recipes, labels), key=lambda p: (p[1] != p[0]["method"], p[1])):
        variants[recipe["method"]].append(label)
    styles = []
    for recipe, label in zip(recipes, labels):
        i = variants[recipe["method"]].index(label)
        round_ = i // len(MARKERS)
        dash = "-" if i == 0 else DASHES[round_ % len(DASHES)]
        styles.append(LineStyle(label, colors[recipe["method"]], MARKERS[i % len(MARKERS)], dash, round_ % 2 == 0))
    return styles


def scheme_label(scheme: str, longest: int = 32) -> str:
    """A pruning scheme short enough for a title or legend: a long list of named blocks becomes
    its first name and the count."""
    if len(scheme) <= longest:
        return scheme
    kind, _, names = scheme.partition(":")
    names = names.split(",")
    return f"{kind}:{names[0]},... ({len(names)} blocks)"


def _lines(rows: list[Row], x: str) -> list[list[Row]]:
    """The rows grouped into lines: rows whose recipes differ only in ``x`` form one line."""
    lines: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        lines[json.dumps({k: v for k, v in r.recipe.items() if k != x}, sort_keys=True)].append(r)
    return list(lines.values())


def _samples_plot_name(teacher: str, prune: str) -> str:
    return f"acc_vs_samples_{teacher}_{prune.replace(':', '-').replace(',', '+')}.png"


def _macs_counts(rows: list[Row]) -> list[int]:
    """The sample counts the MACs plot shows: those shared by several (teacher, prune) settings,
    or every count where none is."""
    settings_per_count = defaultdict(set)
    for r in rows:
        settings_per_count[r.samples].add((r.teacher, r.prune))
    return sorted(n for n, s in settings_per_count.items() if len(s) > 1) or sorted(settings_per_count)


def plot_names(rows: list[Row]) -> list[str]:
    """The file names :func:`plot` writes for ``rows``, in order."""
    rows = [r for r in rows if r.mean is not None]
    if not rows:
        return []
    return ([_samples_plot_name(t, p) for t, p in sorted({(r.teacher, r.prune) for r in rows})] + ["acc_vs_macs.png"]
            + list(time_groups(rows)))


# --- axes ---

def _y_range(rows: list[Row]) -> tuple[float, float]:
    """Limits that keep the differences between the good methods readable: from the lowest result
    (or ``SPAN`` points under the best teacher, whichever is higher) to just above the teacher."""
    highs = [r.mean + r.std for r in rows] + [r.teacher_acc for r in rows if r.teacher_acc is not None]
    low = max(min(r.mean - r.std for r in rows), max(highs) - SPAN)
    margin = 0.05 * max(max(highs) - low, 1.0)
    return low - margin, max(highs) + margin


def _below_note(rows: list[Row], low: float) -> str:
    """'below the axis: <method> 11.73 %, <method> 29.14-30.26 %' for the results the y range leaves out."""
    below: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.mean < low:
            below[r.method].append(r.mean)
    parts = [f"{m} {min(v):.2f} %" if round(min(v), 2) == round(max(v), 2) else f"{m} {min(v):.2f}-{max(v):.2f} %"
             for m, v in sorted(below.items())]
    return "below the axis: " + ", ".join(parts) if parts else ""


def _wrapped(text: str, width: int) -> str:
    """``text`` broken after commas into lines of at most about ``width`` characters."""
    lines = [""]
    for part in text.split(", "):
        if lines[-1] and len(lines[-1]) + len(part) + 2 > width:
            lines[-1] += ","
            lines.append(part)
        else:
            lines[-1] += (", " if lines[-1] else "") + part
    return "\n".join(lines)


def _decorate(ax, rows: list[Row], xlabel: str, width: int = 70) -> None:
    """Y range, axis labels (the results below the range named under the x label, in lines of
    about ``width`` characters) and grid."""
    low, high = _y_range(rows)
    ax.set_ylim(low, high)
    note = _below_note(rows, low)
    ax.set_xlabel(xlabel + (f"\n{_wrapped(note, width)}" if note else ""))
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(alpha=0.3)


def _legend_right(fig, ax) -> None:
    """Lay the figure out, then put the legend right of the axes, where it hides nothing (the
    saved image grows to hold it)."""
    fig.tight_layout()
    ax.legend(fontsize=FONT, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)


def _log_x(ax, ticks: list[float]) -> None:
    """A log x axis with plain numbers (200, 300 rather than 2x10^2) at ``ticks``, turned aslant
    where two of them are too close for their numbers to sit side by side."""
    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    if any(b < 1.4 * a for a, b in zip(ticks, ticks[1:])):
        ax.tick_params(axis="x", labelrotation=45)


def _teacher_line(ax, rows: list[Row]) -> None:
    if rows[0].teacher_acc is not None:
        ax.axhline(rows[0].teacher_acc, color="black", linestyle="--", linewidth=1, label="teacher")


def _draw_lines(ax, rows: list[Row], along: str, x: Callable[[Row], float], colors: dict[str, tuple],
                annotate: bool = False) -> None:
    """Accuracy (mean +- std) at ``x`` of each row, one line per recipe: rows whose recipes differ
    only in the field ``along`` form a line (its value written beside each point when ``annotate``)."""
    lines = _lines(rows, along)
    styles = line_styles([line[0].recipe for line in lines], along, colors)
    for line, style in sorted(zip(lines, styles), key=lambda p: p[1].label):
        pts = sorted((x(r), r.mean, r.std, r.recipe[along]) for r in line)
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], capsize=3, label=style.label,
                    color=style.color, marker=style.marker, linestyle=style.linestyle,
                    markerfacecolor=style.color if style.filled else "white")
        for xv, acc, _, value in pts if annotate else ():
            ax.annotate(str(value), (xv, acc), fontsize=FONT - 1, textcoords="offset points", xytext=(4, -10))


# --- figures ---

def _figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, squeeze: bool = True):
    """A figure and its axes, made without pyplot (so no backend is chosen or switched for the
    caller, and nothing stays open after :func:`_save`)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def _legend_height(entries: int) -> float:
    """Inches a one-column legend of ``entries`` lines needs."""
    return 0.6 + 0.2 * entries


def samples_figure(sub: list[Row], colors: dict[str, tuple]):
    """Accuracy against the number of samples for one teacher and pruning scheme, a line per recipe."""
    n_lines = len(_lines(sub, "samples"))
    fig, ax = _figure((6.0, max(4.2, _legend_height(n_lines + 1))))
    _teacher_line(ax, sub)
    _draw_lines(ax, sub, "samples", lambda r: r.samples, colors)
    counts = sorted({r.samples for r in sub})
    _log_x(ax, counts)
    ax.set_xlim(counts[0] / 1.3, counts[-1] * 1.3)
    ax.set_title(f"{sub[0].teacher}, {scheme_label(sub[0].prune)}: accuracy vs samples\n"
                 "(mean +- std over seeds)", fontsize=10)
    _decorate(ax, sub, "number of few samples (log scale)")
    _legend_right(fig, ax)
    return fig


def time_figure(sub: list[Row], colors: dict[str, tuple]):
    """Accuracy against the method's training seconds for one setting, a line per recipe, each
    point labelled with its iterations."""
    fig, ax = _figure((6.0, 4.4))
    _teacher_line(ax, sub)
    _draw_lines(ax, sub, "iterations", lambda r: r.train_seconds, colors, annotate=True)
    ax.set_xscale("log")
    for formatter in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
        formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False))  # 200, 300 rather than 2x10^2
    ax.margins(x=0.08)
    r0 = sub[0]
    ax.set_title(f"{r0.teacher}, {scheme_label(r0.prune)}, {r0.samples} samples, {data_of(r0.recipe)}:\n"
                 "accuracy vs training time (labels: iterations)", fontsize=10)
    _decorate(ax, sub, "training seconds per run (log scale)")
    _legend_right(fig, ax)
    return fig


def _macs_layout(rows: list[Row]) -> list[list[tuple[str, int]]]:
    """The MACs figure's rows of panels: each teacher's (teacher, sample count) panels, two a row."""
    counts = _macs_counts(rows)
    layout = []
    for teacher in sorted({r.teacher for r in rows}):
        panels = [(teacher, n) for n in counts if any(r.teacher == teacher and r.samples == n for r in rows)]
        layout += [panels[i:i + 2] for i in range(0, len(panels), 2)]
    return layout


def _macs_panel(ax, sub: list[Row], colors: dict[str, tuple], markers: dict[str, str]) -> None:
    """One teacher at one sample count: a point per row (colour: method, marker: pruning) and the
    teacher's star."""
    for r in sub:
        ax.scatter([r.macs / 1e6], [r.mean], marker=markers[r.prune], color=colors[r.method], s=40, alpha=0.85,
                   linewidths=0)
    t = sub[0]
    if t.teacher_acc is not None:
        ax.scatter([t.teacher_macs / 1e6], [t.teacher_acc], marker="*", s=150, color="black", zorder=3)
    macs = [r.macs for r in sub] + [t.teacher_macs]
    log_x = max(macs) > 4 * min(macs)
    if log_x:
        ax.set_xscale("log")
    ax.margins(x=0.12)
    ax.set_title(f"{t.teacher}, {t.samples} samples", fontsize=10)
    _decorate(ax, sub, "MACs per image (millions" + (", log scale)" if log_x else ")"), width=45)


def _macs_legend(fig, rows: list[Row], colors: dict[str, tuple], markers: dict[str, str]) -> None:
    """One legend for the figure, right of its panels: methods by colour, pruning by marker, the
    teacher's star."""
    def heading(text: str) -> Line2D:
        return Line2D([], [], linestyle="", marker="", label=text)

    handles = [heading("method (colour)")]
    handles += [Line2D([], [], linestyle="", marker="o", color=colors[m], label=m)
                for m in sorted({r.method for r in rows})]
    handles += [heading(""), heading("pruning (marker)")]
    handles += [Line2D([], [], linestyle="", marker=markers[p], color="gray", label=scheme_label(p))
                for p in sorted({r.prune for r in rows})]
    handles += [heading(""), Line2D([], [], linestyle="", marker="*", markersize=11, color="black", label="teacher")]
    fig.legend(handles=handles, fontsize=FONT, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def macs_figure(rows: list[Row], colors: dict[str, tuple]):
    """Accuracy against MACs: a panel per teacher and sample count (the counts several settings
    share), a row of panels per teacher."""
    layout = _macs_layout(rows)
    ncols = max(len(panels) for panels in layout)
    fig, axes = _figure((3.6 * ncols, 3.1 * len(layout)), len(layout), ncols, squeeze=False)
    markers = {p: MARKERS[i % len(MARKERS)] for i, p in enumerate(sorted({r.prune for r in rows}))}
    for axes_row, panels in zip(axes, layout):
        for ax, (teacher, count) in zip(axes_row, panels):
            _macs_panel(ax, [r for r in rows if (r.teacher, r.samples) == (teacher, count)], colors, markers)
        for ax in axes_row[len(panels):]:
            ax.set_axis_off()
    fig.suptitle("accuracy vs MACs (mean over seeds)", fontsize=11)
    fig.tight_layout()
    _macs_legend(fig, [r for r in rows if r.samples in _macs_counts(rows)], colors, markers)
    return fig


def _save(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (legends outside the axes included) and close it."""
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.1)
    return path


def plot(rows: list[Row], out_dir: Path) -> list[Path]:
    """Accuracy vs samples (one figure per teacher x prune, a line per recipe), accuracy vs MACs
    (a panel per teacher and sample count; colour = method, marker = pruning scheme) and, where a
    method ran with several iteration budgets, accuracy vs training time; returns the PNG paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in rows if r.mean is not None]  # cells run without evaluation data have nothing to plot
    if not rows:
        return []
    colors = method_colors(r.method for r in rows)
    paths = []
    for teacher, prune in sorted({(r.teacher, r.prune) for r in rows}):
        sub = [r for r in rows if (r.teacher, r.prune) == (teacher, prune)]
        paths.append(_save(samples_figure(sub, colors), out_dir / _samples_plot_name(teacher, prune)))
    paths.append(_save(macs_figure(rows, colors), out_dir / "acc_vs_macs.png"))
    for name, sub in time_groups(rows).items():
        paths.append(_save(time_figure(sub, colors), out_dir / name))
    return paths
