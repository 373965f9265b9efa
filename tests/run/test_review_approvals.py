"""The review page's approvals part as the run writes it: bundles to be mailed, none approved.

The manifest's `notify:` parsing is not this test's subject: the loaded manifest is given
notify settings for one grant, as the manifest stage hands them over (Grant.notify).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sharebatch.manifest.load import Manifest
from sharebatch.run import runner
from sharebatch.run.review import APPROVALS_END, APPROVALS_START, ApprovalRow, approvals_block
from tests.support.approval_run import FILES, SETTINGS
from tests.support.quarterly import QuarterlyRun
from tests.support.review_page import parse


def test_the_run_lists_bundles_to_be_mailed_as_not_approved(
    quarterly: QuarterlyRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only grants with notify settings appear, each "not approved", required as set."""
    load = runner.load_manifest

    def with_notify(*args: Any, **kwargs: Any) -> Manifest:
        manifest = load(*args, **kwargs)
        job = manifest.jobs[0]
        grants = tuple(
            g.model_copy(update={"notify": SETTINGS}) if g.recipient.id == "globex" else g
            for g in job.grants
        )
        return manifest.model_copy(update={"jobs": (job.model_copy(update={"grants": grants}),)})

    monkeypatch.setattr(runner, "load_manifest", with_notify)
    run_dir: Path = quarterly(FILES)
    text = (run_dir / "index.html").read_text(encoding="utf-8")
    assert text.count(APPROVALS_START) == 1 and text.count(APPROVALS_END) == 1
    rows = [r["cells"] for r in parse(run_dir / "index.html").tables["approvals"]]
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
