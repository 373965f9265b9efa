"""A function of ours in a process of its own: signing workers, the merge's audit log.

Started as ``python -c`` with ``boot``'s program, not through ``multiprocessing``, whose start
methods import the parent's ``__main__`` (the CLI, boto and all) into every child: the program
registers an empty ``sharebatch`` package over this very copy's folder (``PACKAGE``, its one
argument), so the child imports the modules it runs and what they import, never
``sharebatch/__init__`` (the whole library). The arguments after the folder are the
function's (``sys.argv[2:]``).

A child ignores SIGINT and SIGTERM (``as_child``): its parent decides, and stops it when the
parent stops (a closed pipe, or a kill); and it dies with its parent (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import pickle
import signal
import struct
import sys
from pathlib import Path
from typing import IO, Any

PACKAGE = str(Path(__file__).resolve().parent)
"""The folder a child imports ``sharebatch`` from: this very copy."""

_PR_SET_PDEATHSIG = 1
_HEADER = struct.Struct(">I")


def boot(module: str, function: str) -> str:
    """The ``python -c`` program that imports ``function`` from ``module`` of the package at
    ``sys.argv[1]`` without the package's public face, and calls it."""
    return (
        "import sys, types\n"
        "package = types.ModuleType('sharebatch')\n"
        "package.__path__ = [sys.argv[1]]\n"
        "sys.modules['sharebatch'] = package\n"
        f"from {module} import {function}\n"
        f"{function}()\n"
    )


def cores() -> int:
    """How many cores this process may run on: how many children of one kind pay."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: every core the machine has
        return os.cpu_count() or 1


_PARENT = "SHAREBATCH_PARENT_PID"
"""The parent's process id, as the child is given it: how a child knows it was orphaned."""


async def start(
    module: str,
    function: str,
    *args: str,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> asyncio.subprocess.Process:
    """``function`` of ``module`` running in a child process with ``args``; the streams are
    ``asyncio.create_subprocess_exec``'s."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        boot(module, function),
        PACKAGE,
        *args,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env={**os.environ, _PARENT: str(os.getpid())},
    )


def as_child() -> None:
    """What a child does first: SIGINT and SIGTERM ignored (a terminal's Ctrl-C reaches the
    whole process group; the parent stops its children itself), and death with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: a closed pipe or a kill still ends it
        return
    # The parent died before the call: the child was given to another. (Not "the parent is
    # 1": in a container the parent, the command, often is.)
    parent = os.environ.get(_PARENT)
    if parent is not None and os.getppid() != int(parent):
        os._exit(1)


# Messages between a parent and its children: pickles framed by their length. Only our own
# processes write them, on the pipes between them: nobody else's pickle is loaded.


def frame(message: object) -> bytes:
    """``message`` as it goes down a pipe."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


async def receive(stream: asyncio.StreamReader) -> Any:
    """The next message from a child's pipe; ``asyncio.IncompleteReadError`` once it ended."""
    (size,) = _HEADER.unpack(await stream.readexactly(_HEADER.size))
    return pickle.loads(await stream.readexactly(size))  # noqa: S301 - our child's pipe


def read(stream: IO[bytes]) -> Any:
    """The next message from the parent's pipe (a child's stdin); ``EOFError`` once the
    parent closed it."""
    (size,) = _HEADER.unpack(_exactly(stream, _HEADER.size))
    return pickle.loads(_exactly(stream, size))  # noqa: S301 - our parent's pipe


def send(stream: IO[bytes], message: object) -> None:
    """``message`` up to the parent (a child's stdout), flushed."""
    stream.write(frame(message))
    stream.flush()


def _exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data
