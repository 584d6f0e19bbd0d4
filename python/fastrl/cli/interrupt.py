"""Ctrl-C as :class:`Interrupted`, so a command's own exit status survives it.

CPython's ``Py_Main`` remembers when a bare ``KeyboardInterrupt`` left code that ran from
source text (``exec``/``eval`` of a string: dataclasses, namedtuple and friends do this while
a trial builds its objects), even if an outer ``except`` caught it later, and then ends the
process with SIGINT instead of the status ``main()`` returned. The check compares the
exception's type for identity, so raising a subclass keeps ``return 130`` an exit 130.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT); ``except KeyboardInterrupt`` still catches it."""


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


@contextlib.contextmanager
def ctrl_c_raises_interrupted() -> Iterator[None]:
    """Within the block, SIGINT raises :class:`Interrupted` (main thread, default handler only:
    a process that inherited SIGINT ignored, or has its own handler, keeps it)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    signal.signal(signal.SIGINT, raise_interrupted)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is raise_interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)
