"""`sharebatch demo`: the real run on an embedded S3 and SMTP server, ending in verified
downloads (one link, and one reached from a captured mail through its recipient page)."""

from __future__ import annotations

import os
import stat
import sys
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app


def test_demo_runs_from_any_folder_and_downloads_a_matching_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started outside the project, the demo runs the manifest shipped in the package, prints
    its bundles and a download that matches the uploaded bytes."""
    before = dict(os.environ)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"run folder: {tmp_path / 'out'}")
    bundles = [line for line in lines if line.startswith("bundle: ")]
    assert len(bundles) == 3
    assert _line(lines, "downloaded ").endswith("identical to the uploaded file")
    review = Path(_line(lines, "review page").rpartition(": ")[2])
    assert review.name == "index.html" and review.is_file()
    assert "X-Amz-Signature" not in result.stdout + result.stderr
    assert dict(os.environ) == before  # its fake credentials do not outlive the demo


def test_demo_mails_each_recipient_and_keeps_the_captured_mails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo names each mail its SMTP server captured, with a 0600 .eml file holding the
    message to exactly that recipient's addresses, and follows one mail's page link to a
    download whose bytes match the uploaded file."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    run_dir = Path(lines[0].removeprefix("run folder: "))
    mails = {}
    for line in lines:
        if line.startswith("  mail to "):
            to, _, rest = line.removeprefix("  mail to ").partition(": ")
            subject, _, path = rest.rpartition("  ")
            mails[to] = (subject, Path(path))
    assert sorted(mails) == [
        "accounts@initech.example",
        "auditors@audit.example, lead@audit.example",
        "finance@globex.example",
    ]
    for to, (subject, path) in mails.items():
        assert path.parent == run_dir / "demo-mailbox"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        message = message_from_bytes(path.read_bytes(), policy=default)
        assert str(message["To"]).count("@") == to.count("@")
        for address in to.split(", "):
            assert address in str(message["To"])
        assert repr(str(message["Subject"])) == subject
        body = message.get_body(("plain",))
        assert body is not None and "X-Amz-Signature" in body.get_content()
    assert (tmp_path / "out" / "demo.yml").is_file()  # the manifest run, with the SMTP port
    followed = _line(lines, "followed the page link in the mail to ")
    assert followed.endswith("identical to the uploaded file")
    assert "X-Amz-Signature" not in result.stdout + result.stderr


def _line(lines: list[str], start: str) -> str:
    """The one line of the demo's output that starts with ``start``."""
    [found] = [line for line in lines if line.startswith(start)]
    return found


def test_demo_without_the_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without moto installed the demo names the install command instead of a traceback."""
    monkeypatch.setitem(sys.modules, "moto.server", None)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "pip install 'sharebatch[demo]'" in result.stderr


def test_demo_without_aiosmtpd_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the embedded SMTP server's package the demo names the install command too."""
    monkeypatch.setitem(sys.modules, "aiosmtpd.controller", None)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "embedded SMTP server: pip install 'sharebatch[demo]'" in result.stderr


def test_demo_help_names_the_extra_to_install() -> None:
    """The help text keeps the brackets of sharebatch[demo] (Rich would read them as markup)."""
    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "pip install 'sharebatch[demo]'" in result.stdout
