"""What people read: the tables and text of ``RESULTS.md``, the summary block a hand-written page
holds, and :func:`write_report`, which writes the report with its plots."""

from __future__ import annotations

import statistics
import warnings
from pathlib import Path

from mimir._readme import replace_block
from mimir.bench.report.aggregate import (
    Row,
    ablation_base,
    ablation_pairs,
    ablation_variants,
    aggregate,
    busy_seconds,
    by_method,
    data_of,
    finished,
    labelled,
    leave_one_out,
    mixed_devices,
    other_fields,
    time_groups,
    winners,
)
from mimir.bench.report.plots import plot, plot_names
from mimir.bench.report.synthetic import plot_synthetic, synthetic_sets
from mimir.bench.store import read_results, unreadable_lines
from mimir.errors import MimirError
from mimir.methods import get_method


def _acc(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def markdown_table(rows: list[Row]) -> str:
    with_setting = any(r.setting for r in rows)
    with_int8 = any(r.int8_mean is not None for r in rows)   # a grid with quantize: int8
    extra = "setting | " if with_setting else ""
    lines = [f"| teacher | prune | samples | method | {extra}accuracy % (mean +- std) | seeds | vs teacher | "
             "pruned % | MACs | params | train s | cell s | labels |" + (" int8 % | teacher int8 % |" if with_int8 else ""),
             "|---|---|---:|---|" + ("---|" if with_setting else "") + "---:|---:|---:|---:|---:|---:|---:|---:|---|"
             + ("---:|---:|" if with_int8 else "")]
    for r in rows:
        gap = "n/a" if r.mean is None or r.teacher_acc is None else f"{r.mean - r.teacher_acc:+.2f}"
        macs = f"{r.macs / 1e6:.1f}M ({100 * r.macs / r.teacher_macs:.0f} %)"
        setting = f"{r.setting} | " if with_setting else ""
        lines.append(f"| {r.teacher} | {r.prune} | {r.samples} | {r.method} | {setting}{_acc(r.mean)} +- {r.std:.2f} | "
                     f"{r.seeds} | {gap} | {_acc(r.pruned_acc)} | {macs} | {r.params / 1e6:.3f}M | "
                     f"{r.train_seconds:.0f} | {r.cell_seconds:.0f} | {'yes' if r.used_labels else 'no'} |"
                     + (f" {_acc(r.int8_mean)} | {_acc(r.teacher_int8)} |" if with_int8 else ""))
    return "\n".join(lines)


def _ablation_bases(pairs: list[tuple[Row, Row]]) -> list[str]:
    """The methods whose plain runs the ablation measures against."""
    return sorted({ablation_base(r.method) for r, _ in pairs})


def ablation(rows: list[Row]) -> list[str]:
    """Table lines: every run of a method with an ``ablation_base`` (a variant, or the base with
    options) next to the base's plain run with the same recipe otherwise (teacher, pruning,
    samples, data, iterations); empty when there is none."""
    pairs = ablation_pairs(rows)
    if not pairs:
        return []
    plain = " / ".join(_ablation_bases(pairs))
    lines = [f"| teacher | prune | samples | data | iterations | ingredients | accuracy % | {plain} % | gain | seeds | "
             f"train s | {plain} train s |", "|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    fields = other_fields(rows)
    for r, base in pairs:
        lines.append(f"| {r.teacher} | {r.prune} | {r.samples} | {data_of(r.recipe)} | {r.iterations} | "
                     f"{labelled(r, fields)} | {r.mean:.2f} +- {r.std:.2f} | {base.mean:.2f} +- {base.std:.2f} | "
                     f"{r.mean - base.mean:+.2f} | {r.seeds} | {r.train_seconds:.0f} | {base.train_seconds:.0f} |")
    return lines


def method_label(method: str, ingredients: str) -> str:
    """The method's name with its ingredients in brackets, or the ingredients alone where they
    begin with the method's name already (a variant of another method)."""
    if ingredients.startswith(method):
        return ingredients
    return f"{method} ({ingredients})" if ingredients else method


def time_table(rows: list[Row]) -> list[str]:
    """Table lines: accuracy (and the method's training seconds) per iteration budget, one line per
    method in each setting where some method ran with several budgets; empty when there is none."""
    groups = time_groups(rows)
    if not groups:
        return []
    budgets = sorted({r.iterations for sub in groups.values() for r in sub})
    lines = ["| teacher | prune | samples | data | method | " + " | ".join(f"{b} its" for b in budgets) + " |",
             "|---|---|---:|---|---|" + "---:|" * len(budgets)]
    for sub in groups.values():
        r0 = sub[0]
        for label, line in by_method(sub).items():
            at = {r.iterations: r for r in line}
            cells = [f"{at[b].mean:.2f} % ({at[b].train_seconds:.0f} s)" if b in at else "-" for b in budgets]
            lines.append(f"| {r0.teacher} | {r0.prune} | {r0.samples} | {data_of(r0.recipe)} | "
                         f"{method_label(*label)} | " + " | ".join(cells) + " |")
    return lines


def _cell_minutes(ok: list[dict]) -> str:
    minutes = sorted(r["wall_seconds"] / 60 for r in ok)
    return (f"cells took {minutes[0]:.1f} to {minutes[-1]:.1f} minutes each "
            f"(median {statistics.median(minutes):.1f})")


def _busy(ok: list[dict]) -> str:
    timed = all("T" in r["finished_at"] for r in ok)  # lines converted from older runs may hold only a date
    return (f"{busy_seconds(ok) / 3600:.2f} hours of wall-clock time with cells running" if timed
            else "wall-clock time unknown (some cells record only a date)")


def _display_name(method: str) -> str:
    """How a method's documentation names it: the words before the colon its description opens
    with ("Xyz: does this"), else its registry name."""
    doc = (type(get_method(method)).__doc__ or "").strip()
    name, colon, _ = doc.partition(":")
    return name if colon and 0 < len(name.split()) <= 3 else method


def _header(records: list[dict], ok: list[dict], rows: list[Row], results: str, command: str) -> list[str]:
    """The title, where the numbers come from, and when, where and with what they were measured."""
    compute = sum(r["wall_seconds"] for r in ok)
    ended = sorted(r["finished_at"] for r in ok)
    versions = ok[-1]["versions"] if ok else {}
    commits = sorted({r.get("commit", "unknown") for r in ok})
    devices = sorted({r.get("device") or r.get("summary", {}).get("device") or "unrecorded" for r in ok})
    iterations = sorted({r.iterations for r in rows})
    lines = ["# Benchmark results", "",
             f"Generated by `mimir report` from `{results}` ({len(ok)} finished cells, "
             f"{len(records) - len(ok)} failed or superseded lines)."]
    if command:
        lines += ["", f"Grid command: `{command}`"]
    if ended:
        lines += ["", f"Cells finished between {ended[0]} and {ended[-1]} (UTC); {_busy(ok)} "
                      f"({compute / 3600:.2f} hours of cell time summed over parallel workers); {_cell_minutes(ok)}; "
                      f"iterations per iterative method: {', '.join(map(str, iterations))}; code: "
                      f"{', '.join(commits)}; devices: {'; '.join(devices)}; versions: "
                      + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    mixed = mixed_devices(records)
    if mixed:
        lines += ["", "**Warning**: cells of one group ran on different devices, so their times do not compare:"]
        lines += [f"- {line}" for line in mixed]
    return lines


def _results_section(rows: list[Row]) -> list[str]:
    return (["", "Accuracy is top-1 on the evaluation set, mean +- std over seeds; cells are grouped by their whole "
                 "recipe except the seed (a `setting` column names what else differs, when anything does). MACs "
                 "are multiply-accumulates per image (and the share of the teacher's); `train s` is the method's "
                 "own time per cell (mean over seeds), `cell s` the whole cell's wall time (loading, pruning, "
                 "training, evaluation).", "",
             "## Who won where", ""] + [f"- {w}" for w in winners(rows)] + ["", "## Table", "", markdown_table(rows)])


def _ablation_section(rows: list[Row]) -> list[str]:
    table = ablation(rows)
    if not table:
        return []
    bases = _ablation_bases(ablation_pairs(rows))
    compared = []
    for base in bases:
        runs = ([f"`{base}` with options"] if ablation_base(base) == base else []) + [
            f"`{variant}`" for variant in ablation_variants(base)]
        compared.append("each " + ", and each ".join(runs) + f", against plain `{base}`")
    text = "; ".join(compared)
    return ["", f"## Ablation: what each ingredient adds to {' and '.join(map(_display_name, bases))}", "",
            text[:1].upper() + text[1:] + " with the same recipe otherwise (same samples, data, pruning and "
            "iterations); `gain` is the difference of the means.", ""] + table


def _leave_one_out_section(rows: list[Row]) -> list[str]:
    pairs = leave_one_out(rows)
    if not pairs:
        return []
    lines = ["", "## Each ingredient on top of the others", "",
             "Two runs with the same recipe otherwise whose ingredients differ by one: what that ingredient adds "
             "to the rest (`with` names the first run's ingredients; the second has all of them but one). "
             "`gain` is the difference of the means, `cost` the difference of the training seconds.", "",
             "| teacher | prune | samples | data | iterations | with | ingredient | with it % | without it % | gain | "
             "seeds | cost s |", "|---|---|---:|---|---:|---|---|---:|---:|---:|---:|---:|"]
    fields = other_fields(rows)
    for name, full, less in pairs:
        lines.append(f"| {full.teacher} | {full.prune} | {full.samples} | {data_of(full.recipe)} | {full.iterations} | "
                     f"{method_label(full.method, labelled(full, fields))} | {name} | {full.mean:.2f} +- {full.std:.2f} | "
                     f"{less.mean:.2f} +- {less.std:.2f} | {full.mean - less.mean:+.2f} | {min(full.seeds, less.seeds)} | "
                     f"{full.train_seconds - less.train_seconds:+.0f} |")
    return lines


def _time_section(rows: list[Row]) -> list[str]:
    table = time_table(rows)
    if not table:
        return []
    return ["", "## Accuracy against training time", "",
            "Where a method ran with several iteration budgets: mean accuracy over seeds and, in brackets, "
            "the method's own training seconds per run (the `train s` column above), so a schedule can be "
            "chosen for the time it costs.", ""] + table


def _synthetic_section(records: list[dict]) -> list[str]:
    shown = synthetic_sets(records)
    if not shown:
        return []
    return (["", "## Synthesised images", "",
             "What `--data synthetic:N` made from each teacher alone (the first 64 images of the first seed's "
             "set; one class per image in turn, no real image involved):", ""]
            + [f"![{Path(name).stem}](plots/{name})" for name in shown])


def _plots_section(rows: list[Row]) -> list[str]:
    return ["", "## Plots", ""] + [f"![{Path(name).stem}](plots/{name})" for name in plot_names(rows)]


def render_markdown(records: list[dict], results: str, command: str = "") -> str:
    """The text of ``RESULTS.md``: a function of the result lines alone (its date is the last
    cell's), so regenerating it from the same file gives the same text."""
    ok = finished(records)
    rows = aggregate(records)
    lines = (_header(records, ok, rows, results, command) + _results_section(rows) + _ablation_section(rows)
             + _leave_one_out_section(rows) + _time_section(rows) + _synthetic_section(records) + _plots_section(rows))
    return "\n".join(lines) + "\n"


def _summary_start(name: str) -> str:
    return f"<!-- mimir report {name}: generated by `mimir report ... --readme`, do not edit by hand -->"


def _summary_end(name: str) -> str:
    return f"<!-- /mimir report {name} -->"


def _summary(records: list[dict]) -> list[str]:
    """The lines of a summary block between its markers: cells, time, who won where."""
    ok = finished(records)
    if not ok:
        return []
    return [f"{len(ok)} cells; {_cell_minutes(ok)}; {_busy(ok)}. Who won where:", ""] + [
        f"- {w}" for w in winners(aggregate(records))]


def readme_block(records: list[dict], name: str) -> str:
    """What a page says about a results file, between markers that :func:`update_readme` replaces."""
    return "\n".join([_summary_start(name)] + _summary(records) + [_summary_end(name)])


def update_readme(readme: str | Path, records: list[dict], name: str) -> bool:
    """Replace the page's block for ``name`` (returns False, the page untouched, when it has none)."""
    return replace_block(readme, f"<!-- mimir report {name}:", _summary_end(name), "\n".join(_summary(records)),
                         start_line=_summary_start(name))


def write_report(results: str | Path, out_dir: str | Path, command: str = "") -> Path:
    """Write ``RESULTS.md`` and its plots into ``out_dir``; returns the Markdown path. Lines that
    are not records are named in a warning; a file with no record at all is refused, nothing written."""
    records = read_results(results)
    bad = unreadable_lines(results)
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        warnings.warn(f"skipped {len(bad)} unreadable line(s) of '{results}' (line {shown}): not a record "
                      "'mimir bench' writes", stacklevel=2)
    if not records:
        raise MimirError(f"'{results}' holds no result 'mimir bench' wrote" + (" (no line is a record)" if bad else
                                                                                " (it is empty)"),
                         "give the JSON-lines results file of a grid, e.g. benchmarks/results/fashion-mnist.jsonl")
    rows = aggregate(records)
    out_dir = Path(out_dir)
    if rows:
        plot(rows, out_dir / "plots")
    plot_synthetic(records, out_dir / "plots")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "RESULTS.md"
    path.write_text(render_markdown(records, str(results), command))
    return path
