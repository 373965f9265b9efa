"""The review page's approvals part as the run writes it: bundles to be mailed, none approved.

A real manifest: globex gets a ``notify:`` section requiring approval, initech none.
"""

from __future__ import annotations

from sharebatch.run.review import APPROVALS_END, APPROVALS_START, ApprovalRow, approvals_block
from tests.support.delivery_run import delivery_run, settings
from tests.support.quarterly import QuarterlyRun
from tests.support.review_page import parse


def test_the_run_lists_bundles_to_be_mailed_as_not_approved(quarterly: QuarterlyRun) -> None:
    """Only grants with notify settings appear, each "not approved", required as set."""
    gated = settings(2525, require_approval=True)
    run = delivery_run(quarterly, lambda job, r: gated if r == "globex" else None)
    text = (run.run_dir / "index.html").read_text(encoding="utf-8")
    assert text.count(APPROVALS_START) == 1 and text.count(APPROVALS_END) == 1
    rows = [r["cells"] for r in parse(run.run_dir / "index.html").tables["approvals"]]
    assert rows == [["q3", "globex", "not approved", "yes", "", ""]]


def test_an_approvals_block_escapes_names_and_counts_approved() -> None:
    """Names are shown through visible() and HTML-escaped; the note counts approved rows."""
    rows = [
        ApprovalRow("q3", "glo<b>bex", "approved", True, "al\u202eice", "2026-10-02T09:45:00Z"),
        ApprovalRow("q3", "initech", "not approved", False),
    ]
    block = approvals_block(rows)
    assert block.startswith(APPROVALS_START + "\n") and block.endswith(APPROVALS_END + "\n")
    assert "glo&lt;b&gt;bex" in block and "al\\u202eice" in block and "\u202e" not in block
    assert "1 of 2 bundles to be mailed are approved" in block
    assert approvals_block([]) == f"{APPROVALS_START}\n{APPROVALS_END}\n"
