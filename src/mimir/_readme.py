"""Generated blocks in Markdown files: the text between a start marker and an end marker is
replaced by a command's output, never edited by hand."""

from __future__ import annotations

from pathlib import Path


def replace_block(path: str | Path, start: str, end: str, body: str) -> bool:
    """Put ``body`` between the line starting with ``start`` (kept) and ``end``; False when the file
    has no such markers."""
    path = Path(path)
    text = path.read_text()
    i = text.find(start)
    j = text.find(end, i)
    if i < 0 or j < 0:
        return False
    head = text[:i] + text[i:].split("\n", 1)[0] + "\n"
    path.write_text(head + body.strip("\n") + "\n" + text[j:])
    return True


def read_block(path: str | Path, start: str, end: str) -> str | None:
    """The text between the markers (without them), or None."""
    text = Path(path).read_text()
    i = text.find(start)
    j = text.find(end, i)
    return None if i < 0 or j < 0 else text[i:j].split("\n", 1)[1].strip("\n")
