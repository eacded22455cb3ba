"""A grid cell and its key: what the cell runs, every setting as it resolves.

A cell is finished when the results file holds a record that ran exactly what the cell would run
now. Both sides are reduced to one key (:func:`identity`): every recipe field, with the defaults
that depend on where the grid is expanded resolved (``round_to``: this CPU's channel block, which
the cell then runs with on whatever node it lands), the settings that do not apply left out
(``round_to``, ``importance``, ``global`` for a scheme that prunes no channels; ``head_pruning``
for a teacher without attention), and every option of the method in effect (its defaults for the
teacher's family under the options given). A changed default therefore changes the key of every
cell it touches, and the records made before the change stop counting as finished.

A record is keyed by what it holds (the recipe as run, the options in effect), never by the key it
was written with, so results files of earlier versions stay readable and their cells that still
hold are not run again; what an older record does not hold is read as what it meant then
(:data:`UNRECORDED`, :attr:`~mimir.methods.Method.unrecorded_options`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from mimir.methods import get_method
from mimir.prune import parse_scheme, resolve_round_to
from mimir.recipe import Recipe, recipe_defaults
from mimir.resolve import architecture_family

#: what a recipe field meant in a record that does not hold it, or holds it unresolved, where that
#: differs from today's default: before ``head_pruning`` existed, channel pruning dropped whole
#: attention heads; before an unset ``round_to`` meant the CPU's block, it meant no rounding
UNRECORDED = {"head_pruning": "heads", "round_to": 1}


@dataclass(frozen=True)
class Cell:
    """One cell of a grid: the recipe as the grid gives it, the recipe it runs with (defaults that
    depend on the machine resolved), its key, and where in the grid file it comes from."""

    recipe: Recipe
    run: Recipe
    key: str
    at: str = ""

    def __getattr__(self, name: str):
        """A cell reads as the recipe the grid gives: ``cell.samples`` is ``cell.recipe.samples``."""
        if name.startswith("__") or name in ("recipe", "run", "key", "at"):   # unpickling: not yet set
            raise AttributeError(name)
        return getattr(self.recipe, name)

    def describe(self) -> str:
        return self.recipe.describe()


def make_cell(recipe: Recipe, at: str = "") -> Cell:
    """The cell of ``recipe``: an unset ``round_to`` of a channel scheme becomes this CPU's block."""
    run = recipe
    if parse_scheme(recipe.prune).prunes_channels and recipe.round_to is None:
        run = recipe.with_(round_to=resolve_round_to(None))
    family = architecture_family(recipe.teacher)
    return Cell(recipe, run, identity(run.to_dict(), get_method(recipe.method).in_effect(recipe.options, family),
                                      family), at)


def recipe_of(record: dict) -> dict:
    """The full recipe of a result line as the grid gave it, every field present (lines written
    before recipes were recorded hold the benchmark cell's fields under ``config``; the rest take
    their defaults)."""
    return {**recipe_defaults(), **_given(record)}


def options_of(method: str, given: dict, recorded: dict | None) -> dict:
    """The method's options in effect in a run: as its record holds them, or, for records older
    than that, the method's defaults of then under the options given."""
    if recorded is not None:
        return recorded
    spec = get_method(method)
    return {**(spec.unrecorded_options or spec.options), **given}


def record_key(record: dict) -> str:
    """The key of what a finished record ran (see the module docstring), whatever key it was written with."""
    as_run = (record.get("summary") or {}).get("recipe") or _given(record)
    fields = {**recipe_defaults(), **{k: v for k, v in UNRECORDED.items() if k not in as_run}, **as_run}
    if fields.get("round_to") is None:
        fields["round_to"] = UNRECORDED["round_to"]
    options = options_of(fields["method"], fields.get("options") or {},
                         (record.get("summary") or {}).get("method_options"))
    return identity(fields, options, architecture_family(fields["teacher"]))


def identity(fields: dict, options: dict, family: str) -> str:
    """A stable 16-hex key of a recipe's fields (as run) and its method's options in effect."""
    fields = {k: v for k, v in fields.items() if k != "options"}
    if fields.get("eval_data") == "auto":
        fields["eval_data"] = "fashion-mnist" if fields["data"] == "fashion-mnist" else None
    scheme = parse_scheme(fields["prune"])
    for name in ("round_to", "importance", "global_pruning") if not scheme.prunes_channels else ():
        fields.pop(name, None)
    if not scheme.prunes_channels or family != "transformer":
        fields.pop("head_pruning", None)
    text = json.dumps({"recipe": fields, "options": options}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def finished_records(records: list[dict], cells: list[Cell]) -> dict[str, dict]:
    """Key of a cell of ``cells`` -> the latest finished record of ``records`` that ran it."""
    teachers = {c.recipe.teacher for c in cells}
    keys = {c.key for c in cells}
    done: dict[str, dict] = {}
    for r in records:
        if r.get("status") == "ok" and recipe_of(r)["teacher"] in teachers:
            key = record_key(r)
            if key in keys:
                done[key] = r
    return done


def finished_keys(records: list[dict], cells: list[Cell]) -> set[str]:
    """The keys of the cells of ``cells`` that a finished record of ``records`` ran."""
    return set(finished_records(records, cells))


def outdated(records: list[dict], cells: list[Cell]) -> list[Cell]:
    """The cells not finished although a finished record holds their recipe as the grid gives it:
    it ran before a default changed (or with another CPU's channel block), so they run again."""
    done = finished_keys(records, cells)
    given = {_text(recipe_of(r)) for r in records if r.get("status") == "ok"}
    return [c for c in cells if c.key not in done and _text(c.recipe.to_dict()) in given]


def _given(record: dict) -> dict:
    return record.get("recipe") or record.get("config") or {}


def _text(fields: dict) -> str:
    return json.dumps(fields, sort_keys=True, default=str)
