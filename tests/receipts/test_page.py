"""The review page's receipts block (``receipts/page.py``), from usage.json in the contract's
shape for a real run on moto: its tables and chart say what usage.json says, outsiders' text
is escaped, and the refresh rewrites only the block, in its place after the approvals.
"""

from __future__ import annotations

import hashlib
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sharebatch.receipts.page import MAX_DAYS, MAX_SERIES, receipts_block, refresh_receipts
from sharebatch.run.review import (
    APPROVALS_END,
    APPROVALS_START,
    RECEIPTS_END,
    RECEIPTS_START,
    ApprovalRow,
    refresh_approvals,
)
from sharebatch.units import human_size
from tests.support.quarterly import QuarterlyRun
from tests.support.review_page import parse
from tests.support.usage_json import Download, Usage, build_usage

FILES = {
    "reports/q3/summary.pdf": b"%PDF" + b"s" * 900,
    "reports/q3/data.csv": b"a,b\n1,2\n",
    "partners/globex/statement.csv": b"globex,1\n" * 40,
    "partners/initech/statement.csv": b"initech,2\n" * 3,
}
NOW = datetime.now(UTC).replace(microsecond=0)


def receipts(run_dir: Path) -> Usage:
    """globex fetched all three of its files over two days (one twice); initech one of three."""
    day1, day2 = NOW - timedelta(days=2), NOW - timedelta(days=1)
    downloads = [
        Download("q3", "globex", "reports/q3/summary.pdf", day1, "192.0.2.10"),
        Download("q3", "globex", "reports/q3/data.csv", day1, "192.0.2.10"),
        Download("q3", "globex", "partners/globex/statement.csv", day2, "198.51.100.7"),
        Download("q3", "globex", "reports/q3/summary.pdf", day2, "198.51.100.7"),
        Download("q3", "initech", "reports/q3/data.csv", day2, "2001:db8::1"),
        Download("q3", "initech", "reports/q3/summary.pdf", day2, "2001:db8::1", partial=True),
    ]
    signal = {
        "kind": "unknown_id",
        "link_id": "00ff<b>00ff00ff",
        "job": None,
        "recipient": None,
        "key": "reports/q3/\u202egnp.exe.pdf",
        "requests": 2,
        "networks": 1,
        "first": "2026-10-02T10:00:00Z",
        "detail": 'an id this run never issued, from 203.0.113.9 "evil\x1b[2J"',
    }
    return build_usage(run_dir, downloads, generated_at=NOW, signals=[signal], bad_lines=2)


def test_the_block_shows_what_usage_json_says(quarterly: QuarterlyRun) -> None:
    """Per recipient: downloads, partial, bytes, first/last, IPs, unused links, complete; the
    signal's outsiders' text escaped; one bar per recipient and day with downloads."""
    run_dir = quarterly(FILES)
    usage = receipts(run_dir)
    block = receipts_block(usage.data)
    assert block.startswith(RECEIPTS_START + "\n") and block.endswith(RECEIPTS_END + "\n")
    page = run_dir / "receipts.html"
    page.write_text(block, encoding="utf-8")
    parsed = parse(page)
    rows = {r["cells"][1]: r["cells"] for r in parsed.tables["receipts"]}
    for r in usage.data["recipients"]:
        assert rows[r["recipient"]] == [
            r["job"],
            r["recipient"],
            str(r["downloads"]),
            str(r["partial"]),
            human_size(r["bytes_sent"]),
            r["first"] or "never",
            r["last"] or "never",
            str(r["remote_ips"]),
            f"{r['unused']} of {r['links']}",
            "yes" if r["complete"] else "no",
        ]
    assert rows["globex"][-1] == "yes" and rows["initech"][-1] == "no"
    assert rows["initech"][8] == "1 of 3"  # the partial one counts as used, not as had
    # Outsiders' text: a bidi override, an escape sequence, markup; shown, never live.
    [signal] = parsed.tables["signals"]
    assert signal["cells"][0] == "unknown id"
    assert signal["cells"][3] == "reports/q3/\\u202egnp.exe.pdf"
    assert signal["cells"][4] == "00ff<b>00ff00ff"
    assert "\u202e" not in block and "\x1b" not in block and "<b>" not in block
    assert "00ff&lt;b&gt;00ff00ff" in block
    assert "1 of 2 recipients downloaded every file" in block
    assert "2 log lines did not parse" in block
    bars = re.findall(r'<rect class="bar" data-day="([\d-]+)" data-series="([^"]+)"'
                      r' data-downloads="(\d+)"', block)  # fmt: skip
    expected = [
        (e["day"], f"{e['job']}/{e['recipient']}", str(e["downloads"])) for e in usage.data["daily"]
    ]
    assert sorted(bars) == sorted(expected)
    assert len(bars) == 3  # globex on both days, initech on the second
    assert " style=" not in block and "<style" not in block  # the page's CSP forbids them


def test_no_downloads_no_signals(quarterly: QuarterlyRun) -> None:
    """Nothing downloaded yet: no chart, "No leak signals", every recipient incomplete."""
    run_dir = quarterly(FILES)
    block = receipts_block(build_usage(run_dir, [], generated_at=NOW).data)
    assert 'id="chart-none"' in block and "<svg" not in block
    assert 'id="signals-none"' in block
    assert "0 of 2 recipients downloaded every file" in block


def test_many_recipients_share_the_others_colour(quarterly: QuarterlyRun) -> None:
    """Past MAX_SERIES recipients, the least active are drawn together as "N others"; the
    legend counts every download once."""
    share = "  - name: many\n    prefixes: [reports/q3/]\n    recipients:\n" + "".join(
        f"      - id: r{n:02}\n" for n in range(MAX_SERIES + 3)
    )
    run_dir = quarterly(FILES, share)
    downloads = [
        Download("many", f"r{n:02}", "reports/q3/data.csv", NOW - timedelta(hours=1))
        for n in range(MAX_SERIES + 3)
        for _ in range(n + 1)  # r00 once, r01 twice...: a clear ranking
    ]
    block = receipts_block(build_usage(run_dir, downloads, generated_at=NOW).data)
    legend = re.findall(r'<text class="legend"[^>]*>([^<]+)</text>', block)
    assert len(legend) == MAX_SERIES + 1
    assert legend[0] == f"many/r{MAX_SERIES + 2:02} ({MAX_SERIES + 3})"  # the most active first
    assert legend[-1] == "3 others (6)"  # r00, r01, r02: 1 + 2 + 3
    total = sum(int(n) for n in re.findall(r"\((\d+)\)$", "\n".join(legend), re.MULTILINE))
    assert total == len(downloads)


def test_refresh_puts_receipts_after_approvals_and_touches_nothing_else(
    quarterly: QuarterlyRun,
) -> None:
    """On a real review page: receipts go after the recipients table; approvals added later
    go before them; refreshing either rewrites only its own block (bytes compared)."""
    run_dir = quarterly(FILES)
    page = run_dir / "index.html"
    original = page.read_text(encoding="utf-8")
    usage = receipts(run_dir)
    digest = refresh_receipts(page, usage.data)
    text = page.read_text(encoding="utf-8")
    assert digest == hashlib.sha256(text.encode()).hexdigest()
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    block = receipts_block(usage.data)
    assert text.replace(block, "") == original
    assert text.index("<h2>Recipients</h2>") < text.index(RECEIPTS_START)
    assert text.index(RECEIPTS_END) < text.index("<h2>Files</h2>")

    rows = [ApprovalRow("q3", "globex", "approved", True, "alice", "2026-10-02T09:45:00Z")]
    refresh_approvals(page, rows)
    text = page.read_text(encoding="utf-8")
    assert text.index(APPROVALS_END) < text.index(RECEIPTS_START)
    assert text.count(RECEIPTS_START) == 1 and block in text

    later = build_usage(run_dir, [], generated_at=NOW + timedelta(hours=1))
    refresh_receipts(page, later.data)
    again = page.read_text(encoding="utf-8")
    assert again.count(RECEIPTS_START) == 1 and block not in again
    assert receipts_block(later.data) in again
    assert again.index(APPROVALS_START) < again.index(RECEIPTS_START)
    # The approvals block survived the receipts' refresh byte for byte.
    approvals = text[text.index(APPROVALS_START) : text.index(APPROVALS_END)]
    assert approvals in again


def test_a_page_that_is_not_a_review_page_is_left_alone(tmp_path: Path) -> None:
    """Neither a receipts block nor a recipients table: untouched, and no sha256."""
    page = tmp_path / "index.html"
    page.write_text("<h2>Something else</h2>\n", encoding="utf-8")
    usage = {
        "generated_at": "2026-10-02T10:00:00Z",
        "lines": {"total": 0, "ours": 0, "other": 0, "bad": 0},
        "recipients": [],
        "daily": [],
        "signals": [],
    }
    assert refresh_receipts(page, usage) is None
    assert page.read_text(encoding="utf-8") == "<h2>Something else</h2>\n"


def test_the_chart_shows_the_last_days_and_says_so() -> None:
    """Downloads over more than MAX_DAYS days: bars for the last MAX_DAYS only, a note saying
    the table counts them all; every bar's day lies in that window."""
    last = NOW.date()
    daily = [
        {"day": (last - timedelta(days=n)).isoformat(), "job": "q3", "recipient": "globex",
         "downloads": 1}
        for n in range(MAX_DAYS + 8)
    ]  # fmt: skip
    usage = {
        "generated_at": "2026-10-02T10:00:00Z",
        "lines": {"total": len(daily), "ours": len(daily), "other": 0, "bad": 0},
        "recipients": [],
        "daily": daily,
        "signals": [],
    }
    block = receipts_block(usage)
    days = re.findall(r'<rect class="bar" data-day="([\d-]+)"', block)
    assert len(days) == MAX_DAYS
    assert min(days) == (last - timedelta(days=MAX_DAYS - 1)).isoformat()
    assert max(days) == last.isoformat()
    assert f"The chart shows the last {MAX_DAYS} days" in block


def test_a_recipient_without_ids_reads_unknown(quarterly: QuarterlyRun, tmp_path: Path) -> None:
    """A recipient whose rows carry no id (usage.json's ``without_id``): the Complete cell
    says unknown, not no; the new signal kinds have their own names."""
    usage = receipts(quarterly(FILES)).data
    usage["recipients"][1] |= {"complete": False, "without_id": 2}
    usage["signals"][0] |= {"kind": "id_misused"}
    page = tmp_path / "receipts.html"
    page.write_text(receipts_block(usage), encoding="utf-8")
    parsed = parse(page)
    rows = {r["cells"][1]: r["cells"] for r in parsed.tables["receipts"]}
    assert rows[usage["recipients"][1]["recipient"]][-1] == "unknown"
    assert rows[usage["recipients"][0]["recipient"]][-1] in ("yes", "no")
    [signal] = parsed.tables["signals"]
    assert signal["cells"][0] == "id used on another object"
