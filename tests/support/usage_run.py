"""A run folder as a run with link ids writes it, made by hand, for the usage tests.

Job ``q3``: globex has two GET links (``a.pdf``, ``b.csv``), a PUT upload slot and a recipient
page, and a renewal of both GET links made an hour after the run; initech has one GET link
(a key a spreadsheet would run as a formula). Times are computed from the ``now`` given.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sharebatch.times import iso
from tests.support.accesslog import log_line

BUCKET = "q3-share"
SIZES = {"q3/a.pdf": 1000, "q3/b.csv": 200, "=HYPERLINK(q3).txt": 30}
KEYS = {
    "a": "q3/a.pdf",
    "b": "q3/b.csv",
    "c": "=HYPERLINK(q3).txt",
    "page": "pages/globex.html",
    "put": "inbox/globex/report.pdf",
}


def key_of(name: str) -> str:
    """The key of link ``name`` (a renewal, ``a-2``, has its original's)."""
    return KEYS[name.split("-")[0]]


@dataclass(frozen=True)
class UsageRun:
    """The folder, the run's time, when the renewal was issued, and each link's id."""

    run_dir: Path
    issued: datetime
    renewed: datetime
    ids: dict[str, str]

    def uri(self, name: str, link_id: str | None = None) -> str:
        """The Request-URI a browser fetching link ``name`` sends (with ``link_id``, forged)."""
        link_id = link_id or self.ids[name]
        return (
            f"GET /{BUCKET}/{key_of(name)}?X-Amz-Algorithm=AWS4-HMAC-SHA256&x-sharebatch-id="
            f"{link_id}&X-Amz-Signature=0123 HTTP/1.1"
        )

    def line(self, name: str, at: datetime, link_id: str | None = None, **fields: Any) -> str:
        """An access log line of a GET through link ``name`` at ``at``."""
        key = key_of(name)
        fields.setdefault("bytes_sent", SIZES.get(key, 0))
        uri = self.uri(name, link_id)
        return log_line(bucket=BUCKET, time=at, request_uri=uri, key=key, **fields)


def _header(run_id: str, recipient: str, generated: datetime, links: int) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "job": "q3",
        "recipient": recipient,
        "recipient_name": None,
        "recipient_email": None,
        "generated_at": iso(generated),
        "signer_access_key_id": "AKIAEXAMPLE",
        "expires_at": iso(generated + timedelta(days=3)),
        "links": links,
    }


def _row(recipient: str, key: str, link_id: str, expires: datetime) -> dict[str, Any]:
    return {
        "recipient": recipient,
        "bucket": BUCKET,
        "key": key,
        "size": SIZES[key],
        "etag": "etag",
        "last_modified": "2020-01-01T00:00:00Z",
        "method": "GET",
        "expires_at": iso(expires),
        "link_id": link_id,
        "url": f"https://{BUCKET}.s3.amazonaws.com/{key}?x-sharebatch-id={link_id}",
    }


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _events(path: Path, events: Iterable[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event) + "\n")


def usage_run(root: Path, now: datetime) -> UsageRun:
    """The run described above, issued two days before ``now`` and renewed an hour later."""
    issued = now - timedelta(days=2)
    renewed = issued + timedelta(hours=1)
    run_id = issued.strftime("%Y%m%dT%H%M%SZ") + "-use1"
    run_dir = root / run_id
    names = ("a", "b", "put", "page", "c", "a-2", "b-2")
    ids = {name: secrets.token_hex(8) for name in names}
    expires = issued + timedelta(days=3)
    _write(run_dir / "summary.json", {"run_id": run_id, "status": "ok"})
    page_url = (
        f"https://{BUCKET}.s3.eu-west-1.amazonaws.com/pages/globex.html"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F"
        f"{issued:%Y%m%d}%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date={issued:%Y%m%dT%H%M%SZ}"
        f"&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&x-sharebatch-id={ids['page']}"
        "&X-Amz-Signature=" + "0" * 64
    )
    globex = _header(run_id, "globex", issued, 2) | {
        "page_url": page_url,
        "page_link_id": ids["page"],
    }
    _write(
        run_dir / "q3" / "globex" / "links.json",
        {
            "header": globex,
            "links": [
                _row("globex", "q3/a.pdf", ids["a"], expires),
                _row("globex", "q3/b.csv", ids["b"], expires),
            ],
            "uploads": [
                {
                    "recipient": "globex",
                    "bucket": BUCKET,
                    "key": "inbox/globex/report.pdf",
                    "method": "PUT",
                    "expires_at": iso(expires),
                    "link_id": ids["put"],
                    "url": f"https://{BUCKET}.s3.amazonaws.com/inbox/globex/report.pdf?x",
                }
            ],
        },
    )
    _write(
        run_dir / "q3" / "globex" / f"links.renewed-{renewed:%Y%m%dT%H%M%S}000Z-ab12.json",
        {
            "header": _header(run_id, "globex", renewed, 2),
            "links": [
                _row("globex", "q3/a.pdf", ids["a-2"], expires + timedelta(hours=1)),
                _row("globex", "q3/b.csv", ids["b-2"], expires + timedelta(hours=1)),
            ],
        },
    )
    _write(
        run_dir / "q3" / "initech" / "links.json",
        {
            "header": _header(run_id, "initech", issued, 1),
            "links": [_row("initech", "=HYPERLINK(q3).txt", ids["c"], expires)],
        },
    )
    stamp = iso(issued)
    _events(
        run_dir / "audit.jsonl",
        [
            {"event": "run_started", "timestamp": stamp, "run_id": run_id},
            {
                "event": "page_stored",
                "timestamp": stamp,
                "job": "q3",
                "recipient": "globex",
                "bucket": BUCKET,
                "key": "pages/globex.html",
                "expires_at": iso(issued + timedelta(days=1)),
                "link_id": ids["page"],
            },
            *(
                {
                    "event": "link_renewed",
                    "timestamp": renewed.isoformat().replace("+00:00", "Z"),
                    "job": "q3",
                    "recipient": "globex",
                    "bucket": BUCKET,
                    "key": key,
                    "old_link_id": ids[old],
                    "link_id": ids[new],
                    "expires_at": iso(expires + timedelta(hours=1)),
                }
                for old, new, key in (("a", "a-2", "q3/a.pdf"), ("b", "b-2", "q3/b.csv"))
            ),
        ],
    )
    return UsageRun(run_dir, issued, renewed, ids)


def write_logs(folder: Path, name: str, lines: Iterable[str]) -> Path:
    """``lines`` as one access log file ``folder/name`` (the folder made); the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder
