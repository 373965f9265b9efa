"""A signing worker process: signs, stages and renders the audit lines of the pages it is sent.

``run/pool`` starts each worker as ``python -c`` with ``BOOT``, which imports this module
without the package's public face (``sharebatch/__init__`` imports the whole library, boto
among it): a worker holds the signer, the part files' row staging and the audit chain, and
stays small. It reads frames (a 4-byte big-endian length, then a pickle) from stdin and answers
each with one frame on stdout, in the order asked:

* ``("init", {route: RouteSpec})`` once: what each route's ``sign.Signer`` is built from (the
  run's frozen credentials included: a pipe, never a log or a file); no answer;
* ``("page", [(route, chosen, ids)])`` per page: ``chosen`` the route's selected objects of
  the page as ``pack`` gives them (columns: each route's own, so an object two routes chose
  travels twice, cheaper still than one named tuple with its datetime), ``ids`` the link ids the
  parent drew for them in a one-process run's order; the answer is ``("ok", results)``, a
  ``Result`` per route in the order asked, or ``("error", exception)``.

Every piece is the one a one-process run calls (``Signer.sign_get``, ``PartFile.write``,
``audit.link_issued``), into memory instead of files, so the parent appends exactly the bytes it
would have written itself. A worker ignores SIGINT and SIGTERM (its parent stops it: a closed
stdin ends it, or a kill) and dies with its parent (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import struct
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from sharebatch import audit
from sharebatch.models import Credentials, Expiry, ObjectRef, ShortCredentials
from sharebatch.run import link_ids
from sharebatch.run.bundles import PartFile
from sharebatch.run.sign import Signer, credential_limit, stage_chunk
from sharebatch.s3.workersign import FastSpec, worker_presigner

BOOT = (
    "import sys, types\n"
    "package = types.ModuleType('sharebatch')\n"
    "package.__path__ = [sys.argv[1]]\n"
    "sys.modules['sharebatch'] = package\n"
    "from sharebatch.run.worker import serve\n"
    "serve()\n"
)
"""The worker's ``python -c`` program; its one argument is the package's folder."""

HEADER = struct.Struct(">I")
_PR_SET_PDEATHSIG = 1


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
    return (
        bucket,
        [o.key for o in objects],
        [o.size for o in objects],
        [o.etag for o in objects],
        [(o.last_modified - _EPOCH) // _MICROSECOND for o in objects],
    )


def unpack(packed: Packed) -> list[ObjectRef]:
    """The objects ``pack`` was given, equal field for field."""
    if isinstance(packed, list):
        return packed
    bucket, keys, sizes, etags, moments = packed
    epoch, unit = _EPOCH, _MICROSECOND
    return [
        ObjectRef(bucket, key, size, etag, epoch + unit * micros)
        for key, size, etag, micros in zip(keys, sizes, etags, moments, strict=True)
    ]


Result = tuple[str, str, str, int, datetime | None, datetime | None]
"""(JSON lines, CSV rows, audit lines, rows, earliest expiry, the signer's clamped_to)."""


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
        self, objects: list[ObjectRef], ids: list[str] | None, lines: audit._Collected
    ) -> Result:
        signer, part = self.signer, self.part
        rows, earliest = part.rows, part.earliest_expiry
        part.rows, part.earliest_expiry = 0, None
        with link_ids.given(ids or []):
            for start in range(0, len(objects), signer.chunk):
                stage_chunk(
                    signer, part, self.spec.recipient, objects[start : start + signer.chunk]
                )
        json_lines, csv_rows = part.take()
        found = (json_lines, csv_rows, lines.take(), part.rows, part.earliest_expiry)
        part.rows, part.earliest_expiry = rows, earliest
        return (*found, signer.clamped_to)


def _read(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def _send(stream: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the closed pipe still ends the worker
        return
    if os.getppid() == 1:  # the parent died before the call
        os._exit(1)


def serve() -> None:
    """The worker's loop: frames in on stdin, answers out on stdout, until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    # Nothing else may write on the answers' pipe.
    sys.stdout = sys.stderr
    routes: dict[int, _Route] = {}
    with audit.collected() as lines:
        while True:
            try:
                (size,) = HEADER.unpack(_read(source, HEADER.size))
                message = pickle.loads(_read(source, size))  # noqa: S301 - our parent's pipe
            except EOFError:
                return
            if message[0] == "init":
                routes = {index: _Route(spec) for index, spec in message[1].items()}
                continue
            try:
                answer: object = (
                    "ok",
                    [routes[r].stage(unpack(chosen), ids, lines) for r, chosen, ids in message[1]],
                )
            except Exception as exc:  # noqa: BLE001 - the parent raises it in the run
                # Nothing of the failed page may reach the next page's answer.
                lines.take()
                for route in routes.values():
                    route.part.take()
                answer = ("error", exc)
            try:
                _send(sink, answer)
            except (pickle.PicklingError, TypeError, AttributeError):
                # An exception that does not pickle still reaches the run, as what it said.
                _send(sink, ("error", RuntimeError(str(answer[1]))))  # type: ignore[index]
