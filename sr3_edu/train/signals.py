"""Stopping a run cleanly: SIGTERM, what batch schedulers send before they stop a job, handled like Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["sigterm_as_interrupt"]


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While training, SIGTERM acts as Ctrl-C: the loop saves its last whole step before the process ends.
    Only the main thread can set signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
