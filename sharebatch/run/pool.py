"""Signing workers: ``--workers N`` processes that sign, stage and render pages for the run.

The asyncio listing stays in the run's process; each page's signing, row staging and
``link_issued`` lines (nine tenths of a link's cost) go to one of N worker processes
(``run/worker``). A worker writes a page's text to its own spool file and answers with where
it is (an ``Answer``); the run copies those bytes into its part files and audit log in the
kernel (``PartFile.copy_in``), so no link's text crosses the pipe. ``pipeline`` keeps each
listing's pages in order: the pages of one listing may be on several workers at once, and are
copied in the order they were listed. The spool files (0600: presigned URLs) live in the
run's staging folder; a segment is removed once every page in it was copied or dropped, and
the folder with whatever is left when the pool closes, whatever ended the run.

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
import shutil
import signal
from collections import deque
from pathlib import Path

from sharebatch import child
from sharebatch.errors import RunCrashed
from sharebatch.models import ObjectRef
from sharebatch.run.worker import SEGMENT, Result, RouteSpec, pack, spool_path

AUTO_AFTER = 20_000
"""With ``workers`` left to the run, workers start once this many objects were listed: a
worker costs about 0.1 s to start, which a run of a few thousand links would not win back."""

Wanted = list[tuple[int, list[ObjectRef], list[str] | None]]
"""Per route of a page: (route index, the objects it chose, their link ids or None)."""


SPOOL_SEGMENT = SEGMENT
"""Bytes of a worker's spool segment (tests make it small, to see segments come and go)."""

WORKER_PEAKS_KIB: list[int] = []
"""Each worker's peak RSS (VmHWM, KiB) as the pool closed it, Linux only: the memory bench
adds them to the run's own, since RUSAGE_CHILDREN would not sum peaks held at the same time."""


class _Segment:
    """One spool segment of a worker, open for reading while pages in it are to be copied."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self.users = 0
        self.finished = False  # the worker writes a later segment now

    def release(self) -> None:
        self.users -= 1
        self.drop_if_done()

    def drop_if_done(self) -> bool:
        if self.finished and self.users <= 0 and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        return self.fd < 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Answer:
    """A page a worker staged: ``results`` per route, their bytes from ``start`` on in the
    spool segment open at ``fd``. ``release`` once copied or dropped."""

    __slots__ = ("_segment", "results", "start")

    def __init__(self, segment: _Segment, start: int, results: list[Result]) -> None:
        self._segment = segment
        self.start = start
        self.results = results

    @property
    def fd(self) -> int:
        return self._segment.fd

    def release(self) -> None:
        self._segment.release()


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process, number: int, spool: Path) -> None:
        self.process = process
        self.number = number
        self.spool = spool
        self.waiting: deque[asyncio.Future[Answer]] = deque()
        self.reader: asyncio.Task[None] | None = None
        self.segments: dict[int, _Segment] = {}

    def segment(self, number: int) -> _Segment:
        """The segment an answer's page is in; the ones before it are complete."""
        found = self.segments.get(number)
        if found is None:
            for older in list(self.segments.values()):
                older.finished = True
            self.segments = {k: s for k, s in self.segments.items() if not s.drop_if_done()}
            found = self.segments[number] = _Segment(spool_path(self.spool, self.number, number))
        return found

    def close(self) -> None:
        for segment in self.segments.values():
            segment.close()
        self.segments = {}


class Pool:
    """N signing workers for the S3 routes of ``routes``; ``submit`` a page, await its answer.

    At most ``2 x N`` pages are out at once, from ``submit`` until the caller is ``done_with``
    its answer (appended, or dropped): memory holds a few pages per worker, never a listing,
    however slow one page of a listing is, and every worker has its next page waiting when it
    finishes one.
    """

    def __init__(self, size: int, routes: dict[int, RouteSpec], spool: Path) -> None:
        self.size = size
        self._routes = routes
        self._spool = spool
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
        self._spool.mkdir(mode=0o700)
        for number in range(self.size):
            process = await child.start(
                "sharebatch.run.worker",
                "serve",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            worker = _Worker(process, number, self._spool)
            self._workers.append(worker)
            worker.reader = asyncio.create_task(self._read(worker))
            assert process.stdin is not None
            init = ("init", self._routes, str(self._spool), number, SPOOL_SEGMENT)
            process.stdin.write(child.frame(init))

    @property
    def pids(self) -> list[int]:
        """The workers' process ids (tests stop one to see the run fail)."""
        return [worker.process.pid for worker in self._workers]

    async def submit(self, wanted: Wanted) -> asyncio.Future[Answer]:
        """Send one page to the least busy worker; the future holds its answer."""
        await self._room.acquire()
        if self._broken is not None:
            self._room.release()
            raise self._broken
        worker = min(self._workers, key=lambda w: len(w.waiting))
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        worker.waiting.append(answer)
        stdin = worker.process.stdin
        assert stdin is not None
        try:
            stdin.write(
                child.frame(("page", [(r, pack(chosen), ids) for r, chosen, ids in wanted]))
            )
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            await self._ended(worker)
        return answer

    def done_with(self, answer: asyncio.Future[Answer]) -> None:
        """One answer ``submit`` gave was copied or dropped: room for the next page, and its
        spool segment may go."""
        self._room.release()
        if answer.done() and not answer.cancelled() and answer.exception() is None:
            answer.result().release()

    async def _read(self, worker: _Worker) -> None:
        stdout = worker.process.stdout
        assert stdout is not None
        try:
            while True:
                message = await child.receive(stdout)
                answer = worker.waiting.popleft()
                if message[0] != "ok":
                    if not answer.done():
                        answer.set_exception(message[1])
                    continue
                _, number, start, results = message
                try:
                    segment = worker.segment(number)
                except OSError as exc:
                    if not answer.done():
                        answer.set_exception(exc)
                    continue
                if not answer.done():  # else its listing was cancelled meanwhile
                    segment.users += 1
                    answer.set_result(Answer(segment, start, results))
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
        """End the workers: a closed pipe lets each finish, ``kill`` stops them at once; then
        remove the spool files."""
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
        try:
            for worker in self._workers:
                try:
                    await asyncio.wait_for(worker.process.wait(), 5)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()
                    await worker.process.wait()
        finally:
            # Presigned URLs: gone with the pool, however it ended (the staging folder's
            # removal would take them too, but a run that fails late keeps it a while).
            for worker in self._workers:
                worker.close()
            self._workers = []
            shutil.rmtree(self._spool, ignore_errors=True)


def _peak_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0
