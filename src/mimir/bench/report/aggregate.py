"""From result lines to rows: one row per recipe except the seed (mean +- std over seeds), who won
where, which rows form an ablation, which settings ran with several iteration budgets."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mimir.bench.cells import options_of, recipe_of
from mimir.methods import get_method, list_methods
from mimir.recipe import recipe_defaults


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
    untrained: bool = False   # the pruned student left as it was in every seed: the floor, not a contender
    int8_mean: float | None = None      # with quantize: the int8 student's accuracy (mean over seeds)
    teacher_int8: float | None = None   # and the int8 teacher's, calibrated on the same samples
    method_options: dict | None = field(default=None, compare=False)   # every option in effect, where recorded


_SHOWN = ("teacher", "prune", "samples", "method")
_COMPARED = ("teacher", "prune", "samples")
_SOURCES = ("data", "extra_data")


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _setting(recipe: dict, varying: list[str]) -> str:
    return ", ".join(f"{k}={json.dumps(recipe[k], sort_keys=True) if isinstance(recipe[k], dict) else recipe[k]}"
                     for k in varying)


def finished(records: list[dict]) -> list[dict]:
    """The finished lines, one per cell: where a cell was run twice (a rerun, or a worker that
    outlived its stopped run), its latest line supersedes the earlier ones."""
    latest: dict[str, dict] = {}
    for r in records:
        if r.get("status") == "ok":
            latest.pop(r["key"], None)   # re-inserted, so the order is that of the latest lines
            latest[r["key"]] = r
    return list(latest.values())


def _seed_groups(records: list[dict]) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """The finished lines grouped by their recipe without the seed (latest line per cell key wins),
    and each group's recipe; both keyed by the recipe's JSON."""
    groups: dict[str, list[dict]] = defaultdict(list)
    recipes: dict[str, dict] = {}
    for r in finished(records):
        recipe = {k: v for k, v in recipe_of(r).items() if k != "seed"}
        key = json.dumps(recipe, sort_keys=True)
        groups[key].append(r)
        recipes[key] = recipe
    return groups, recipes


def _differ(key: str, recipes) -> bool:
    return len({json.dumps(rec.get(key), sort_keys=True) for rec in recipes}) > 1


def _varying_fields(recipes: list[dict]) -> dict[tuple, list[str]]:
    """(teacher, prune, samples) -> the recipe fields named in its rows' ``setting``: those that tell
    apart groups of one comparison (the methods compared in a row of winners) that the table's own
    columns do not, and where the images came from once the file holds more than one source."""
    shown: dict[tuple, list[dict]] = defaultdict(list)
    for rec in recipes:
        shown[tuple(rec[k] for k in _COMPARED)].append(rec)
    fields = sorted({k for rec in recipes for k in rec} - set(_SHOWN))
    sources = [k for k in _SOURCES if _differ(k, recipes)]
    return {s: [k for k in fields if k in sources or _differ(k, recs)] for s, recs in shown.items()}


def _row(cell: list[dict], c: dict, setting: str) -> Row:
    """The row of one group of seeds ``cell`` with recipe ``c``."""
    s = [r["summary"] for r in cell]
    acc = [x["compressed"]["accuracy"] for x in s if x["compressed"]["accuracy"] is not None]
    return Row(
        c["teacher"], c["prune"], c["samples"], c["method"], len(cell),
        statistics.mean(acc) if acc else None, statistics.stdev(acc) if len(acc) > 1 else 0.0,
        _mean(x["teacher"]["accuracy"] for x in s), _mean(x["pruned"]["accuracy"] for x in s),
        statistics.mean(x["compressed"]["macs"] for x in s), statistics.mean(x["compressed"]["params"] for x in s),
        statistics.mean(x["teacher"]["macs"] for x in s), statistics.mean(x["train_seconds"] for x in s),
        statistics.mean(r["wall_seconds"] for r in cell), bool(s[0]["used_labels"]),
        int(c["iterations"]), setting, c, all(x["compressed"] == x["pruned"] for x in s),
        _mean(x["compressed_int8"]["accuracy"] for x in s if "compressed_int8" in x),
        _mean(x["teacher_int8"]["accuracy"] for x in s if "teacher_int8" in x), s[0].get("method_options"))


def aggregate(records: list[dict]) -> list[Row]:
    """One row per recipe except the seed: mean +- std over the finished seeds (latest record per
    cell wins if a cell was run twice). Cells whose recipes differ in anything but the seed
    (iterations, options, device, ...) are never averaged together; the fields that differ are
    named in the row's ``setting``, and so are ``data`` and ``extra_data`` wherever the file holds
    more than one source of images."""
    groups, recipes = _seed_groups(records)
    varying = _varying_fields(list(recipes.values()))
    rows = [_row(cell, recipes[key], _setting(recipes[key], varying[tuple(recipes[key][k] for k in _COMPARED)]))
            for key, cell in groups.items()]
    return sorted(rows, key=lambda r: (r.teacher, r.prune, r.samples, r.setting, -(r.mean or 0)))


def mixed_devices(records: list[dict]) -> list[str]:
    """One warning per (teacher, prune, samples) group whose finished cells ran on more than one
    device (cells of a grid spread over machines): its training times do not compare."""
    groups, _ = _seed_groups(records)
    devices: dict[tuple, set[str]] = defaultdict(set)
    for cells in groups.values():
        for r in cells:
            recipe = recipe_of(r)
            devices[tuple(recipe.get(k) for k in _COMPARED)].add(
                r.get("device") or r.get("summary", {}).get("device") or "unrecorded")
    return [f"{teacher}, {prune}, {samples} samples ran on {len(found)} devices ({'; '.join(sorted(found))}): "
            "its times do not compare" for (teacher, prune, samples), found in sorted(devices.items(), key=str)
            if len(found) > 1]


def winners(rows: list[Row]) -> list[str]:
    """One sentence per (teacher, prune, samples, setting) where at least two methods that trained
    ran: the best method and its margin over the runner-up (a lone method, e.g. one ablation
    variant, won nothing)."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if r.mean is not None and not r.untrained:
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


def data_of(recipe: dict) -> str:
    """The images a recipe trained on: its ``data``, and the name of its ``extra_data`` if any."""
    extra = f" + {Path(recipe['extra_data']).name}" if recipe.get("extra_data") else ""
    return f"{recipe['data']}{extra}"


def ablation_base(method: str) -> str | None:
    """The method whose plain run (no options) a run of ``method`` is measured against (the
    method's own ``ablation_base``); None for other methods and for names no longer registered."""
    return get_method(method).ablation_base if method in list_methods() else None


def ablation_variants(base: str) -> list[str]:
    """The registered methods other than ``base`` that are measured against plain ``base``."""
    return [m for m in list_methods() if m != base and ablation_base(m) == base]


def ingredients(row: Row) -> str:
    """What sets a row's run apart from the plain run of its method: its options, and for a variant
    of another method (its ``ablation_base``) the variant's name and every default it changes."""
    options = row.recipe.get("options") or {}
    base = ablation_base(row.method)
    if base is None or base == row.method:
        return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"{row.method} (" + ", ".join(f"{k}={v}" for k, v in sorted({**changes(row), **options}.items())) + ")"


def changes(row: Row) -> dict:
    """The options in effect in a row's runs that differ from the plain run of its ablation base
    (for a variant of the base: its defaults and its options; for the base with options: those
    options); {} for a method without an ablation base."""
    base = ablation_base(row.method)
    if base is None:
        return {}
    options = row.recipe.get("options") or {}
    # the options in effect as the cell recorded them (a family's defaults, defaults of the time)
    effective = options_of(row.method, options, row.method_options)
    plain = get_method(base).options
    return {k: v for k, v in effective.items() if plain.get(k) != v}


def _context(r: Row) -> str:
    return json.dumps({k: v for k, v in r.recipe.items() if k not in ("method", "options")}, sort_keys=True)


def ablation_pairs(rows: list[Row]) -> list[tuple[Row, Row]]:
    """(row, plain row) for every row of a method with an ``ablation_base`` that is not that base's
    plain run, next to the base's plain run with the same recipe otherwise (teacher, pruning,
    samples, data, iterations), in the ablation table's order."""
    plain = {(r.method, _context(r)): r for r in rows if not r.recipe.get("options") and r.mean is not None}
    pairs = []
    for r in rows:
        base = ablation_base(r.method)
        if base is None or r.mean is None or (r.method == base and not r.recipe.get("options")):
            continue
        if (base, _context(r)) in plain:
            pairs.append((r, plain[(base, _context(r))]))
    return sorted(pairs, key=lambda p: (p[0].teacher, p[0].prune, p[0].samples, data_of(p[0].recipe),
                                        p[0].iterations, -(p[0].mean - p[1].mean)))


def leave_one_out(rows: list[Row]) -> list[tuple[str, Row, Row]]:
    """(ingredient, run with it, run without it) for every two rows with the same recipe otherwise
    (the same ablation base, teacher, pruning, samples, data, iterations) whose :func:`changes`
    differ by exactly that one ingredient, the first having at least two: what the ingredient adds
    on top of the others (a variant against its base run with all the variant's ingredients but one)."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if r.mean is not None and ablation_base(r.method) is not None:
            groups[(ablation_base(r.method), _context(r))].append(r)
    out = []
    for group in groups.values():
        for full in group:
            have = changes(full)
            for less in group:
                lack = changes(less)
                missing = set(have) - set(lack)
                if (len(have) >= 2 and len(missing) == 1 and len(lack) == len(have) - 1
                        and all(have.get(k) == v for k, v in lack.items())):
                    key = missing.pop()
                    out.append((f"{key}={have[key]}", full, less))
    return sorted(out, key=lambda t: (t[1].teacher, t[1].prune, t[1].samples, data_of(t[1].recipe), t[1].iterations,
                                      ingredients(t[1]), -(t[1].mean - t[2].mean)))


def time_groups(rows: list[Row]) -> dict[str, list[Row]]:
    """Plot name -> rows, for each (teacher, prune, samples, data) where a method ran with several
    iteration budgets: accuracy against training time, so a user can choose a schedule."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if r.mean is not None and not r.untrained:
            groups[(r.teacher, r.prune, r.samples, data_of(r.recipe))].append(r)
    out = {}
    for (teacher, prune, samples, data), sub in sorted(groups.items()):
        if any(len({r.iterations for r in line}) > 1 for line in by_method(sub).values()):
            tag = f"{teacher}_{prune}_{samples}_{Path(data).name}".replace(":", "-").replace(",", "+").replace(" ", "")
            out[f"acc_vs_time_{tag}.png"] = sub
    return out


_IN_COLUMNS = ("teacher", "prune", "samples", "data", "extra_data", "iterations", "method", "options", "seed")


def other_fields(rows: list[Row]) -> list[str]:
    """The recipe fields (``lr``, ``head_pruning``, ...) that differ between ``rows`` and that no
    column of the ablation and time tables shows: a run's label names them (:func:`labelled`)."""
    recipes = [r.recipe for r in rows]
    return sorted(k for k in {k for rec in recipes for k in rec} - set(_IN_COLUMNS) if _differ(k, recipes))


def labelled(row: Row, fields: list[str]) -> str:
    """:func:`ingredients`, followed by each of ``fields`` where the row's value is not the
    default, so that runs differing only there are told apart."""
    defaults = recipe_defaults()
    named = [f"{k}={row.recipe.get(k)}" for k in fields if row.recipe.get(k) != defaults.get(k)]
    return ", ".join([x for x in (ingredients(row), *named) if x])


def by_method(sub: list[Row]) -> dict[tuple[str, str], list[Row]]:
    """(method, label) -> its rows, in label order: one line of the time table; the label is
    :func:`labelled` by the fields that differ within ``sub``."""
    fields = other_fields(sub)
    lines: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in sub:
        lines[(r.method, labelled(r, fields))].append(r)
    return dict(sorted(lines.items()))


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
