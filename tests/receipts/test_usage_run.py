"""``usage`` end to end: a real run on moto, renewed, and access logs for its real links."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from sharebatch.receipts.sources import parse_source
from sharebatch.receipts.usage import usage
from sharebatch.times import iso, parse_iso
from tests.support.accesslog import log_line
from tests.support.linkkit import invoke
from tests.support.pages import BUCKET, FILES, run_with_pages, settings
from tests.support.s3 import S3, fetch
from tests.support.usage_run import write_logs


def _uri(url: str, method: str = "GET") -> str:
    """The Request-URI S3 logs for a request to ``url``: its path and query as sent."""
    parts = urlsplit(url)
    return f"{method} {parts.path}?{parts.query} HTTP/1.1"


def _line(url: str, at: datetime, **fields: Any) -> str:
    """A record of a request to ``url``; its Key field URL-encoded, as S3 writes it."""
    method = fields.pop("method", "GET")
    # Path style (moto): /bucket/key; a POST form's action URL is the bucket's alone.
    key = fields.pop("key", None) or urlsplit(url).path.partition(f"/{BUCKET}/")[2] or None
    return log_line(bucket=BUCKET, time=at, request_uri=_uri(url, method), key=key, **fields)


def test_every_number_of_a_real_run(s3: S3, tmp_path: Path) -> None:
    """globex (a page, five files, a POST upload slot) uses every link; initech's bundle
    is renewed, its old link used after that from elsewhere and its new one from five
    networks; a forged id and other clients' records: every figure of usage.json as counted
    by hand, and exit 1."""
    run = run_with_pages(s3, tmp_path, {"globex": settings()})
    assert run.status == "ok"
    globex, initech = run.bundle("globex"), run.bundle("initech")
    for row in globex["links"]:
        assert fetch(row["url"]) == FILES[row["key"]]  # the links work as issued
    renewed = invoke("renew", str(run.run_dir / "q3" / "initech"), "--within", "100h")
    assert renewed.exit_code == 0, renewed.stderr
    (renewal_path,) = [Path(p) for p in renewed.stdout.split() if p.endswith(".json")]
    renewal = json.loads(renewal_path.read_text(encoding="utf-8"))
    events = [json.loads(line) for line in (run.run_dir / "audit.jsonl").read_text().splitlines()]
    renewed_at = max(parse_iso(e["timestamp"]) for e in events if e["event"] == "link_renewed")

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    after = renewed_at.replace(microsecond=0) + timedelta(seconds=1)
    g_links = {row["key"]: row for row in globex["links"]}
    (g_slot,) = globex["uploads"]
    i_old = {row["key"]: row for row in initech["links"]}
    i_new = {row["key"]: row for row in renewal["links"]}
    i_slot_old = initech["uploads"][0]
    statement, summary = "partners/initech/statement.csv", "reports/q3/summary.pdf"
    data_csv = "reports/q3/data.csv"
    lines = [
        _line(globex["header"]["page_url"], t0, bytes_sent=900,
              remote_ip="192.0.2.7", user_agent="Firefox"),
        *(
            _line(row["url"], t0 + timedelta(minutes=1), bytes_sent=row["size"],
                  remote_ip="192.0.2.7", user_agent="Firefox")
            for row in g_links.values()
        ),
        _line(g_links[summary]["url"], t0 + timedelta(minutes=2), status=206,
              bytes_sent=100, remote_ip="2001:db8:aa::1", user_agent="Firefox"),
        _line(g_slot["url"], t0 + timedelta(minutes=3),
              method="POST", operation="REST.POST.OBJECT", status=204, bytes_sent=0,
              # S3 logs the key the form stored: the slot's, the file's name in place
              key=quote(g_slot["key"].replace("${filename}", "my report.pdf")),
              remote_ip="192.0.2.7", user_agent="Firefox"),
        # initech: the old statement link before the renewal, then after it from elsewhere
        _line(i_old[statement]["url"], t0, bytes_sent=30, remote_ip="198.51.100.1"),
        _line(i_old[data_csv]["url"], t0, bytes_sent=8, remote_ip="198.51.100.1"),
        _line(i_old[statement]["url"], after, bytes_sent=30,
              remote_ip="203.0.113.50"),
        # the renewed summary link from five networks (one refused)
        *(
            _line(i_new[summary]["url"], after + timedelta(minutes=n),
                  bytes_sent=5004, remote_ip=f"10.{n}.0.1")
            for n in range(4)
        ),
        _line(i_new[summary]["url"], after + timedelta(minutes=9), status=403,
              error_code="AccessDenied", bytes_sent=243, remote_ip="10.9.0.1"),
        # a forged id, and requests of other clients
        log_line(bucket=BUCKET, time=after, key=summary, remote_ip="10.66.0.1",
                 request_uri=f"GET /{BUCKET}/{summary}?x-sharebatch-id=badbadbadbadbad0 HTTP/1.1"),
        log_line(bucket=BUCKET, time=after, key=summary, request_uri=f"GET /{BUCKET}/x HTTP/1.1"),
        log_line(bucket=BUCKET, time=after, key=None, request_uri=None,
                 operation="REST.GET.BUCKET", trailing=False),
    ]  # fmt: skip
    logs = write_logs(tmp_path / "logs", "2026-12-01-00-00-00-EXAMPLE", lines)
    now = datetime.now(UTC)
    report = usage(run.run_dir, [parse_source(str(logs))], now=now)
    data = json.loads((run.run_dir / "usage.json").read_text(encoding="utf-8"))
    assert report.exit_code == 1
    page = (run.run_dir / "index.html").read_bytes()
    assert report.review_page_sha256 == hashlib.sha256(page).hexdigest()
    block = page.split(b"<!-- sharebatch:receipts -->")[1].split(b"<!-- /sharebatch:receipts -->")
    assert b"initech" in block[0] and b"<svg" in block[0]  # the table and the chart

    assert data["run_id"] == run.run_dir.name
    assert data["generated_at"] == iso(now) and data["max_networks"] == 3
    assert len(g_links) == 5 and len(lines) == 19
    assert data["sources"] == [{"source": str(logs), "files": 1, "lines": 19, "bad_lines": 0}]
    assert data["lines"] == {"total": 19, "ours": 17, "other": 2, "bad": 0, "other_runs": 0}
    assert data["bad_lines"] == []

    links = {link["link_id"]: link for link in data["links"]}
    page_id = globex["header"]["page_link_id"]
    expected_ids = {page_id, g_slot["link_id"], *(r["link_id"] for r in globex["links"])}
    expected_ids |= {u["link_id"] for u in initech["uploads"] + renewal["uploads"]}
    expected_ids |= {r["link_id"] for r in initech["links"] + renewal["links"]}
    # globex: a page, a POST slot, five links; initech: three links and a PUT slot, renewed
    assert set(links) == expected_ids and len(expected_ids) == len(data["links"]) == 15

    def link(row: dict[str, Any], **figures: Any) -> None:
        got = links[row["link_id"]]
        base = {
            "bucket": BUCKET,
            "key": row["key"],
            "expires_at": row["expires_at"],
            "replaced_by": None,
            "downloads": 0,
            "partial": 0,
            "uploads": 0,
            "bytes_sent": 0,
            "refused": 0,
            "first": None,
            "last": None,
            "remote_ips": [],
            "networks": 0,
            "user_agents": [],
        }
        assert {k: got[k] for k in base} == base | figures, row["key"]

    firefox = {"remote_ips": ["192.0.2.7"], "networks": 1, "user_agents": ["Firefox"]}
    m1 = iso(t0 + timedelta(minutes=1))
    for key, row in g_links.items():
        if key != summary:
            link(row, downloads=1, bytes_sent=row["size"], first=m1, last=m1, **firefox)
    link(
        g_links[summary],
        downloads=1,
        partial=1,
        bytes_sent=g_links[summary]["size"] + 100,
        first=m1,
        last=iso(t0 + timedelta(minutes=2)),
        remote_ips=["192.0.2.7", "2001:db8:aa::1"],
        networks=2,
        user_agents=["Firefox"],
    )
    m3 = iso(t0 + timedelta(minutes=3))
    link(g_slot, uploads=1, first=m3, last=m3, **firefox)
    assert links[page_id]["kind"] == "page" and links[page_id]["downloads"] == 1
    assert links[page_id]["bytes_sent"] == 900
    assert links[g_slot["link_id"]]["kind"] == "post"

    curl = ["curl/8.5.0"]
    link(
        i_old[statement],
        replaced_by=i_new[statement]["link_id"],
        downloads=2,
        bytes_sent=60,
        first=iso(t0),
        last=iso(after),
        remote_ips=["198.51.100.1", "203.0.113.50"],
        networks=2,
        user_agents=curl,
    )
    link(
        i_new[summary],
        downloads=4,
        refused=1,
        bytes_sent=4 * 5004 + 243,
        first=iso(after),
        last=iso(after + timedelta(minutes=9)),
        remote_ips=[f"10.{n}.0.1" for n in (0, 1, 2, 3, 9)],
        networks=5,
        user_agents=curl,
    )
    link(i_old[summary], replaced_by=i_new[summary]["link_id"])
    link(
        i_old[data_csv],
        replaced_by=i_new[data_csv]["link_id"],
        downloads=1,
        bytes_sent=8,
        first=iso(t0),
        last=iso(t0),
        remote_ips=["198.51.100.1"],
        networks=1,
        user_agents=curl,
    )
    link(i_new[data_csv])
    link(i_new[statement])
    assert links[i_slot_old["link_id"]]["replaced_by"] == renewal["uploads"][0]["link_id"]

    people = {r["recipient"]: r for r in data["recipients"]}
    g_bytes = sum(r["size"] for r in globex["links"]) + 100 + 900
    assert people["globex"] == {
        "job": "q3",
        "recipient": "globex",
        "links": 2 + len(globex["links"]),
        "used": 2 + len(globex["links"]),
        "unused": 0,
        "downloads": 1 + len(globex["links"]),
        "partial": 1,
        "uploads": 1,
        "bytes_sent": g_bytes,
        "refused": 0,
        "first": iso(t0),
        "last": m3,
        "remote_ips": 2,
        "user_agents": 1,
        "complete": True,
        "without_id": 0,
    }
    i_links = len(initech["links"]) + len(renewal["links"])
    i_links += len(initech["uploads"]) + len(renewal["uploads"])
    assert people["initech"] == {
        "job": "q3",
        "recipient": "initech",
        "links": i_links,
        "used": 3,
        "unused": i_links - 3,
        "downloads": 7,
        "partial": 0,
        "uploads": 0,
        "bytes_sent": 60 + 8 + 4 * 5004 + 243,
        "refused": 1,
        "first": iso(t0),
        "last": iso(after + timedelta(minutes=9)),
        "remote_ips": 7,
        "user_agents": 1,
        # statement and data.csv through their old links, summary through its renewal
        "complete": True,
        "without_id": 0,
    }
    days: dict[tuple[str, str], int] = {}
    downloads = [(t0, "globex", 1), (t0 + timedelta(minutes=1), "globex", len(g_links))]
    downloads += [(t0, "initech", 2), (after, "initech", 1)]
    downloads += [(after + timedelta(minutes=m), "initech", 1) for m in range(4)]
    for moment, who, n in downloads:
        day = (moment.date().isoformat(), who)
        days[day] = days.get(day, 0) + n
    assert data["daily"] == [
        {"day": day, "job": "q3", "recipient": who, "downloads": n}
        for (day, who), n in sorted(days.items())
    ]

    signals = {(s["kind"], s["link_id"]): s for s in data["signals"]}
    assert set(signals) == {
        ("used_after_renewal", i_old[statement]["link_id"]),
        ("many_networks", i_new[summary]["link_id"]),
        ("unknown_id", "badbadbadbadbad0"),
    }
    late = signals[("used_after_renewal", i_old[statement]["link_id"])]
    assert (late["requests"], late["networks"], late["first"]) == (1, 1, iso(after))
    assert (late["job"], late["recipient"], late["key"]) == ("q3", "initech", statement)
    many = signals[("many_networks", i_new[summary]["link_id"])]
    assert (many["requests"], many["networks"], many["first"]) == (5, 5, iso(after))
    forged = signals[("unknown_id", "badbadbadbadbad0")]
    assert (forged["requests"], forged["networks"], forged["job"]) == (1, 1, None)
