"""Every rendering of outsiders' text for a terminal escapes it through ``visible``.

Object keys, uploaded file names and bundle paths are chosen by others: the ``inbox``, ``doctor``
and ``renew`` renderings show them with controls and bidi characters written as escapes.
"""

from __future__ import annotations

from datetime import date

import pytest

from sharebatch.cli.doctor import render_diagnosis
from sharebatch.cli.inbox import render_inbox
from sharebatch.cli.links import _render_renew
from sharebatch.lifecycle.doctor import Check, Diagnosis
from sharebatch.lifecycle.inbox import Inbox, InboxEntry, InboxSlot
from sharebatch.lifecycle.renew import Renewal, RenewReport
from sharebatch.models import UploadSlot

RAW = ("\x1b", "\x07", "\u202e")


def test_inbox_shows_names_and_prefixes_escaped() -> None:
    """A returned file named with U+202E and a slot prefix with ESC are shown as \\u202e and
    \\x1b (not the \\x202e a per-character hex escape would give)."""
    slot = UploadSlot(prefix="in/\x1b[2J/", max_size=10)
    entry = InboxEntry(key="in/x", name="evil/\u202egnp.exe.pdf\x07", status="received", size=1)
    text = render_inbox(
        Inbox("m.yml", date(2026, 1, 1), (InboxSlot("j", "r", "b", slot, (entry,)),))
    )
    assert "in/\\x1b[2J/" in text
    assert "evil/\\u202egnp.exe.pdf\\x07" in text
    assert not any(raw in text for raw in RAW)


def test_doctor_shows_subjects_and_messages_escaped() -> None:
    """A bucket/prefix and a message from S3 holding escapes are shown escaped."""
    check = Check("FAIL", "listing", "b/\x1b]0;x\x07", "AccessDenied: \u202eyako")
    text = render_diagnosis(Diagnosis("m.yml", (check,)))
    assert "b/\\x1b]0;x\\x07: AccessDenied: \\u202eyako" in text
    assert not any(raw in text for raw in RAW)


def test_renew_shows_paths_and_errors_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """Bundle paths (written and refused) and error messages are shown escaped."""
    report = RenewReport(
        [
            Renewal("a/\x1b[2J", ("a/\x1b[2J/links.renewed.json",), 1, 0, None),
            Renewal("b/\u202e", (), 0, 0, None, error="row 2: key \x07"),
            Renewal("c/\x07", (), 0, 0, None),
        ]
    )
    _render_renew(report)
    out, err = capsys.readouterr()
    assert out == "a/\\x1b[2J/links.renewed.json\n"
    assert "b/\\u202e: not renewed: row 2: key \\x07" in err
    assert "c/\\x07: nothing to renew" in err
    assert not any(raw in out + err for raw in RAW)
