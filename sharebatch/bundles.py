"""Writing link bundles: streaming, deterministic, atomic and private.

Links are bearer secrets, so every file is created 0600 and every folder 0700. Rows reach the
disk as they are signed, into one *part* file per (route, prefix) under the run's staging
folder; when a route's prefixes have all been listed, its parts are joined in manifest order
into ``links.csv`` and ``links.json`` through temporary files renamed into place. Memory never
holds more than one page of links, and no reader ever sees a half-written bundle.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from .errors import UsageError
from .models import Link

COLUMNS = (
    "recipient",
    "bucket",
    "key",
    "size",
    "etag",
    "last_modified",
    "method",
    "expires_at",
    "url",
)
STAGING = ".staging"


def iso(moment: datetime) -> str:
    """UTC timestamps as bundles write them: second precision, ``Z`` suffix."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def link_row(link: Link) -> dict[str, Any]:
    return {
        "recipient": link.recipient,
        "bucket": link.obj.bucket,
        "key": link.obj.key,
        "size": link.obj.size,
        "etag": link.obj.etag,
        "last_modified": iso(link.obj.last_modified),
        "method": link.method,
        "expires_at": iso(link.expires_at),
        "url": link.url,
    }


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents as 0700 (whatever the umask); return it."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)
    return path


class _HashingFile:
    """Text sink that encodes, hashes and writes, so a bundle's sha256 costs no re-read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self.sha256.update(data)
        self._raw.write(data)
        return len(text)


@contextmanager
def _atomic(dest: Path) -> Iterator[_HashingFile]:
    """Write ``dest`` through a private temporary file renamed into place on success."""
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            sink = _HashingFile(raw)
            yield sink
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(dest: Path, data: Mapping[str, Any]) -> str:
    """Write ``data`` as indented JSON, atomically and 0600; return its sha256."""
    with _atomic(dest) as out:
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return out.sha256.hexdigest()


class PartFile:
    """The links of one route from one prefix, as JSON lines in the staging folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self.earliest_expiry: datetime | None = None
        self._handle: IO[str] | None = None

    def write(self, links: Iterable[Link]) -> None:
        if self._handle is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._handle = os.fdopen(fd, "w", encoding="utf-8")
        for link in links:
            self._handle.write(json.dumps(link_row(link), ensure_ascii=False) + "\n")
            self.rows += 1
            if self.earliest_expiry is None or link.expires_at < self.earliest_expiry:
                self.earliest_expiry = link.expires_at

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def rows_in_order(self) -> Iterator[dict[str, Any]]:
        if self.rows == 0:
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    rows: int
    sha256: str


class _Discard:
    """Stands in for a format that was not asked for, so one loop serves every choice."""

    sha256 = hashlib.sha256()

    def write(self, text: str) -> int:
        return len(text)


def write_bundle(
    dest: Path,
    header: Mapping[str, Any],
    parts: list[PartFile],
    formats: Sequence[str] = ("csv", "json"),
) -> list[WrittenFile]:
    """Join ``parts`` in order into ``dest/links.csv`` and/or ``dest/links.json``."""
    private_dir(dest)
    rows = sum(p.rows for p in parts)
    csv_path, json_path = dest / "links.csv", dest / "links.json"
    with ExitStack() as stack:
        csv_out = stack.enter_context(_atomic(csv_path)) if "csv" in formats else _Discard()
        json_out = stack.enter_context(_atomic(json_path)) if "json" in formats else _Discard()
        table = csv.DictWriter(csv_out, fieldnames=COLUMNS, lineterminator="\r\n")
        table.writeheader()
        head = json.dumps(dict(header), indent=2, ensure_ascii=False).replace("\n", "\n  ")
        json_out.write('{\n  "header": ' + head + ',\n  "links": [')
        separator = "\n    "
        for part in parts:
            for row in part.rows_in_order():
                table.writerow(row)
                json_out.write(separator + json.dumps(row, ensure_ascii=False))
                separator = ",\n    "
        json_out.write("\n  ]\n}\n" if rows else "]\n}\n")
    written = []
    if "csv" in formats:
        written.append(WrittenFile(csv_path, rows, csv_out.sha256.hexdigest()))
    if "json" in formats:
        written.append(WrittenFile(json_path, rows, json_out.sha256.hexdigest()))
    return written


class RunFolder:
    """``OUT/<run-id>/``: created fresh for each run, never reused."""

    def __init__(self, out: Path, run_id: str) -> None:
        self.out = out
        self.path = out / run_id
        self.staging = self.path / STAGING

    @classmethod
    def create(cls, out: Path, run_id: str) -> RunFolder:
        folder = cls(out, run_id)
        if not out.exists():
            private_dir(out)
        try:
            folder.path.mkdir(mode=0o700)
        except FileExistsError:
            raise UsageError(
                f"run folder {folder.path} already exists; a run never overwrites another"
            ) from None
        folder.path.chmod(0o700)
        private_dir(folder.staging)
        return folder

    @property
    def audit_path(self) -> Path:
        return self.path / "audit.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def bundle_dir(self, job: str, recipient: str) -> Path:
        return self.path / job / recipient

    def part(self, route: int, position: int) -> PartFile:
        return PartFile(self.staging / f"{route:06d}-{position:06d}.jsonl")

    def discard_staging(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
