"""Signing workers: ``--workers N`` processes that sign, stage and render pages for the run.

The asyncio listing stays in the run's process; each page's signing, row staging and
``link_issued`` lines (nine tenths of a link's cost) go to one of N worker processes
(``run/worker``), and the answers come back as text the run appends to its part files and
audit log. ``pipeline`` keeps each listing's pages in order: the pages of one listing may be on
several workers at once, and are appended in the order they were listed.

Workers are plain ``python -c`` children on pipes, not ``multiprocessing``: its start methods
import the parent's ``__main__`` (the CLI, boto and all) into every child, and a worker needs
none of it. Each worker is given the run's frozen credentials once, down its pipe. A worker
that ends while the run needs it fails the run (``RunCrashed``, exit 1); a run that stops
(a signal, a failure) kills its workers before it records how it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import sys
from collections import deque
from pathlib import Path

from sharebatch.errors import RunCrashed
from sharebatch.models import ObjectRef
from sharebatch.run.worker import BOOT, HEADER, Result, RouteSpec, pack

AUTO_AFTER = 20_000
"""With ``workers`` left to the run, workers start once this many objects were listed: a
worker costs about 0.1 s to start, which a run of a few thousand links would not win back."""

Wanted = list[tuple[int, list[ObjectRef], list[str] | None]]
"""Per route of a page: (route index, the objects it chose, their link ids or None)."""


_ANSWER_LIMIT = 4 << 20
"""Bytes of answers read ahead of the run's appending, per worker (memory: at most this much
more than the answers themselves)."""

_PACKAGE = str(Path(__file__).resolve().parent.parent)
"""The folder a worker imports ``sharebatch`` from: this very copy."""


WORKER_PEAKS_KIB: list[int] = []
"""Each worker's peak RSS (VmHWM, KiB) as the pool closed it, Linux only: the memory bench
adds them to the run's own, since RUSAGE_CHILDREN would not sum peaks held at the same time."""


def cores() -> int:
    """How many cores this process may run on: the default number of workers."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: every core the machine has
        return os.cpu_count() or 1


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.waiting: deque[asyncio.Future[list[Result]]] = deque()
        self.reader: asyncio.Task[None] | None = None


class Pool:
    """N signing workers for the S3 routes of ``routes``; ``submit`` a page, await its answer.

    At most ``2 x N`` pages are out at once, from ``submit`` until the caller is ``done_with``
    its answer (appended, or dropped): memory holds a few pages per worker, never a listing,
    however slow one page of a listing is, and every worker has its next page waiting when it
    finishes one.
    """

    def __init__(self, size: int, routes: dict[int, RouteSpec]) -> None:
        self.size = size
        self._routes = routes
        self._workers: list[_Worker] = []
        self._room = asyncio.Semaphore(2 * size)
        self._broken: RunCrashed | None = None
        self._closing = False
        self.ended = asyncio.Event()
        """Set when a worker ended before ``close``: ``broken`` says which and how."""

    @property
    def broken(self) -> RunCrashed | None:
        """The run's failure once a worker ended before its time."""
        return self._broken

    async def start(self) -> None:
        folder = _PACKAGE
        init = _frame(("init", self._routes))
        for _ in range(self.size):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                BOOT,
                folder,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                # An answer is ~1.7 KB a link, 1.7 MB a page: with the default 64 KiB limit the
                # reader paused and resumed the pipe at every read of a page's answer.
                limit=_ANSWER_LIMIT,
            )
            worker = _Worker(process)
            self._workers.append(worker)
            worker.reader = asyncio.create_task(self._read(worker))
            assert process.stdin is not None
            process.stdin.write(init)

    @property
    def pids(self) -> list[int]:
        """The workers' process ids (tests stop one to see the run fail)."""
        return [worker.process.pid for worker in self._workers]

    async def submit(self, wanted: Wanted) -> asyncio.Future[list[Result]]:
        """Send one page to the least busy worker; the future holds its answer."""
        await self._room.acquire()
        if self._broken is not None:
            self._room.release()
            raise self._broken
        worker = min(self._workers, key=lambda w: len(w.waiting))
        answer: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        worker.waiting.append(answer)
        stdin = worker.process.stdin
        assert stdin is not None
        try:
            stdin.write(_frame(("page", [(r, pack(chosen), ids) for r, chosen, ids in wanted])))
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            await self._ended(worker)
        return answer

    def done_with(self) -> None:
        """One answer ``submit`` gave was appended or dropped: room for the next page."""
        self._room.release()

    async def _read(self, worker: _Worker) -> None:
        stdout = worker.process.stdout
        assert stdout is not None
        try:
            while True:
                (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
                kind, body = pickle.loads(await stdout.readexactly(size))  # noqa: S301 - our child
                answer = worker.waiting.popleft()
                if answer.done():  # its listing was cancelled meanwhile
                    continue
                if kind == "ok":
                    answer.set_result(body)
                else:
                    answer.set_exception(body)
        except asyncio.IncompleteReadError:
            await self._ended(worker)

    async def _ended(self, worker: _Worker) -> None:
        code = await worker.process.wait()
        if self._closing:
            return
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        if self._broken is None:
            self._broken = RunCrashed(
                f"signing worker {worker.process.pid} ended ({how}) before the run was done"
            )
            self.ended.set()
        while worker.waiting:
            answer = worker.waiting.popleft()
            if not answer.done():
                answer.set_exception(self._broken)

    async def close(self, *, kill: bool = False) -> None:
        """End the workers: a closed pipe lets each finish, ``kill`` stops them at once."""
        self._closing = True
        for worker in self._workers:
            WORKER_PEAKS_KIB.append(_peak_kib(worker.process.pid))
        for worker in self._workers:
            if worker.reader is not None:
                worker.reader.cancel()
            with contextlib.suppress(ProcessLookupError, OSError):
                if kill or self._broken is not None:
                    worker.process.kill()
                elif worker.process.stdin is not None:
                    worker.process.stdin.close()
        for worker in self._workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                await worker.process.wait()
        self._workers = []


def _frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def _peak_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0
