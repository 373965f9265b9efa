"""``usage``: a run's links joined to access log records, on a run folder made by hand."""

from __future__ import annotations

import csv
import inspect
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharebatch.delivery.remind import read_receipts
from sharebatch.errors import LinkError, UsageError
from sharebatch.receipts import usage as usage_module
from sharebatch.receipts.accesslog import (
    AccessRecord,
    BadLine,
    Hit,
    parse_line,
    scan_lines,
    scan_rows,
)
from sharebatch.receipts.sources import parse_source
from sharebatch.receipts.usage import (
    BAD_LINES_LISTED,
    LISTED,
    LinkRows,
    RunLinks,
    _Join,
    _Link,
    _same_key,
    _SourceCount,
    _Tally,
    address_text,
    address_texts,
    address_value,
    distinct,
    more,
    network_of,
    read_run,
    usage,
    usage_async,
)
from sharebatch.run.bundles import csv_cell
from sharebatch.times import iso
from tests.support.accesslog import log_line
from tests.support.prometheus import parse_exposition
from tests.support.usage_run import BUCKET, UsageRun, usage_run, write_logs

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def run(tmp_path: Path) -> UsageRun:
    """The hand-made run of tests/support/usage_run.py, issued two days ago."""
    return usage_run(tmp_path / "out", NOW)


def _usage(run: UsageRun, logs: Path, **options: Any) -> Any:
    return usage(run.run_dir, [parse_source(str(logs))], now=NOW, **options)


def _by(rows: list[dict[str, Any]], **match: str) -> dict[str, Any]:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, rows)
    return found[0]


def test_counts_every_figure_per_link_and_per_recipient(run: UsageRun, tmp_path: Path) -> None:
    """Full downloads, 206 partials, 403 refusals, bytes, first/last, addresses, agents,
    records of other clients and links never used, each as counted by hand."""
    t = run.renewed + timedelta(minutes=10)
    logs = write_logs(
        tmp_path / "logs",
        "log-1",
        [
            run.line("a-2", t, remote_ip="192.0.2.10", user_agent="Firefox"),
            run.line(
                "a-2", t + timedelta(hours=1), remote_ip="192.0.2.11", status=206, bytes_sent=100
            ),
            run.line(
                "a-2",
                t + timedelta(days=1),
                remote_ip="2001:db8::1",
                status=403,
                error_code="AccessDenied",
                bytes_sent=243,
                user_agent=None,
            ),
            run.line("c", t, remote_ip="198.51.100.7"),
            run.line("c", t + timedelta(minutes=1), remote_ip="198.51.100.7"),
            log_line(bucket=BUCKET, time=t, request_uri="GET /q3-share/x HTTP/1.1", key="x"),
            log_line(
                bucket=BUCKET, time=t, request_uri=None, key=None, operation="REST.GET.BUCKET"
            ),
        ],
    )
    report = _usage(run, logs)
    data = json.loads((run.run_dir / "usage.json").read_text())
    assert data == report.usage
    assert report.exit_code == 0 and data["signals"] == []
    assert data["run_id"] == run.run_dir.name and data["generated_at"] == iso(NOW)
    assert data["lines"] == {"total": 7, "ours": 5, "other": 2, "bad": 0, "other_runs": 0}
    assert data["sources"] == [{"source": str(logs), "files": 1, "lines": 7, "bad_lines": 0}]
    a2 = _by(data["links"], link_id=run.ids["a-2"])
    assert a2 == {
        "link_id": run.ids["a-2"],
        "job": "q3",
        "recipient": "globex",
        "kind": "get",
        "bucket": BUCKET,
        "key": "q3/a.pdf",
        "expires_at": iso(run.issued + timedelta(days=3, hours=1)),
        "replaced_by": None,
        "downloads": 1,
        "partial": 1,
        "uploads": 0,
        "bytes_sent": 1000 + 100 + 243,
        "refused": 1,
        "first": iso(t),
        "last": iso(t + timedelta(days=1)),
        "remote_ips": ["192.0.2.10", "192.0.2.11", "2001:db8::1"],
        "networks": 2,
        "user_agents": ["Firefox", "curl/8.5.0"],
        "more_remote_ips": False,
        "more_networks": False,
        "more_user_agents": False,
    }
    assert _by(data["links"], link_id=run.ids["a"])["replaced_by"] == run.ids["a-2"]
    kinds = {link["link_id"]: link["kind"] for link in data["links"]}
    assert kinds[run.ids["put"]] == "put" and kinds[run.ids["page"]] == "page"
    assert _by(data["links"], link_id=run.ids["page"])["key"] == "pages/globex.html"
    globex = _by(data["recipients"], recipient="globex")
    assert globex == {
        "job": "q3",
        "recipient": "globex",
        "links": 6,  # a, b, the upload slot, the page, a's and b's renewals
        "used": 1,
        "unused": 5,
        "downloads": 1,
        "partial": 1,
        "uploads": 0,
        "bytes_sent": 1343,
        "refused": 1,
        "first": iso(t),
        "last": iso(t + timedelta(days=1)),
        "remote_ips": 3,
        "user_agents": 2,
        "complete": False,  # b.csv was never downloaded, nor its renewal
        "without_id": 0,
    }
    initech = _by(data["recipients"], recipient="initech")
    assert (initech["downloads"], initech["bytes_sent"], initech["remote_ips"]) == (2, 60, 1)
    assert initech["complete"] is True and initech["unused"] == 0
    # initech's second download may fall on the next day, whatever the time the test runs at
    days: dict[tuple[str, str], int] = {}
    for moment, who in ((t, "globex"), (t, "initech"), (t + timedelta(minutes=1), "initech")):
        key = (moment.date().isoformat(), who)
        days[key] = days.get(key, 0) + 1
    assert data["daily"] == [
        {"day": day, "job": "q3", "recipient": who, "downloads": n}
        for (day, who), n in sorted(days.items())
    ]


def test_a_download_through_either_link_of_a_renewal_chain_completes_it(
    run: UsageRun, tmp_path: Path
) -> None:
    """a.pdf fetched through its first link and b.csv through its renewal: globex complete."""
    logs = write_logs(
        tmp_path / "logs",
        "log",
        [
            run.line("a", run.issued + timedelta(minutes=5)),
            run.line("b-2", run.renewed + timedelta(minutes=5)),
        ],
    )
    data = _usage(run, logs).usage
    assert _by(data["recipients"], recipient="globex")["complete"] is True
    assert data["signals"] == []


def test_more_networks_than_allowed_is_a_leak_signal(run: UsageRun, tmp_path: Path) -> None:
    """Four networks (two addresses of one /24 once, two IPv6 addresses of one /48 once, an
    IPv4-mapped address with its /24, a request logged without one, "-", as a network of its
    own) exceed 3: a signal and exit 1; with 4 allowed, none."""
    t = run.issued + timedelta(minutes=1)
    addresses = [
        "192.0.2.1",
        "192.0.2.200",
        "2001:db8:1:2::1",
        "2001:db8:1:ffff::9",
        "::ffff:203.0.113.9",
        "203.0.113.10",
        "-",
    ]
    logs = write_logs(
        tmp_path / "logs", "log", [run.line("c", t, remote_ip=ip) for ip in addresses]
    )
    report = _usage(run, logs)
    assert report.exit_code == 1
    (signal,) = report.usage["signals"]
    assert signal == {
        "kind": "many_networks",
        "link_id": run.ids["c"],
        "job": "q3",
        "recipient": "initech",
        "key": "=HYPERLINK(q3).txt",
        "requests": 7,
        "networks": 4,
        "first": iso(t),
        "detail": "used from 4 networks, more than 3",
    }
    assert _usage(run, logs, max_networks=4).usage["signals"] == []


def test_an_old_link_used_after_its_renewal_is_a_leak_signal(run: UsageRun, tmp_path: Path) -> None:
    """a.pdf's first link used before its renewal is fine; used after it, a signal naming the
    requests after the renewal only."""
    before = run.renewed - timedelta(minutes=1)
    after = run.renewed + timedelta(seconds=1)
    logs = write_logs(
        tmp_path / "logs",
        "log",
        [
            run.line("a", before),
            run.line("a", after, remote_ip="203.0.113.4"),
            run.line("a", after + timedelta(hours=2), remote_ip="203.0.113.5"),
        ],
    )
    report = _usage(run, logs)
    assert report.exit_code == 1
    (signal,) = report.usage["signals"]
    assert signal["kind"] == "used_after_renewal" and signal["link_id"] == run.ids["a"]
    assert (signal["requests"], signal["networks"], signal["first"]) == (2, 1, iso(after))
    assert run.ids["a-2"] in signal["detail"]
    only_before = write_logs(tmp_path / "early", "log", [run.line("a", before)])
    assert _usage(run, only_before).usage["signals"] == []


def test_an_id_the_run_never_issued_is_a_leak_signal(run: UsageRun, tmp_path: Path) -> None:
    """A forged id is counted as ours, tallied apart and reported, never joined: a well-formed
    one as unknown_id, any other text as malformed_id."""
    forged = 'deadbeef"\x1b[2J'
    t = run.issued + timedelta(minutes=3)
    logs = write_logs(
        tmp_path / "logs",
        "log",
        [
            run.line("a", t, link_id="0000000000000000"),
            run.line("a", t, link_id=forged, status=403),
        ],
    )
    report = _usage(run, logs)
    assert report.exit_code == 1
    assert report.usage["lines"]["ours"] == 2
    signals = {s["link_id"]: s for s in report.usage["signals"]}
    assert set(signals) == {"0000000000000000", forged}
    assert signals["0000000000000000"]["kind"] == "unknown_id"
    assert signals[forged]["kind"] == "malformed_id" and signals[forged]["job"] is None
    assert all(link["downloads"] == 0 for link in report.usage["links"])


def test_bad_lines_are_counted_listed_and_the_rest_reported(run: UsageRun, tmp_path: Path) -> None:
    """Lines that do not parse: counted per source, listed with file and line, exit 2, and
    usage.json still written with every good record."""
    logs = tmp_path / "logs"
    write_logs(logs, "a.log", [run.line("c", run.issued), "garbage", run.line("c", run.issued)])
    write_logs(logs, "b.log", ["also garbage"])
    report = _usage(run, logs)
    assert report.exit_code == 2
    data = json.loads((run.run_dir / "usage.json").read_text())
    assert data["lines"] == {"total": 4, "ours": 2, "other": 0, "bad": 2, "other_runs": 0}
    assert [(b["file"], b["line"]) for b in data["bad_lines"]] == [
        (str(logs / "a.log"), 2),
        (str(logs / "b.log"), 1),
    ]
    assert data["sources"][0]["bad_lines"] == 2
    assert _by(data["recipients"], recipient="initech")["downloads"] == 2


def test_bad_lines_listed_are_capped_and_counted_in_full(run: UsageRun, tmp_path: Path) -> None:
    """More bad lines than the list holds: the list stops, the count does not."""
    logs = write_logs(tmp_path / "logs", "log", ["x"] * (BAD_LINES_LISTED + 5))
    data = _usage(run, logs).usage
    assert data["lines"]["bad"] == BAD_LINES_LISTED + 5
    assert len(data["bad_lines"]) == BAD_LINES_LISTED


def test_files_are_private_and_the_csv_is_safe_for_spreadsheets(
    run: UsageRun, tmp_path: Path
) -> None:
    """usage.json and usage.csv are 0600; a key a spreadsheet would run as a formula is
    quoted; an unknown id, and the malformed ones together, get a row of their own."""
    logs = write_logs(
        tmp_path / "logs",
        "log",
        [
            run.line("c", run.issued),
            run.line("c", run.issued, link_id="=1+1"),
            run.line("c", run.issued, link_id="0123456789abcdef"),
        ],
    )
    _usage(run, logs)
    for name in ("usage.json", "usage.csv"):
        assert (run.run_dir / name).stat().st_mode & 0o777 == 0o600
    with (run.run_dir / "usage.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    initech = _by(rows, link_id=run.ids["c"])
    assert initech["key"] == "'=HYPERLINK(q3).txt" and initech["downloads"] == "1"
    malformed = _by(rows, link_id="'=1+1")
    assert (malformed["kind"], malformed["signals"]) == ("malformed", "malformed_id")
    unknown = _by(rows, link_id="0123456789abcdef")
    assert (unknown["kind"], unknown["signals"]) == ("unknown", "unknown_id")
    assert len(rows) == 9  # seven links, one unknown id, the malformed ones


def test_metrics_file_holds_the_gauges(run: UsageRun, tmp_path: Path) -> None:
    """--metrics-file: per-recipient downloads and completeness, lines by kind, signals by
    kind and the exit code, in the strict text format, world-readable."""
    logs = write_logs(
        tmp_path / "logs",
        "log",
        [run.line("c", run.issued), run.line("c", run.issued, link_id="f" * 16)],
    )
    metrics = tmp_path / "usage.prom"
    _usage(run, logs, metrics_file=metrics)
    assert metrics.stat().st_mode & 0o777 == 0o644
    samples = parse_exposition(metrics.read_text())
    rid = ("run_id", run.run_dir.name)
    who = frozenset({rid, ("job", "q3"), ("recipient", "initech")})
    assert samples[("sharebatch_usage_downloads", who)] == 1
    assert samples[("sharebatch_usage_complete", who)] == 1
    assert samples[("sharebatch_usage_signals", frozenset({rid, ("kind", "unknown_id")}))] == 1
    assert samples[("sharebatch_usage_log_lines", frozenset({rid, ("kind", "ours")}))] == 2
    assert samples[("sharebatch_usage_exit_code", frozenset({rid}))] == 1
    assert samples[("sharebatch_usage_timestamp_seconds", frozenset({rid}))] == NOW.timestamp()


def test_bad_input_writes_nothing(run: UsageRun, tmp_path: Path) -> None:
    """Not a run folder, a source without records, max_networks 0, a metrics file in a
    missing folder, an unreadable bundle: UsageError (exit 2), and no usage.json."""
    logs = write_logs(tmp_path / "logs", "log", [run.line("c", run.issued)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a run folder"):
        usage(tmp_path, [parse_source(str(logs))])
    with pytest.raises(UsageError, match="no log files"):
        _usage(run, tmp_path / "empty")
    with pytest.raises(UsageError, match="--max-networks"):
        _usage(run, logs, max_networks=0)
    with pytest.raises(UsageError, match="metrics-file"):
        _usage(run, logs, metrics_file=tmp_path / "missing" / "u.prom")
    (run.run_dir / "q3" / "initech" / "links.json").write_text("{not json")
    with pytest.raises(LinkError, match=r"initech/links\.json"):
        _usage(run, logs)
    assert not (run.run_dir / "usage.json").exists()
    assert not (run.run_dir / "usage.csv").exists()


def test_the_blocking_face_has_the_coroutines_signature() -> None:
    """usage takes exactly usage_async's parameters."""
    assert inspect.signature(usage) == inspect.signature(usage_async)


def test_an_audit_log_cut_mid_line_is_read_and_a_broken_line_named(
    run: UsageRun, tmp_path: Path
) -> None:
    """A last line without its newline (a run killed while writing it) is no event; a broken
    line before the end is an error naming the file and line."""
    logs = write_logs(tmp_path / "logs", "log", [run.line("a", run.renewed + timedelta(hours=1))])
    audit = run.run_dir / "audit.jsonl"
    with audit.open("a", encoding="utf-8") as out:
        out.write('{"event": "link_issued", "link_id": "00')
    report = _usage(run, logs)
    assert report.exit_code == 1  # the renewal was read: a's old link used after it
    lines = audit.read_text(encoding="utf-8").count("\n")
    with audit.open("a", encoding="utf-8") as out:
        out.write('\n{"event": "link_issued", "link_id": "0000000000000001"}\n')
    with pytest.raises(LinkError, match=rf"audit\.jsonl:{lines + 1}: not an audit event"):
        _usage(run, logs)


def test_rows_without_an_id_are_counted_not_joined(run: UsageRun, tmp_path: Path) -> None:
    """A bundle written with link_ids off: its rows are counted as without id, none listed."""
    path = run.run_dir / "q3" / "initech" / "links.json"
    bundle = json.loads(path.read_text(encoding="utf-8"))
    bundle["links"][0]["link_id"] = None
    path.write_text(json.dumps(bundle), encoding="utf-8")
    logs = write_logs(tmp_path / "logs", "log", [run.line("a-2", run.renewed)])
    data = _usage(run, logs).usage
    assert data["links_without_id"] == 1
    assert run.ids["c"] not in {link["link_id"] for link in data["links"]}
    assert _by(data["recipients"], recipient="initech")["links"] == 0


@given(st.ip_addresses())
def test_a_network_has_one_name_however_its_addresses_are_written(address: Any) -> None:
    """Compressed, exploded and upper-case forms of an address name one network, and two
    addresses share it exactly when they share the /24 (IPv4) or /48 (IPv6)."""
    forms = {str(address), address.exploded, str(address).upper()}
    names = {network_of(form) for form in forms}
    assert len(names) == 1
    prefix = 24 if address.version == 4 else 48
    kind = type(address)
    other = kind(int(address) ^ (1 << (address.max_prefixlen - prefix)))
    neighbour = kind(int(address) ^ 1)
    assert network_of(str(neighbour)) in names
    assert network_of(str(other)) not in names


def _link(data: Any, link_id: str) -> dict[str, Any]:
    return _by(data["links"], link_id=link_id)


def test_our_id_in_another_buckets_record_is_no_download_but_id_misused(
    run: UsageRun, tmp_path: Path
) -> None:
    """A record of another bucket carrying initech's id (another store's logs, or a request
    forged by whoever knows the id) is not initech's download: a misuse signal instead."""
    t = run.renewed + timedelta(minutes=5)
    forged = log_line(
        bucket="someone-elses-bucket",
        time=t,
        request_uri=run.uri("c").replace(f"/{BUCKET}/", "/someone-elses-bucket/"),
        key="=HYPERLINK(q3).txt",
        bytes_sent=30,
    )
    report = _usage(run, write_logs(tmp_path / "logs", "log-1", [forged]))
    assert _link(report.usage, run.ids["c"])["downloads"] == 0
    assert _by(report.usage["recipients"], recipient="initech")["complete"] is False
    (signal,) = report.usage["signals"]
    assert (signal["kind"], signal["link_id"], signal["recipient"]) == (
        "id_misused",
        run.ids["c"],
        "initech",
    )
    assert "someone-elses-bucket/=HYPERLINK(q3).txt" in signal["detail"]
    assert report.exit_code == 1


def test_our_id_on_another_key_is_no_download_and_keys_compare_decoded(
    run: UsageRun, tmp_path: Path
) -> None:
    """Same bucket, another key: no download of the link (S3 would refuse its signature
    there), a misuse; the log's URL-encoded key of the link's own object still counts."""
    t = run.renewed + timedelta(minutes=5)
    forged = log_line(
        bucket=BUCKET,
        time=t,
        request_uri=f"GET /{BUCKET}/other/thing.bin?x-sharebatch-id={run.ids['c']} HTTP/1.1",
        key="other/thing.bin",
        bytes_sent=10_000_000,
    )
    report = _usage(run, write_logs(tmp_path / "logs", "log-1", [forged]))
    row = _link(report.usage, run.ids["c"])
    assert row["downloads"] == 0 and row["bytes_sent"] == 0
    assert _by(report.usage["recipients"], recipient="initech")["complete"] is False
    assert [s["kind"] for s in report.usage["signals"]] == ["id_misused"]
    encoded = log_line(
        bucket=BUCKET, time=t, request_uri=run.uri("c"), key="%3DHYPERLINK%28q3%29.txt"
    )
    report = _usage(run, write_logs(tmp_path / "enc", "log-1", [encoded]))
    assert _link(report.usage, run.ids["c"])["downloads"] == 1
    assert report.usage["signals"] == []


def test_a_recipient_whose_rows_carry_no_id_is_never_complete(
    run: UsageRun, tmp_path: Path
) -> None:
    """Rows without an id (link_ids: false, bundles from before ids) cannot be joined: the
    recipient is not complete (remind --only-unused reminds them) and the row says how many."""
    bundle = run.run_dir / "q3" / "initech" / "links.json"
    data = json.loads(bundle.read_text())
    for row in data["links"]:
        row["link_id"] = None
    bundle.write_text(json.dumps(data))
    logs = write_logs(
        tmp_path / "logs", "log-1", [run.line("a", run.issued + timedelta(minutes=1))]
    )
    out = _usage(run, logs).usage

    receipts = read_receipts(run.run_dir, out["run_id"])
    assert receipts.complete.get(("q3", "initech"), False) is False
    initech = _by(out["recipients"], recipient="initech")
    assert (initech["complete"], initech["without_id"]) == (False, 1)


def _forged_records(n: int) -> Any:
    t = NOW - timedelta(days=1)
    for i in range(n):
        yield parse_line(
            log_line(
                bucket=BUCKET,
                time=t,
                request_uri=f"GET /{BUCKET}/k?x-sharebatch-id={i:016x} HTTP/1.1",
                key="k",
                remote_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                user_agent=f"agent-{i}",
            )
        )


def test_forged_ids_past_the_kept_ones_hold_a_bounded_tally(run: UsageRun) -> None:
    """Past the ids tallied one by one, the catch-all lists at most LISTED addresses and
    agents and says there were more: memory flat however many forged lines come."""
    join = _Join(read_run(run.run_dir))
    count = _SourceCount("x")
    for record in _forged_records(1000 + 5000):
        join.add(record, count)
    rest = join.unknown_more
    assert rest.requests == 5000
    assert len(distinct(rest.ips)) == len(distinct(rest.agents)) == LISTED
    assert more(rest.ips) and more(rest.agents) and more(rest.networks)


def test_one_link_lists_a_bounded_number_of_agents_each_cut_short(
    run: UsageRun, tmp_path: Path
) -> None:
    """Endless distinct, long user agents on one link: LISTED of them written, each cut to
    AGENT_SHOWN characters, and the row says there were more."""
    t = run.renewed + timedelta(minutes=5)
    lines = [run.line("c", t, user_agent=f"bot-{i}-" + "x" * 300) for i in range(500)]
    row = _link(_usage(run, write_logs(tmp_path / "logs", "log-1", lines)).usage, run.ids["c"])
    assert len(row["user_agents"]) == LISTED and row["more_user_agents"] is True
    assert max(len(agent) for agent in row["user_agents"]) <= 201
    assert row["downloads"] == 500


def test_more_networks_than_listed_still_raise_the_signal_past_a_high_limit(
    run: UsageRun, tmp_path: Path
) -> None:
    """--max-networks above LISTED: networks are counted one past the limit, so the signal
    still tells 41 networks from 40."""
    t = run.renewed + timedelta(minutes=5)
    lines = [run.line("c", t, remote_ip=f"10.0.{i}.1") for i in range(41)]
    logs = write_logs(tmp_path / "logs", "log-1", lines)
    assert _usage(run, logs, max_networks=41).usage["signals"] == []
    (signal,) = _usage(run, logs, max_networks=40).usage["signals"]
    assert (signal["kind"], signal["networks"]) == ("many_networks", 41)


def test_a_malformed_id_of_any_length_is_one_signal_cut_short(
    run: UsageRun, tmp_path: Path
) -> None:
    """An id that is not 16 lowercase hex (here 60,000 characters, and 'ABCDEF...' in capitals)
    is counted under one malformed_id signal showing the first one cut short; well-formed
    forged ids each get their unknown_id signal."""
    t = run.renewed + timedelta(minutes=5)
    lines = [run.line("c", t, link_id="f" * 60_000), run.line("c", t, link_id="ABCDEF0123456789")]
    lines += [run.line("c", t, link_id=f"{i:016x}") for i in range(200)]
    report = _usage(run, write_logs(tmp_path / "logs", "l", lines))
    kinds = [s["kind"] for s in report.usage["signals"]]
    assert kinds.count("unknown_id") == 200 and kinds.count("malformed_id") == 1
    malformed = _by(report.usage["signals"], kind="malformed_id")
    assert malformed["requests"] == 2 and malformed["link_id"] == "f" * 32 + "\u2026"
    assert max(len(s["link_id"]) for s in report.usage["signals"]) <= 33
    assert len((run.run_dir / "usage.csv").read_text()) < 100_000


def test_an_old_link_refused_after_its_renewal_is_no_leak(run: UsageRun, tmp_path: Path) -> None:
    """The recipient clicking the expired old link in the old mail (403) after a renewal is
    counted as refused, not used_after_renewal: exit 0."""
    after = run.renewed + timedelta(days=2)
    logs = write_logs(
        tmp_path / "logs",
        "log",
        [run.line("a", after, status=403, error_code="AccessDenied", bytes_sent=243)],
    )
    report = _usage(run, logs)
    assert report.usage["signals"] == [] and report.exit_code == 0
    assert _link(report.usage, run.ids["a"])["refused"] == 1


def test_a_200_that_sent_less_than_the_object_is_partial(run: UsageRun, tmp_path: Path) -> None:
    """A GET the client broke off (200, 10 of 30 bytes) is partial, not a download: the
    recipient is not complete."""
    t = run.renewed + timedelta(minutes=5)
    logs = write_logs(
        tmp_path / "logs",
        "log",
        [run.line("c", t, bytes_sent=10, object_size=30), run.line("b-2", t, object_size=200)],
    )
    data = _usage(run, logs).usage
    c = _link(data, run.ids["c"])
    assert (c["downloads"], c["partial"], c["bytes_sent"]) == (0, 1, 10)
    assert _by(data["recipients"], recipient="initech")["complete"] is False
    assert _link(data, run.ids["b-2"])["downloads"] == 1  # all 200 of 200 bytes


def test_overlapping_sources_are_refused_and_nothing_written(run: UsageRun, tmp_path: Path) -> None:
    """A folder and its sub-folder, the same folder twice, nested s3:// prefixes: their
    records would count twice, so exit 2 with nothing written; disjoint sources are fine."""
    t = run.renewed + timedelta(minutes=5)
    logs = write_logs(tmp_path / "logs" / "2026", "log", [run.line("c", t)])
    other = write_logs(tmp_path / "other", "log", [run.line("c", t)])
    cases = [
        [str(tmp_path / "logs"), str(logs)],
        [str(logs), str(logs) + "/"],
        ["s3://logs/q3/", "s3://logs/q3/2026/"],
        ["s3://logs/q3", "s3://logs/q3"],
    ]
    for texts in cases:
        with pytest.raises(UsageError, match="overlap"):
            usage(run.run_dir, [parse_source(t) for t in texts], now=NOW)
    assert not (run.run_dir / "usage.json").exists()
    report = usage(run.run_dir, [parse_source(str(logs)), parse_source(str(other))], now=NOW)
    assert _link(report.usage, run.ids["c"])["downloads"] == 2


def test_ids_other_runs_in_the_folder_issued_are_counted_not_signalled(
    run: UsageRun, tmp_path: Path
) -> None:
    """Sibling runs share the log source: their ids are found in their audit logs and counted
    as lines.other_runs (no signal); an id no run issued is still unknown_id."""
    sibling = usage_run(tmp_path / "out", NOW - timedelta(hours=3))
    assert sibling.run_dir.parent == run.run_dir.parent
    theirs = sibling.ids["a-2"]  # named only in their audit log's link_renewed events
    t = run.renewed + timedelta(minutes=5)
    lines = [run.line("a", t, link_id=theirs)] * 3 + [run.line("a", t, link_id="0" * 16)]
    report = _usage(run, write_logs(tmp_path / "logs", "log", lines))
    assert report.usage["lines"] == {
        "total": 4,
        "ours": 1,
        "other": 3,
        "bad": 0,
        "other_runs": 3,
    }
    assert [(s["kind"], s["link_id"]) for s in report.usage["signals"]] == [
        ("unknown_id", "0" * 16)
    ]


def test_a_records_key_names_the_link_as_s3_writes_it() -> None:
    """The log's key is URL-encoded (%20 or +): compared decoded; a POST slot's key ends in
    ${filename}, so any file under its folder is the slot's, as is a refused POST that names
    no key; anything else is another object."""
    get = _Link("0" * 16, "q3", "globex", "get", BUCKET, "q3/a b+c.pdf", "2027-01-01T00:00:00Z")
    post = _Link("1" * 16, "q3", "globex", "post", BUCKET, "inbox/g/${filename}", "x")
    assert _same_key("q3/a%20b%2Bc.pdf", get) and _same_key("q3/a+b%2Bc.pdf", get)
    assert not _same_key("q3/a%20b%2Bc.pdfx", get) and not _same_key(None, get)
    assert _same_key("inbox/g/my%20report.pdf", post) and _same_key(None, post)
    assert not _same_key("inbox/h/report.pdf", post)


def _tallies(join: _Join) -> list[tuple[Any, ...]]:
    """Every figure a join holds: each link's tally, the strangers', the counts and days."""
    figures: list[tuple[Any, ...]] = [
        (link.link_id, repr(link.tally)) for link in join.links.values()
    ]
    figures += [(i, repr(t)) for i, t in join.unknown.items()]
    figures += [(i, repr(t), where) for i, (t, where) in join.misused.items()]
    figures.append((repr(join.malformed), join.malformed_first, repr(join.unknown_more)))
    figures.append((join.ours, join.other, join.bad, tuple(join.bad_lines)))
    figures.append(tuple(sorted(join.daily.items())))
    return figures


def test_a_batch_is_counted_as_its_records_one_by_one(run: UsageRun) -> None:
    """``add_batch`` (a chunk's records at once, a link's own record counted inline) holds
    what a record at a time holds: downloads, partials, refusals, renewals' late use, other
    clients, strangers, misused ids, malformed ids and bad lines, in the same order."""
    renewed = run.renewed + timedelta(minutes=5)
    texts = [
        run.line("a", renewed),
        run.line("a", renewed + timedelta(seconds=1), status=206, remote_ip="10.0.1.1"),
        run.line("b", run.renewed - timedelta(minutes=5), user_agent="x" * 300),
        run.line("c", renewed, status=403, error_code="AccessDenied", remote_ip="2001:db8::1"),
        log_line(bucket=BUCKET, time=renewed, request_uri=run.uri("c", None), key="other.pdf"),
        run.line("a", renewed, link_id="0" * 16),
        run.line("a", renewed, link_id="not-an-id"),
        log_line(bucket=BUCKET, time=renewed, request_uri="HEAD /x HTTP/1.1", key="x"),
        *(run.line("c", renewed, remote_ip=f"10.0.{i}.1") for i in range(30)),
    ]
    items: list[Any] = [parse_line(text) for text in texts]
    items.insert(3, BadLine("f", 4, "not a record"))
    one, batch = _Join(read_run(run.run_dir)), _Join(read_run(run.run_dir))
    count_one, count_batch = _SourceCount("x"), _SourceCount("x")
    for item in items:
        one.add(item, count_one)
    batch.add_batch(items, count_batch)
    assert _tallies(batch) == _tallies(one)
    assert repr(count_batch) == repr(count_one)
    assert (count_batch.lines, count_batch.bad_lines) == (len(items), 1)
    assert (len(batch.misused), len(batch.unknown), batch.malformed.requests) == (1, 1, 1)
    c = batch.links[run.ids["c"]].tally
    assert (more(c.ips), len(distinct(c.ips)), c.refused) == (True, LISTED, 1)
    # The inline counting is _Tally.add's, figure for figure, for a link's own records.
    for name in ("a", "b", "c"):
        link, reference = batch.links[run.ids[name]], usage_module._Tally()
        for item in items:
            mine = isinstance(item, AccessRecord) and item.link_id == link.link_id
            if mine and item.key == link.key:
                ip = batch.address(item.remote_ip)
                agent = item.user_agent
                if agent is not None and len(agent) > usage_module.AGENT_SHOWN:
                    agent = agent[: usage_module.AGENT_SHOWN] + "\u2026"
                reference.add(item, ip, agent, batch.network, batch.networks_kept)
        reference.late, reference.late_first = link.tally.late, link.tally.late_first
        reference.late_networks = link.tally.late_networks
        assert repr(reference) == repr(link.tally), name
    assert batch.links[run.ids["a"]].tally.late == 2


def test_hits_as_plain_tuples_count_as_the_hits_do(run: UsageRun) -> None:
    """``usage`` reads hits as plain tuples (``scan_rows``): a join fed those holds what a
    join fed ``Hit``s (``scan_lines``) and one fed the parsed records hold, strangers,
    misused and malformed ids included (their tallies read the hit's fields by name)."""
    renewed = run.renewed + timedelta(minutes=5)
    texts = [
        run.line("a", renewed),
        run.line("a", renewed + timedelta(seconds=1), status=206, remote_ip="10.0.1.1"),
        run.line("b", run.renewed - timedelta(minutes=5), user_agent="x" * 300),
        "not a record",
        run.line("c", renewed, status=403, error_code="AccessDenied", remote_ip="2001:db8::1"),
        log_line(bucket=BUCKET, time=renewed, request_uri=run.uri("c", None), key="other.pdf"),
        run.line("a", renewed, link_id="0" * 16),
        run.line("a", renewed, link_id="not-an-id"),
        log_line(bucket=BUCKET, time=renewed, request_uri="HEAD /x HTTP/1.1", key="x"),
    ]
    rows, hits, records = (_Join(read_run(run.run_dir)) for _ in range(3))
    counts = [_SourceCount("x") for _ in range(3)]
    rows.add_scan(scan_rows("f", 1, texts), counts[0])
    hits.add_scan(scan_lines("f", 1, texts), counts[1])
    items: list[Any] = []
    for number, text in enumerate(texts, 1):
        try:
            items.append(parse_line(text))
        except ValueError as exc:
            items.append(BadLine("f", number, str(exc)))
    records.add_batch(items, counts[2])
    assert _tallies(rows) == _tallies(hits) == _tallies(records)
    assert repr(counts[0]) == repr(counts[1]) == repr(counts[2])
    assert (len(rows.misused), len(rows.unknown), rows.malformed.requests, rows.bad) == (
        1,
        1,
        1,
        1,
    )


def test_signals_read_as_the_list_usage_json_holds(run: UsageRun, tmp_path: Path) -> None:
    """The signals (made when read, not held as dicts) index, slice, compare and count as
    the list written to usage.json; none at all is written as an empty list."""
    t = run.renewed + timedelta(minutes=5)
    lines = [run.line("c", t, remote_ip=f"10.0.{i}.1") for i in range(5)]
    lines.append(run.line("a", t, link_id="f" * 16))
    report = _usage(run, write_logs(tmp_path / "logs", "log-1", lines))
    signals = report.usage["signals"]
    written = json.loads((run.run_dir / "usage.json").read_text())["signals"]
    assert signals == written and list(signals) == written
    assert [s["kind"] for s in signals] == ["many_networks", "unknown_id"]
    assert signals[0] == written[0] and signals[-1:] == written[-1:]
    quiet = _usage(run, write_logs(tmp_path / "quiet", "log-1", [run.line("c", t)]))
    assert quiet.usage["signals"] == []
    assert json.loads((run.run_dir / "usage.json").read_text())["signals"] == []


_TEXT = st.text(max_size=12)
_HELD = st.one_of(
    st.none(),
    _TEXT,
    st.lists(_TEXT, min_size=2, max_size=4, unique=True).map(tuple),
    st.lists(_TEXT, min_size=LISTED, max_size=LISTED, unique=True).map(
        lambda values: (*values, usage_module._OVER)
    ),
)
_WHEN = st.one_of(
    st.none(),
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.replace(microsecond=0)),
)


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(_TEXT, min_size=6, max_size=6),
    replaced=st.one_of(st.none(), _TEXT),
    counts=st.lists(st.integers(min_value=0, max_value=2**63), min_size=5, max_size=5),
    when=st.tuples(_WHEN, _WHEN),
    held=st.tuples(_HELD, _HELD, _HELD),
    kind=st.sampled_from(["get", "put", "post", "page"]),
)
def test_a_link_row_is_written_as_the_json_encoder_writes_it(
    texts: list[str],
    replaced: str | None,
    counts: list[int],
    when: tuple[datetime | None, datetime | None],
    held: tuple[Any, Any, Any],
    kind: Any,
) -> None:
    """usage.json's link rows, written as text without a dict, are byte for byte what
    ``JSONEncoder(ensure_ascii=False)`` makes of the row's dict: quotes, backslashes,
    controls and any other character in ids, keys, agents; null, true and false; times to
    the second and not; listed values with and without "more"."""
    link_id, job, recipient, bucket, key, expires_at = texts[:6]
    link = _Link(link_id, job, recipient, kind, bucket, key, expires_at, replaced_by=replaced)
    tally = link.tally = usage_module._Tally()
    tally.downloads, tally.partial, tally.uploads, tally.bytes_sent, tally.refused = counts
    tally.first, tally.last = when
    tally.ips, tally.networks, tally.agents = held
    (text,) = LinkRows([link]).texts()
    assert text == json.JSONEncoder(ensure_ascii=False).encode(LinkRows([link])[0])


@pytest.mark.parametrize(
    ("text", "compact"),
    [
        ("192.0.2.1", True),
        ("127.0.0.1", True),
        ("255.255.255.255", True),
        ("2001:db8::1", True),
        ("::", True),
        ("::ffff:192.0.2.1", True),
        ("192.0.2.010", False),  # leading zero: its int would write 192.0.2.10
        ("2001:DB8::1", False),  # capitals
        ("2001:db8:0::1", False),  # a zero group written out
        ("2001:0db8::1", False),  # leading zero in a group
        ("fe80::1%eth0", False),  # a zone
        ("-", False),
        ("", False),
        ("not an address", False),
    ],
)
def test_an_address_is_held_as_an_int_only_when_its_text_comes_back_from_it(
    text: str, compact: bool
) -> None:
    """Canonical IPv4 and IPv6 texts are held as ints; any other spelling, "-" or text stays
    as it was; either way ``address_text`` gives back exactly what the log wrote."""
    value = address_value(text)
    assert isinstance(value, int) is compact
    assert address_text(value) == text


def test_ipv4_and_ipv6_values_never_meet() -> None:
    """0.0.0.1, ::1 and ::0.0.0.1 are three addresses, so three values: an IPv4 value and an
    IPv6 one with the same bits must not count as one address."""
    values = {address_value(text) for text in ("0.0.0.1", "::1", "::0.0.0.1", "::ffff:0.0.0.1")}
    assert len(values) == 4


_ADDRESS_TEXTS = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda address: address.exploded),
    st.ip_addresses(v=6).map(lambda address: str(address).upper()),
    st.ip_addresses(v=4).map(
        lambda address: ".".join(f"{int(p):03d}" for p in str(address).split("."))
    ),
    st.text(max_size=45),
)


@settings(max_examples=500, deadline=None)
@given(_ADDRESS_TEXTS, _ADDRESS_TEXTS)
def test_any_text_comes_back_from_its_value_and_equal_values_are_equal_texts(
    first: str, second: str
) -> None:
    """For any text (addresses in every spelling, anything else), its value gives the text
    back byte for byte, and two texts share a value only when they are the same text: the
    distinct addresses a tally counts are the distinct texts the log wrote."""
    assert address_text(address_value(first)) == first
    assert (address_value(first) == address_value(second)) is (first == second)


def test_listed_addresses_are_written_as_logged_in_the_order_of_their_text(
    run: UsageRun, tmp_path: Path
) -> None:
    """Held as ints, the addresses are still written as the log wrote them and sorted as
    text (192.0.2.10 before 192.0.2.9, IPv6 among IPv4, "-" first), in usage.json and
    usage.csv alike; their networks counted across spellings (an IPv4-mapped address in its
    /24, an IPv6 address in capitals in its /48, "-" a network of its own)."""
    t = run.renewed + timedelta(minutes=5)
    addresses = [
        "192.0.2.9",
        "192.0.2.10",
        "2001:db8::a",
        "2001:DB8::B",
        "198.51.100.1",
        "::ffff:192.0.2.77",
        "-",
        "192.0.2.9",
    ]
    lines = [run.line("c", t, remote_ip=ip) for ip in addresses]
    data = _usage(run, write_logs(tmp_path / "logs", "log", lines)).usage
    expected = [
        "-",
        "192.0.2.10",
        "192.0.2.9",
        "198.51.100.1",
        "2001:DB8::B",
        "2001:db8::a",
        "::ffff:192.0.2.77",
    ]
    row = _link(data, run.ids["c"])
    assert (row["remote_ips"], row["more_remote_ips"]) == (expected, False)
    assert (row["networks"], row["more_networks"]) == (4, False)
    assert _by(data["recipients"], recipient="initech")["remote_ips"] == 7
    (signal,) = data["signals"]
    assert (signal["kind"], signal["networks"]) == ("many_networks", 4)
    with (run.run_dir / "usage.csv").open(newline="") as handle:
        (cell,) = [r["remote_ips"] for r in csv.DictReader(handle) if r["link_id"] == run.ids["c"]]
    assert cell == csv_cell(" ".join(expected))  # a leading "-" made safe for spreadsheets


def test_past_listed_addresses_the_first_are_listed_and_networks_still_counted(
    run: UsageRun, tmp_path: Path
) -> None:
    """A link fetched from LISTED addresses of one /24, then from more (one of them a
    repeat, two of a second /24, one IPv6): the first LISTED are listed, "more" said, and
    every network counted, those named only after the list was full included."""
    t = run.renewed + timedelta(minutes=5)
    first = [f"192.0.2.{n}" for n in range(1, LISTED + 1)]
    later = ["192.0.2.3", "192.0.2.200", "198.51.100.1", "198.51.100.2", "2001:db8:1::1"]
    lines = [run.line("c", t, remote_ip=ip) for ip in first + later]
    logs = write_logs(tmp_path / "logs", "log", lines)
    data = _usage(run, logs, max_networks=3).usage
    row = _link(data, run.ids["c"])
    assert row["remote_ips"] == sorted(first) and row["more_remote_ips"] is True
    assert (row["networks"], row["more_networks"]) == (3, False)
    assert data["signals"] == []
    (signal,) = _usage(run, logs, max_networks=2).usage["signals"]
    assert (signal["kind"], signal["networks"]) == ("many_networks", 3)


_POOL = [
    *(f"10.0.{n}.{host}" for n in range(25) for host in (1, 2)),
    *(f"::ffff:10.0.{n}.7" for n in range(3)),
    *(f"2001:db8:{n}::1" for n in range(4)),
    *(f"2001:DB8:{n}::2" for n in range(4)),
    "10.0.001.1",
    "-",
]


@settings(max_examples=200, deadline=None)
@given(
    addresses=st.lists(st.sampled_from(_POOL), max_size=90),
    max_networks=st.integers(min_value=1, max_value=30),
)
def test_a_tally_lists_and_counts_what_its_addresses_name(
    addresses: list[str], max_networks: int
) -> None:
    """Whatever the addresses (IPv4 held as ints, IPv4-mapped, IPv6 in two spellings, odd
    text), a settled tally lists the first LISTED distinct ones in text order and says
    whether there were more, and counts their networks (``network_of`` of each text) up to
    the join's limit, saying whether there were more: as when it held every text and name."""
    join = _Join(RunLinks("run", {}, {}), max_networks)
    tally = _Tally()
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    for text in addresses:
        hit = Hit("0" * 16, BUCKET, "k", moment, text, "REST.GET.OBJECT", 200, 1, 1, None)
        tally.add(hit, join.address(text), None, join.network, join.networks_kept)
    join.unknown["0" * 16] = tally
    join.settle()
    seen = list(dict.fromkeys(addresses))
    assert address_texts(tally.ips) == sorted(seen[:LISTED])
    assert more(tally.ips) is (len(seen) > LISTED)
    names = {network_of(text) for text in seen}
    kept = join.networks_kept
    assert usage_module._count(tally.networks) == min(len(names), kept)
    assert more(tally.networks) is (len(names) > kept)


def test_links_fetched_by_the_same_programs_hold_one_tuple_of_them(run: UsageRun) -> None:
    """Two links fetched by the same two programs in the same order hold one tuple of them
    (100,000 links held as many copies), each still listing both; another order is its own."""
    t = run.renewed + timedelta(minutes=5)
    texts = [
        run.line(name, t, user_agent=agent)
        for name in ("b", "c")
        for agent in ("Firefox", "curl/8.5.0", "Firefox")
    ]
    texts += [run.line("a-2", t, user_agent=agent) for agent in ("curl/8.5.0", "Firefox")]
    join = _Join(read_run(run.run_dir))
    join.add_batch([parse_line(text) for text in texts], _SourceCount("x"))
    b, c, a2 = (join.links[run.ids[name]].tally.agents for name in ("b", "c", "a-2"))
    assert b == c == ("Firefox", "curl/8.5.0") and b is c
    assert a2 == ("curl/8.5.0", "Firefox")


def test_past_the_texts_cached_equal_addresses_are_still_one_value(
    run: UsageRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no room left for address texts (a log with a new address on every line), an
    address converted twice is still one object in both links' tallies, and one IPv6 text
    written in capitals stays text: each tally holds its address, not a copy per line."""
    monkeypatch.setattr(usage_module, "_TEXTS_CACHED", 0)
    t = run.renewed + timedelta(minutes=5)
    texts = [run.line(name, t, remote_ip="192.0.2.7") for name in ("b", "c")]
    texts += [run.line(name, t, remote_ip="2001:DB8::7") for name in ("b", "c")]
    join = _Join(read_run(run.run_dir))
    join.add_batch([parse_line(text) for text in texts], _SourceCount("x"))
    b, c = (join.links[run.ids[name]].tally.ips for name in ("b", "c"))
    assert b == c == (address_value("192.0.2.7"), "2001:DB8::7")
    assert isinstance(b, tuple) and isinstance(c, tuple) and b[0] is c[0]
