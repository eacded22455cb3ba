"""How a recipe names an object that was passed to the Python API (an ``nn.Module``, an image set):
a recipe holds names only, so it records ``<in-memory TYPE>`` and refuses to run from that name alone."""

from __future__ import annotations

from mimir.errors import MimirError

IN_MEMORY = "<in-memory "


def in_memory_name(obj: object) -> str:
    return f"{IN_MEMORY}{type(obj).__name__}>"


def refuse_in_memory(name: object, what: str, argument: str) -> None:
    """A one-line error when ``name`` stands for an in-memory object the recipe cannot hold."""
    if isinstance(name, str) and name.startswith(IN_MEMORY):
        raise MimirError(f"the recipe's {what} was {name[1:-1]} object, which a recipe cannot hold",
                         f"pass it again: mimir.compress({argument}, recipe=...)")
