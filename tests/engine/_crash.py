"""A run that dies right after writing its first checkpoint, as a crash would."""

from contextlib import contextmanager

import pytest


class Crash(Exception):
    pass


@contextmanager
def crash_after_first_checkpoint():
    """Inside: the loop writes its checkpoint, then raises; the block must end in that crash."""
    import mimir.engine.loop as loop

    saved = loop.save_training_state

    def save_then_die(*args, **kwargs):
        saved(*args, **kwargs)
        raise Crash

    loop.save_training_state = save_then_die
    try:
        with pytest.raises(Crash):
            yield
    finally:
        loop.save_training_state = saved
