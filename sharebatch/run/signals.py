"""SIGINT and SIGTERM end a run cleanly: cron's timeout, systemd's stop and Ctrl-C alike.

``run_interruptible`` runs the run's coroutine with both signals routed to one place: the first
signal cancels the run's task, whose ``CancelledError`` the runner turns into an ``interrupted``
summary and audit event, with staging and bundles removed, then ``Interrupted`` (exit 130 for
SIGINT, 143 for SIGTERM). Cancellation reaches every listing at its next await, so listing and
signing stop at once (signing yields to the loop every few hundred links).

Once the runner ``commit``s (its final summary is about to be written) a signal no longer
cancels: the run has finished, and its summary must agree with its exit code.

A second signal means the operator insists: the default action runs (the process ends at once,
without cleaning up). A signal ignored when the run starts (``nohup``, a background job of a
shell without job control) stays ignored.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

from sharebatch.errors import Interrupted

T = TypeVar("T")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class _Run:
    loop: asyncio.AbstractEventLoop | None = None
    task: asyncio.Task[Any] | None = None
    received: str | None = None
    committed: bool = False


# Signals are process-wide, and so is the run they stop.
_current = _Run()


def received() -> str | None:
    """The name of the signal that stopped the current run (``SIGTERM``), if one did."""
    return _current.received


def commit() -> None:
    """From now on the run finishes whatever arrives: its outcome is being recorded."""
    _current.committed = True


def _cancel() -> None:
    task = _current.task
    if task is not None and not task.done() and not _current.committed:
        task.cancel()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _current.received is not None:
        # Second signal: stop trying to be clean.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _current.received = signal.Signals(signum).name
    if _current.loop is not None:
        # The handler runs between two bytecodes of whatever the loop was doing; the cancel is
        # queued (and the loop woken) rather than done from the middle of it.
        _current.loop.call_soon_threadsafe(_cancel)


@contextmanager
def _installed() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; the host application owns signals
        return
    previous = {}
    for number in _SIGNALS:
        current = signal.getsignal(number)
        if current is signal.SIG_IGN:
            continue
        previous[number] = current
        signal.signal(number, _on_signal)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_interruptible(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` with SIGINT and SIGTERM cancelling it; raises ``Interrupted``."""
    global _current
    _current = run = _Run()

    async def main() -> T:
        run.loop = asyncio.get_running_loop()
        run.task = asyncio.current_task()
        try:
            return await coro
        except asyncio.CancelledError:
            if run.received is None:
                raise
            raise Interrupted(run.received) from None

    try:
        with _installed():
            return asyncio.run(main())
    finally:
        coro.close()  # never awaited if the loop failed to start; a no-op otherwise
        _current = _Run()
