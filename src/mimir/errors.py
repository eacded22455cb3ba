"""User-facing errors.

Every problem a user can fix (bad path, impossible sample count, unknown model...) raises
:class:`MimirError` with a one-line message naming the problem and the fix. The CLI prints it
as ``error: ...`` and exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MimirError(Exception):
    """A problem in the user's input, with a one-line message saying how to fix it."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        message = problem if fix is None else f"{problem}; {fix}"
        super().__init__(message)
        self.problem = problem
        self.fix = fix


def first_line(err: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message (at most ``limit`` characters), or its type's name
    when it has none: what a one-line error can quote of a library's many-line message."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__
