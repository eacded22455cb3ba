"""Generated blocks in Markdown files: the text between a start marker and an end marker is
replaced by a command's output, never edited by hand. :func:`replace_block` is the one function
that writes such a block (``mimir report --readme``, ``mimir models --timm --readme`` and
``benchmarks/deploy_speed.py`` all call it); it imports nothing from mimir."""

from __future__ import annotations

from pathlib import Path


def replace_block(path: str | Path, start: str, end: str, body: str, start_line: str | None = None) -> bool:
    """Put ``body`` and a newline between the line holding ``start`` and the next ``end`` of the
    file at ``path`` (an empty ``body``: nothing, the end marker starts the next line).

    The start marker's line is kept as it is, or replaced by ``start_line`` when given (a block
    whose first line is generated too); the end marker and everything after it are kept. Returns
    False, and leaves the file untouched, when the file lacks either marker."""
    path = Path(path)
    text = path.read_text()
    i = text.find(start)
    j = text.find(end, i)
    if i < 0 or j < 0:
        return False
    line = text[i:j].split("\n", 1)[0] if start_line is None else start_line
    path.write_text(text[:i] + line + "\n" + (body + "\n" if body else "") + text[j:])
    return True


def read_block(path: str | Path, start: str, end: str) -> str | None:
    """The text between the markers (without them), or None."""
    text = Path(path).read_text()
    i = text.find(start)
    j = text.find(end, i)
    return None if i < 0 or j < 0 else text[i:j].split("\n", 1)[1].strip("\n")
