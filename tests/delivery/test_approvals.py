"""The review gate: approvals recorded against the bundles' bytes, and what they hold back."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sharebatch.audit import capture
from sharebatch.delivery.approvals import approve, read_approvals, unapproved
from sharebatch.errors import UsageError
from sharebatch.run.delivery_plan import DeliveryPlan, read_plan, write_plan
from sharebatch.run.review import APPROVALS_END, APPROVALS_START
from tests.support.approval_run import gated_run, page_digest, with_page_digest
from tests.support.quarterly import QuarterlyRun
from tests.support.review_page import parse

NOW = datetime(2026, 10, 2, 9, 45, tzinfo=UTC)


@pytest.fixture
def run_dir(quarterly: QuarterlyRun) -> Path:
    """A real run on moto with a plan requiring approval of both bundles."""
    return gated_run(quarterly)


def held(run_dir: Path) -> dict[tuple[str, str], str]:
    plan = read_plan(run_dir)
    assert plan is not None
    return unapproved(run_dir, plan)


def test_nothing_approved_holds_every_bundle_back(run_dir: Path) -> None:
    """Before any approval, each bundle requiring one is "not approved"."""
    assert held(run_dir) == {("q3", "globex"): "not approved", ("q3", "initech"): "not approved"}


def test_approved_bundles_pass_until_their_bytes_change(run_dir: Path) -> None:
    """After approve, nothing is held; one byte changed in a bundle holds that one back."""
    approve(run_dir, by="alice", now=NOW)
    assert held(run_dir) == {}
    bundle = run_dir / "q3" / "initech" / "links.json"
    bundle.write_bytes(bundle.read_bytes().replace(b"initech", b"inItech", 1))
    assert held(run_dir) == {("q3", "initech"): "changed since approval"}


def test_a_changed_page_holds_its_bundle_back_until_approved_again(run_dir: Path) -> None:
    """A page digest other than the approved one is a change; a new approval clears it."""
    approve(run_dir, by="alice", now=NOW)
    with_page_digest(run_dir, "globex", "b" * 64)
    assert held(run_dir) == {("q3", "globex"): "changed since approval"}
    approve(run_dir, by="bob", only=["globex"], now=NOW)
    assert held(run_dir) == {}
    assert read_approvals(run_dir)[("q3", "globex")].by == "bob"


def test_a_removed_bundle_counts_as_changed(run_dir: Path) -> None:
    """An approved bundle that is gone no longer has the approved bytes."""
    approve(run_dir, by="alice", now=NOW)
    (run_dir / "q3" / "globex" / "links.json").unlink()
    assert held(run_dir) == {("q3", "globex"): "changed since approval"}


def test_approving_only_one_leaves_the_other_unapproved(run_dir: Path) -> None:
    """--only a recipient approves its bundles alone; job/recipient names one bundle too."""
    approve(run_dir, by="alice", only=["globex"], now=NOW)
    assert held(run_dir) == {("q3", "initech"): "not approved"}
    approve(run_dir, by="alice", only=["q3/initech"], now=NOW)
    assert held(run_dir) == {}


def test_without_require_approval_nothing_is_held(quarterly: QuarterlyRun) -> None:
    """The gate holds back only bundles whose settings ask for approval."""
    run_dir = gated_run(quarterly, require_approval=False)
    assert held(run_dir) == {}


def test_approvals_file_holds_whole_private_lines_with_both_digests(run_dir: Path) -> None:
    """approvals.jsonl is 0600, one JSON line per approved bundle with the digests of its
    bundle, page and delivery.json entry, appended, never rewritten."""
    with capture() as events:
        approve(run_dir, by="alice", now=NOW)
    approve(run_dir, by="bob", only=["initech"], now=NOW)
    path = run_dir / "approvals.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    digest = {
        r: hashlib.sha256((run_dir / "q3" / r / "links.json").read_bytes()).hexdigest()
        for r in ("globex", "initech")
    }
    entry = {}
    for e in json.loads((run_dir / "delivery.json").read_text())["entries"]:
        del e["page"]  # the page has a digest of its own
        text = json.dumps(e, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        entry[e["recipient"]] = hashlib.sha256(text.encode()).hexdigest()
    assert lines == [
        {"time": "2026-10-02T09:45:00Z", "by": "alice", "job": "q3", "recipient": "globex",
         "bundle_sha256": digest["globex"], "page_sha256": page_digest(run_dir, "globex"),
         "entry_sha256": entry["globex"]},
        {"time": "2026-10-02T09:45:00Z", "by": "alice", "job": "q3", "recipient": "initech",
         "bundle_sha256": digest["initech"], "page_sha256": None,
         "entry_sha256": entry["initech"]},
        {"time": "2026-10-02T09:45:00Z", "by": "bob", "job": "q3", "recipient": "initech",
         "bundle_sha256": digest["initech"], "page_sha256": None,
         "entry_sha256": entry["initech"]},
    ]  # fmt: skip
    assert [(e["event"], e["recipient"]) for e in events if e["event"] == "approved"] == [
        ("approved", "globex"),
        ("approved", "initech"),
    ]
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    assert [(e["by"], e["recipient"]) for e in audit if e["event"] == "approved"] == [
        ("alice", "globex"),
        ("alice", "initech"),
        ("bob", "initech"),
    ]


def test_a_torn_last_line_approves_nothing_and_swallows_no_later_line(run_dir: Path) -> None:
    """A line cut by a crash is skipped; the next approval starts on a line of its own."""
    path = run_dir / "approvals.jsonl"
    path.write_text('{"time": "2026-10-02T09:45:00Z", "by": "alice", "job": "q3", "recip')
    path.chmod(0o600)
    assert held(run_dir)[("q3", "globex")] == "not approved"
    approve(run_dir, by="alice", only=["globex"], now=NOW)
    assert held(run_dir) == {("q3", "initech"): "not approved"}
    assert len(path.read_text().splitlines()) == 2


def test_unknown_only_names_are_refused_naming_each_and_nothing_is_written(
    run_dir: Path,
) -> None:
    """Names that pick no bundle: UsageError (exit 2) naming them; no approval recorded."""
    with pytest.raises(UsageError, match=r"nobody, q4/globex") as caught:
        approve(run_dir, by="alice", only=["globex", "nobody", "q4/globex"], now=NOW)
    assert caught.value.exit_code == 2
    assert not (run_dir / "approvals.jsonl").exists()


def test_a_run_without_a_delivery_plan_is_refused(quarterly: QuarterlyRun) -> None:
    """A run whose manifest had no notify: settings has nothing to approve (exit 2)."""
    run_dir = quarterly({"reports/q3/a.txt": b"a"})
    with pytest.raises(UsageError, match=r"no delivery\.json"):
        approve(run_dir, by="alice", now=NOW)


def without_block(text: str) -> str:
    head, _, rest = text.partition(APPROVALS_START + "\n")
    return head + rest.partition(APPROVALS_END + "\n")[2]


def test_review_page_shows_who_approved_what(run_dir: Path) -> None:
    """approve adds the approvals part to a review page without one (written before the
    gate existed), then replaces only it: states, approver and time; the rest of the page
    stays byte for byte."""
    page = run_dir / "index.html"
    before = without_block(page.read_text(encoding="utf-8"))
    page.write_text(before, encoding="utf-8")
    assert APPROVALS_START not in before
    report = approve(run_dir, by="alice <ops>", only=["globex"], now=NOW)
    after = page.read_text(encoding="utf-8")
    assert without_block(after) == before
    assert report.review_sha256 == hashlib.sha256(after.encode()).hexdigest()
    assert after.index("<h2>Recipients</h2>") < after.index(APPROVALS_START)
    assert after.index(APPROVALS_END) < after.index("<h2>Files</h2>")
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    rows = [r["cells"] for r in parse(page).tables["approvals"]]
    assert rows == [
        ["q3", "globex", "approved", "yes", "alice <ops>", "2026-10-02T09:45:00Z"],
        ["q3", "initech", "not approved", "yes", "", ""],
    ]
    assert "alice &lt;ops&gt;" in after
    (run_dir / "q3" / "globex" / "links.json").write_text("{}")
    approve(run_dir, by="bob", only=["initech"], now=NOW)
    again = page.read_text(encoding="utf-8")
    assert again.count(APPROVALS_START) == 1 and without_block(again) == before
    states = [r["cells"][2] for r in parse(page).tables["approvals"]]
    assert states == ["changed since approval", "approved"]


def test_a_page_that_is_not_a_review_page_is_left_alone(run_dir: Path) -> None:
    """No approvals part and no recipients table: the file is not touched, and no sha256."""
    page = run_dir / "index.html"
    page.write_text("<p>something else</p>\n")
    report = approve(run_dir, by="alice", now=NOW)
    assert report.review_sha256 is None
    assert page.read_text() == "<p>something else</p>\n"
    assert held(run_dir) == {}


def test_bundles_not_mailed_are_left_out_not_approved(run_dir: Path) -> None:
    """A notify: false bundle is reported left out; it gets no approval line."""
    plan = read_plan(run_dir)
    assert plan is not None
    off = dataclasses.replace(plan.entries[1], notify=False, settings=None)
    write_plan(run_dir, DeliveryPlan(plan.run_id, (plan.entries[0], off)))
    report = approve(run_dir, by="alice", now=NOW)
    assert [a.recipient for a in report.approved] == ["globex"]
    assert report.left_out == (("q3", "initech"),)
    assert list(read_approvals(run_dir)) == [("q3", "globex")]
    assert held(run_dir) == {}
