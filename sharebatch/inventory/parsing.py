"""A report's CSV data files parsed and sorted in child processes, one per core.

Reading a report is CPU work (inflating, CSV, decoding keys, sorting, spilling: some 5 us a
row) that must end before the run's first page, since data files come in no order: in one
process it keeps one core busy while the other waits, signing workers and all. Here each
downloaded, checked data file (a private copy, as Parquet's) goes to the least busy of
``Parsers``' children (``child``), which parses it with ``rows.CsvGzRows`` into a
``sort.KeySorter`` of its own (its share of the memory bound, its own private folder) and
removes the copy. When every file is in, each child spills what it holds and answers with its
run files, its counts and its part of the ``verify_sample`` sample; the run's sorter adopts
the runs (``KeySorter.adopt``), so pages merge them as if spilled in the run's process.

Messages both ways are ``child``'s framed pickles, over the pipes to the children.

A data file a child cannot read fails the report with the child's ``InventoryError`` (the
file named), as in one process; a child that dies fails the run (``RunCrashed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sharebatch import child
from sharebatch.errors import InventoryError, RunCrashed
from sharebatch.inventory.rows import Columns, CsvGzRows, Row
from sharebatch.inventory.sample import Sample
from sharebatch.inventory.sort import KeySorter

AHEAD = 2
"""Data files given to one child and not yet parsed: one parsing, one waiting on disk. The
downloads run ahead of the parsers by that much and no more (a hand-over waits for room,
holding its download's turn), so copies never pile up on disk."""
_READ = 1 << 18  # as the data files are read from S3


@dataclass
class Parsed:
    """What the children made of the files: each prefix's run files, the rows read and kept,
    and the sample's candidates."""

    runs: dict[str, list[Path]] = field(default_factory=dict)
    rows: int = 0
    kept: int = 0
    sample: list[Row] = field(default_factory=list)


@dataclass
class _Child:
    process: asyncio.subprocess.Process
    given: int = 0
    reader: asyncio.Task[None] | None = None
    result: tuple[dict[str, list[str]], list[Row]] | None = None


class Parsers:
    """Child processes parsing one report's CSV data files (``start``, ``parse`` each file,
    ``finish``; ``close`` in every case)."""

    def __init__(self) -> None:
        self._children: list[_Child] = []
        self._changed = asyncio.Condition()
        self._error: InventoryError | RunCrashed | None = None
        self._closing = False
        self._rows = 0
        self._kept = 0

    @classmethod
    async def start(
        cls,
        count: int,
        folder: Path,
        prefixes: list[str],
        bound: int,
        columns: Columns,
        sample: tuple[int, str],
    ) -> Parsers:
        """``count`` children, each with a private folder ``folder/parser-N`` for its runs
        and ``bound / count`` rows to hold."""
        parsers = cls()
        try:
            for number in range(count):
                place = folder / f"parser-{number}"
                place.mkdir(mode=0o700)
                process = await child.start(
                    "sharebatch.inventory.parsing",
                    "serve",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
                one = _Child(process)
                parsers._children.append(one)
                setup = (str(place), prefixes, max(1, bound // count), columns, sample)
                await parsers._send(one, setup)
                one.reader = asyncio.ensure_future(parsers._read(one))
        except BaseException:
            await parsers.close()
            raise
        return parsers

    def pids(self) -> list[int]:
        """The children's process ids."""
        return [one.process.pid for one in self._children]

    async def parse(self, path: Path, where: str) -> None:
        """Hand the data file at ``path`` (a private copy, which the child removes) to the
        least busy child, once one has room; the first failure so far is raised here."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._error is not None or any(c.given < AHEAD for c in self._children)
            )
            if self._error is not None:
                raise self._error
            one = min(self._children, key=lambda c: c.given)
            one.given += 1
        await self._send(one, (str(path), where))

    async def finish(self) -> Parsed:
        """Every file given was parsed: the children's runs, counts and sample."""
        for one in self._children:
            stdin = one.process.stdin
            if stdin is not None:
                stdin.close()
        await asyncio.gather(*(c.reader for c in self._children if c.reader is not None))
        if self._error is not None:
            raise self._error
        parsed = Parsed(rows=self._rows, kept=self._kept)
        for one in self._children:
            assert one.result is not None  # else the reader set an error
            runs, sample = one.result
            for prefix, paths in runs.items():
                parsed.runs.setdefault(prefix, []).extend(Path(p) for p in paths)
            parsed.sample += sample
        for one in self._children:
            await one.process.wait()
        return parsed

    async def close(self) -> None:
        """Stop every child still running and wait for it."""
        self._closing = True
        for one in self._children:
            if one.reader is not None and not one.reader.done():
                one.reader.cancel()
            if one.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    one.process.kill()
        for one in self._children:
            await one.process.wait()

    async def _send(self, one: _Child, message: object) -> None:
        stdin = one.process.stdin
        assert stdin is not None
        try:
            stdin.write(child.frame(message))
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            # The child is gone: its reader says why (its error, or how it ended).
            if one.reader is not None:
                await asyncio.shield(one.reader)
            if self._error is not None:
                raise self._error from None
            raise

    async def _read(self, one: _Child) -> None:
        stdout = one.process.stdout
        assert stdout is not None
        try:
            while True:
                message = await child.receive(stdout)
                async with self._changed:
                    kind = message[0]
                    if kind == "done":
                        _, rows, kept = message
                        one.given -= 1
                        self._rows += rows
                        self._kept += kept
                    elif kind == "error":
                        _, code, text = message
                        if self._error is None:
                            self._error = InventoryError(code, text)
                    else:
                        _, runs, sample = message
                        one.result = (runs, sample)
                    self._changed.notify_all()
                if kind != "done":
                    return
        except asyncio.IncompleteReadError:
            code = await one.process.wait()
            if self._closing:
                return
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            async with self._changed:
                if self._error is None:
                    self._error = RunCrashed(
                        f"an inventory parser (process {one.process.pid}) ended ({how})"
                        " before the report was read"
                    )
                self._changed.notify_all()


def parse_file(path: Path, columns: Columns, accept: Any, where: str) -> None:
    """Every row of the CSV.gz data file at ``path`` to ``accept``, a chunk at a time."""
    rows = CsvGzRows(columns, accept, where)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with open(fd, "rb") as source:
        while chunk := source.read(_READ):
            rows.feed(chunk)
    rows.finish()


def serve() -> None:
    """The child's program: the setup, then data files until the pipe closes; each parsed
    into its sorter and removed, answered with its counts; at the end its runs and sample."""
    child.as_child()
    # Rows and their lists hold no cycles, and the process ends with the report: the
    # collector's passes over a growing heap of rows would free nothing (a fifth of the
    # parse's CPU in the run's process, measured).
    gc.disable()
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    place, prefixes, bound, columns, (size, seed) = child.read(source)
    # The bucket is the parent's to add: a child never makes a page.
    sorter = KeySorter(Path(place), "", prefixes, bound)
    sample = Sample(size, seed)
    counts = [0, 0]  # of the file being parsed: rows read, rows kept

    def accept(rows: list[Row]) -> None:
        counts[0] += len(rows)
        kept = sorter.keep(rows)
        counts[1] += len(kept)
        if size:
            for row in kept:
                sample.offer(row)

    while True:
        try:
            path, where = child.read(source)
        except EOFError:
            break  # the parent closed the pipe: no more files
        counts[:] = [0, 0]
        try:
            parse_file(Path(path), columns, accept, where)
        except InventoryError as exc:
            child.send(sink, ("error", exc.code, str(exc).removeprefix(f"{exc.code}: ")))
            return
        finally:
            Path(path).unlink(missing_ok=True)
        child.send(sink, ("done", *counts))
    sorter.spill()
    runs = {prefix: [str(p) for p in paths] for prefix, paths in sorter.runs().items() if paths}
    child.send(sink, ("result", runs, sample.rows()))
