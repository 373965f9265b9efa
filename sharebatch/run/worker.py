"""A signing worker process: signs, stages and renders the audit lines of the pages it is sent.

``run/pool`` starts each worker as ``python -c`` with ``BOOT``, which imports this module
without the package's public face (``sharebatch/__init__`` imports the whole library, boto
among it): a worker holds the signer, the part files' row staging and the audit chain, and
stays small. It reads frames (``child.frame``: a 4-byte big-endian length, then a pickle) from
stdin and answers each with one frame on stdout, in the order asked:

* ``("init", {route: RouteSpec}, spool, number, segment)`` once: what each route's
  ``sign.Signer`` is built from (the run's frozen credentials included: a pipe, never a log or
  a file), the folder of the spool files, this worker's number and the size of a spool
  segment; no answer;
* ``("page", [(route, chosen, ids)])`` per page: ``chosen`` the route's selected objects of
  the page as ``pack`` gives them (columns: each route's own, so an object two routes chose
  travels twice, cheaper still than one named tuple with its datetime), ``ids`` the link ids the
  parent drew for them in a one-process run's order; the answer is
  ``("ok", segment, start, results)``, a ``Result`` per route in the order asked, or
  ``("error", exception)``.

Every piece is the one a one-process run calls (``Signer.sign_get``, ``PartFile.write``,
``audit.link_issued``), into memory instead of files. A page's text (per route its JSON lines,
CSV rows and audit lines, UTF-8, one after the other) is then written to the worker's own
spool file (``spool_path``, 0600 in the run's staging folder: the text holds presigned URLs)
at ``start``, and only the lengths cross the pipe: the parent copies the bytes into its part
files and audit log in listing order (``PartFile.copy_in``), exactly the bytes it would have
written itself. Sending 1.7 KB of text a link through the pipe, pickled on both sides, was
the biggest share of the parent's work, and the parent is the bound with two workers. A
worker starts a new spool segment every ``SEGMENT`` bytes (by default) so that the parent can remove
those it has copied: the disk holds a few segments, never a second copy of the run.

A worker ignores SIGINT and SIGTERM (its parent stops it: a closed stdin ends it, or a kill)
and dies with its parent (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sharebatch import audit, child
from sharebatch.models import Credentials, Expiry, ObjectRef, ShortCredentials
from sharebatch.run import link_ids
from sharebatch.run.bundles import PartFile
from sharebatch.run.sign import Signer, credential_limit, stage_chunk
from sharebatch.s3.workersign import FastSpec, worker_presigner

BOOT = child.boot("sharebatch.run.worker", "serve")
"""The worker's ``python -c`` program; its one argument is the package's folder."""


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One S3 route's signer, as ``pipeline._route_tallies`` builds it, and its staging."""

    job: str
    recipient: str
    spec: FastSpec
    credentials: Credentials
    expiry: Expiry
    download_name: str
    content_type: str | None
    on_short_credentials: ShortCredentials
    link_ids: bool
    csv: bool


Packed = tuple[str, list[str], list[int], list[str], list[int]] | list[ObjectRef]
"""A route's chosen objects as they cross the pipe: columns (bucket, keys, sizes, etags,
microseconds since the epoch) or, when they do not fit columns, the objects themselves."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def pack(objects: list[ObjectRef]) -> Packed:
    """``objects`` for the pipe. Pickling a page of named tuples with their datetimes cost the
    parent 2.5 us an object, a fifth of its share of a link; columns of plain values cost 0.4.
    Whole microseconds since the epoch come back exactly (a float timestamp might not)."""
    if not objects:
        return objects
    bucket = objects[0].bucket
    if any(o.bucket != bucket or o.last_modified.tzinfo is not UTC for o in objects):
        return objects
    # A listing's parser gives objects written in the same second one datetime (its cache):
    # each is converted once, by its id (the objects, and so their times, outlive the call).
    micros: dict[int, int] = {}
    moments = []
    for o in objects:
        moment = o.last_modified
        found = micros.get(id(moment))
        if found is None:
            found = micros[id(moment)] = (moment - _EPOCH) // _MICROSECOND
        moments.append(found)
    return (
        bucket,
        [o.key for o in objects],
        [o.size for o in objects],
        [o.etag for o in objects],
        moments,
    )


def unpack(packed: Packed) -> list[ObjectRef]:
    """The objects ``pack`` was given, equal field for field."""
    if isinstance(packed, list):
        return packed
    bucket, keys, sizes, etags, moments = packed
    epoch, unit = _EPOCH, _MICROSECOND
    # Equal times share one datetime again, as the parent's objects did: staging converts a
    # time to text once per datetime of a chunk (``PartFile.write_columns``), so a datetime
    # per object cost the worker a conversion per row that one process does not make.
    made: dict[int, datetime] = {}
    found = []
    for key, size, etag, micros in zip(keys, sizes, etags, moments, strict=True):
        moment = made.get(micros)
        if moment is None:
            moment = made[micros] = epoch + unit * micros
        found.append(ObjectRef(bucket, key, size, etag, moment))
    return found


Result = tuple[int, int, int, int, datetime | None, datetime | None]
"""Per route of a page: bytes of JSON lines, of CSV rows and of audit lines in the spool (in
that order, right after the page's previous route's), rows, earliest expiry, the signer's
clamped_to."""

SEGMENT = 64 << 20
"""Bytes after which a worker starts a new spool segment (the parent removes a segment once
it copied every page in it)."""


def spool_path(folder: Path, worker: int, segment: int) -> Path:
    """Where worker ``worker`` spools the pages of ``segment``."""
    return folder / f"spool-{worker}-{segment}"


class _Spool:
    """A worker's spool: pages' text appended, segment after segment."""

    def __init__(self, folder: Path, worker: int, segment: int = SEGMENT) -> None:
        self.folder = folder
        self.worker = worker
        self.limit = segment
        self.segment = -1
        self.size = 0
        self._fd = -1

    def write(self, pieces: list[bytes]) -> tuple[int, int]:
        """Append ``pieces``, one after the other; where they start: (segment, offset)."""
        if self._fd < 0 or self.size >= self.limit:
            self._next()
        start = self.size
        total = sum(len(piece) for piece in pieces)
        # At its offset: a page whose write failed part way (a full disk) fails the run, and
        # nothing after it may land after its remains. The pieces as they are: joining them
        # first would copy a page's 1.7 MB once more.
        written = os.pwritev(self._fd, pieces, start) if pieces else 0
        if written < total:
            view = memoryview(b"".join(pieces))[written:]
            while view:
                view = view[os.pwrite(self._fd, view, start + total - len(view)) :]
        self.size = start + total
        return self.segment, start

    def _next(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.segment += 1
        self.size = 0
        path = spool_path(self.folder, self.worker, self.segment)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)


class _Route:
    def __init__(self, spec: RouteSpec) -> None:
        self.spec = spec
        self.signer = Signer(
            worker_presigner(spec.spec, spec.credentials),
            job=spec.job,
            expiry=spec.expiry,
            download_name=spec.download_name,
            content_type=spec.content_type,
            limit=credential_limit(spec.credentials, spec.on_short_credentials),
            link_ids=spec.link_ids,
        )
        # The path is never opened: the part stages into memory.
        self.part = PartFile(Path("worker.part"), csv=spec.csv).in_memory()

    def stage(
        self,
        objects: list[ObjectRef],
        ids: list[str] | None,
        lines: audit._Collected,
        into: list[bytes],
    ) -> Result:
        """Sign and stage ``objects``: their text appended to ``into`` (JSON, CSV, audit)."""
        signer, part = self.signer, self.part
        rows, earliest = part.rows, part.earliest_expiry
        part.rows, part.earliest_expiry = 0, None
        with link_ids.given(ids or []):
            for start in range(0, len(objects), signer.chunk):
                stage_chunk(
                    signer, part, self.spec.recipient, objects[start : start + signer.chunk]
                )
        json_lines, csv_rows = part.take()
        texts = (json_lines.encode(), csv_rows.encode(), lines.take().encode())
        into.extend(texts)
        found: Result = (
            len(texts[0]),
            len(texts[1]),
            len(texts[2]),
            part.rows,
            part.earliest_expiry,
            signer.clamped_to,
        )
        part.rows, part.earliest_expiry = rows, earliest
        return found


def serve() -> None:
    """The worker's loop: frames in on stdin, answers out on stdout, until stdin closes."""
    child.as_child()
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    # Nothing else may write on the answers' pipe.
    sys.stdout = sys.stderr
    routes: dict[int, _Route] = {}
    spool: _Spool | None = None
    with audit.collected() as lines:
        while True:
            try:
                message = child.read(source)
            except EOFError:
                return
            if message[0] == "init":
                _, specs, folder, number, segment = message
                routes = {index: _Route(spec) for index, spec in specs.items()}
                spool = _Spool(Path(folder), number, segment)
                continue
            assert spool is not None
            try:
                texts: list[bytes] = []
                results = [
                    routes[r].stage(unpack(chosen), ids, lines, texts)
                    for r, chosen, ids in message[1]
                ]
                # Written once the whole page was staged: a failed page leaves nothing.
                segment, start = spool.write(texts)
                answer: tuple[object, ...] = ("ok", segment, start, results)
            except Exception as exc:  # noqa: BLE001 - the parent raises it in the run
                # Nothing of the failed page may reach the next page's answer.
                lines.take()
                for route in routes.values():
                    route.part.take()
                answer = ("error", exc)
            try:
                child.send(sink, answer)
            except (pickle.PicklingError, TypeError, AttributeError):
                # An exception that does not pickle still reaches the run, as what it said.
                child.send(sink, ("error", RuntimeError(str(answer[1]))))
