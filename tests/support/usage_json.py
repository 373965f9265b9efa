"""usage.json as ``sharebatch usage`` writes it (the issue 15 contract's shape), built from a
real run's bundles and the downloads a test says happened: what the receipts page and
``remind --only-unused`` read, without depending on the log parser.

Every figure is counted from the downloads given (nothing is a constant): per link, per
recipient (``complete``: every link of theirs downloaded at least once) and per day.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sharebatch.files import write_json


def iso(at: datetime) -> str:
    """``at`` as usage.json writes times: UTC, whole seconds, ``Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Download:
    """One 2xx GET of ``key`` by ``job``/``recipient`` from ``ip`` at ``at``."""

    job: str
    recipient: str
    key: str
    at: datetime
    ip: str = "192.0.2.10"
    agent: str = "curl/8.5.0"
    partial: bool = False


@dataclass
class Usage:
    """The usage.json content and the links it counted, by (job, recipient)."""

    data: dict[str, Any]
    links: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)


def bundles(run_dir: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Each recipient's links.json rows, by (job, recipient) from the bundle's header."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in sorted(run_dir.glob("*/*/links.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        header = data["header"]
        found[(header["job"], header["recipient"])] = data["links"]
    return found


def build_usage(
    run_dir: Path,
    downloads: Sequence[Download],
    *,
    generated_at: datetime,
    signals: Sequence[Mapping[str, Any]] = (),
    bad_lines: int = 0,
    other_lines: int = 0,
    run_id: str | None = None,
) -> Usage:
    """usage.json for ``run_dir`` after ``downloads``; ``signals`` are given as they are."""
    runs = bundles(run_dir)
    links: list[dict[str, Any]] = []
    recipients: list[dict[str, Any]] = []
    daily: dict[tuple[str, str, str], int] = {}
    for (job, recipient), rows in runs.items():
        mine = [d for d in downloads if (d.job, d.recipient) == (job, recipient)]
        sizes = {row["key"]: int(row["size"]) for row in rows}
        for row in rows:
            used = [d for d in mine if d.key == row["key"]]
            full = [d for d in used if not d.partial]
            links.append(
                {
                    "link_id": row.get("link_id") or secrets.token_hex(8),
                    "job": job,
                    "recipient": recipient,
                    "kind": "get",
                    "bucket": "acme-reports",
                    "key": row["key"],
                    "expires_at": row["expires_at"],
                    "replaced_by": None,
                    "downloads": len(full),
                    "partial": len(used) - len(full),
                    "bytes_sent": sizes[row["key"]] * len(full),
                    "refused": 0,
                    "first": iso(min(d.at for d in used)) if used else None,
                    "last": iso(max(d.at for d in used)) if used else None,
                    "remote_ips": sorted({d.ip for d in used}),
                    "networks": len({d.ip.rsplit(".", 1)[0] for d in used}),
                    "user_agents": sorted({d.agent for d in used}),
                }
            )
        got = {d.key for d in mine if not d.partial}
        full_downloads = [d for d in mine if not d.partial]
        recipients.append(
            {
                "job": job,
                "recipient": recipient,
                "links": len(rows),
                "used": len({d.key for d in mine}),
                "unused": len(rows) - len({d.key for d in mine}),
                "downloads": len(full_downloads),
                "partial": len(mine) - len(full_downloads),
                "bytes_sent": sum(sizes[d.key] for d in full_downloads),
                "refused": 0,
                "first": iso(min(d.at for d in mine)) if mine else None,
                "last": iso(max(d.at for d in mine)) if mine else None,
                "remote_ips": len({d.ip for d in mine}),
                "user_agents": len({d.agent for d in mine}),
                "complete": all(row["key"] in got for row in rows),
            }
        )
        for d in full_downloads:
            day = (d.at.astimezone(UTC).date().isoformat(), job, recipient)
            daily[day] = daily.get(day, 0) + 1
    ours = len(downloads)
    data = {
        "run_id": run_id or run_dir.name,
        "generated_at": iso(generated_at),
        "max_networks": 3,
        "sources": [
            {
                "source": "/var/log/s3/",
                "files": 1,
                "lines": ours + other_lines + bad_lines,
                "bad_lines": bad_lines,
            }
        ],
        "lines": {
            "total": ours + other_lines + bad_lines,
            "ours": ours,
            "other": other_lines,
            "bad": bad_lines,
        },
        "bad_lines": [
            {"file": "/var/log/s3/2026-10-02-00-00-00-X", "line": n + 1, "problem": "no fields"}
            for n in range(bad_lines)
        ],
        "recipients": recipients,
        "links": links,
        "daily": [
            {"day": day, "job": job, "recipient": recipient, "downloads": n}
            for (day, job, recipient), n in sorted(daily.items())
        ],
        "signals": list(signals),
    }
    return Usage(data, runs)


def write_usage(run_dir: Path, usage: Usage) -> Path:
    """``OUT/<run-id>/usage.json`` as usage writes it (0600)."""
    path = run_dir / "usage.json"
    write_json(path, usage.data)
    return path
