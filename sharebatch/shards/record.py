"""A shard's folder, ``OUT/<run-id>/shards/<K>-of-<N>/``, and the record the merge reads.

    manifest.yml   the manifest's bytes as the shard ran it (the merge may use this copy)
    audit.jsonl    the shard's own audit log
    parts/         its staged part files, named <route>-<position>-<segment>.jsonl (+ .csv)
    shard.json     the record: tasks listed, per route its parts in order, counts, credentials
    summary.json   written last: run id, shard, manifest sha256, status, shard.json's sha256

A shard is made in a temporary sibling (``.tmp-<K>-of-<N>-<random>``) and renamed into place
whole once its summary is written, so ``<K>-of-<N>/summary.json`` exists only for a shard that
finished; a re-run of the same shard replaces the folder whole. The merge holds each summary
to its record (and the record to its parts' sizes): a record edited after the fact is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharebatch.errors import ShardMismatch
from sharebatch.files import write_json
from sharebatch.shards.spec import ShardSpec
from sharebatch.visible import visible

SHARDS = "shards"
PARTS = "parts"
RECORD = "shard.json"
SUMMARY = "summary.json"
MANIFEST_COPY = "manifest.yml"
FORMAT = 1
_NAME = re.compile(r"([0-9]{1,5})-of-([0-9]{1,5})")
_STARTED = re.compile(r"\.(?:tmp-)?([0-9]{1,5})-of-([0-9]{1,5})(?:\.lock|-[0-9a-f]{8})")


def shards_dir(run_dir: Path) -> Path:
    return run_dir / SHARDS


def temp_name(spec: ShardSpec) -> str:
    return f".tmp-{spec.name}-{secrets.token_hex(4)}"


def discard_temps(shards: Path, spec: ShardSpec) -> None:
    """A killed shard's temporary folders (never complete: nothing reads them)."""
    for child in shards.glob(f".tmp-{spec.name}-*"):
        shutil.rmtree(child, ignore_errors=True)


def put_in_place(temp: Path, spec: ShardSpec) -> Path:
    """Rename a finished shard folder to its name, replacing a previous run of that shard.

    A directory cannot be renamed over a non-empty one: the old one steps aside first, so in
    between the shard is missing (a merge then says so), never half old and half new."""
    final = temp.parent / spec.name
    if final.exists():
        aside = temp.parent / f".old-{spec.name}-{secrets.token_hex(4)}"
        final.rename(aside)
        temp.rename(final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        temp.rename(final)
    return final


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_finished(folder: Path, record: dict[str, Any], status: str) -> None:
    """The record, then the summary naming its sha256: the shard's last two files."""
    digest = write_json(folder / RECORD, record)
    write_json(
        folder / SUMMARY,
        {
            "format": FORMAT,
            "run_id": record["run_id"],
            "shard": record["shard"],
            "manifest_sha256": record["manifest"]["sha256"],
            "status": status,
            "record_sha256": digest,
        },
    )


@dataclass(frozen=True)
class ShardRecord:
    """A finished shard as the merge reads it: checked against its summary and parts."""

    spec: ShardSpec
    path: Path
    record: dict[str, Any]
    status: str
    record_sha256: str

    @property
    def parts(self) -> Path:
        return self.path / PARTS


def found_shards(shards: Path) -> tuple[dict[int, ShardRecord], set[int], set[int]]:
    """The finished shards by index, every shard count they name, and unfinished indexes.

    Only folders named ``<K>-of-<N>`` count; a temporary folder is never a shard."""
    finished: dict[int, ShardRecord] = {}
    counts: set[int] = set()
    unfinished: set[int] = set()
    if not shards.is_dir():
        return finished, counts, unfinished
    for child in sorted(shards.iterdir()):
        started = _STARTED.fullmatch(child.name)
        if started is not None:
            # A shard under way or killed: its lock and temporary folder name it.
            counts.add(int(started[2]))
            unfinished.add(int(started[1]))
            continue
        named = _NAME.fullmatch(child.name)
        if named is None or not child.is_dir() or child.is_symlink():
            continue
        spec = ShardSpec(int(named[1]), int(named[2]))
        counts.add(spec.count)
        if not (child / SUMMARY).is_file():
            unfinished.add(spec.index)
            continue
        finished[spec.index] = read_shard(child, spec)
    return finished, counts, unfinished


def read_shard(path: Path, spec: ShardSpec) -> ShardRecord:
    """One shard's summary and record, each held to the other; ``ShardMismatch`` if not."""
    where = f"shard {spec.name} ({visible(str(path))})"
    summary = _json(path / SUMMARY, where)
    record_path = path / RECORD
    if not record_path.is_file():
        raise ShardMismatch(f"{where}: summary.json without {RECORD}")
    digest = file_sha256(record_path)
    if summary.get("record_sha256") != digest:
        raise ShardMismatch(f"{where}: {RECORD} is not the record its summary.json names")
    record = _json(record_path, where)
    expected = {
        "run_id": record.get("run_id"),
        "shard": spec.name,
        "manifest_sha256": (record.get("manifest") or {}).get("sha256"),
    }
    for name, value in expected.items():
        if summary.get(name) != value or record.get("shard") != spec.name:
            raise ShardMismatch(f"{where}: summary.json's {name} does not match its record")
    status = summary.get("status")
    if status not in ("ok", "failed"):
        raise ShardMismatch(f"{where}: summary.json's status {visible(str(status))!r} is unknown")
    for route in record.get("routes", []):
        for position in route["segments"]:
            for part in position:
                _check_part(path / PARTS, part, where)
    return ShardRecord(spec, path, record, str(status), digest)


def _check_part(parts: Path, part: dict[str, Any], where: str) -> None:
    name = str(part["name"])
    if not re.fullmatch(r"[0-9]{6}-[0-9]{6}-[0-9]{6}\.jsonl", name):
        raise ShardMismatch(f"{where}: a part named {visible(name)!r}")
    for suffix, size in ((".jsonl", part["bytes"]), (".csv", part.get("csv_bytes"))):
        if size is None:
            continue
        staged = (parts / name).with_suffix(suffix)
        try:
            found = os.lstat(staged).st_size
        except OSError:
            raise ShardMismatch(f"{where}: part {staged.name} is missing") from None
        if found != size:
            raise ShardMismatch(f"{where}: part {staged.name} is not as the shard wrote it")


def _json(path: Path, where: str) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ShardMismatch(f"{where}: {path.name} cannot be read ({type(exc).__name__})") from None
    if not isinstance(found, dict):
        raise ShardMismatch(f"{where}: {path.name} is not a JSON object")
    return found
