"""`sharebatch demo`: the real run on an embedded S3, ending in a verified download."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app

DEMO_MANIFEST = Path(__file__).parent.parent / "manifests" / "demo.yml"


def test_demo_runs_and_downloads_a_matching_file(tmp_path: Path) -> None:
    """The demo prints its bundles and a download that matches the uploaded bytes."""
    before = dict(os.environ)
    result = CliRunner().invoke(
        app, ["demo", "--manifest", str(DEMO_MANIFEST), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"run folder: {tmp_path / 'out'}")
    bundles = [line for line in lines if line.startswith("bundle: ")]
    assert len(bundles) == 3
    assert "identical to the uploaded file" in lines[-1]
    review = Path(lines[-2].rpartition(": ")[2])
    assert review.name == "index.html" and review.is_file()
    assert "X-Amz-Signature" not in result.stdout + result.stderr
    assert dict(os.environ) == before  # its fake credentials do not outlive the demo


def test_demo_without_the_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without moto installed the demo names the install command instead of a traceback."""
    monkeypatch.setitem(sys.modules, "moto.server", None)
    result = CliRunner().invoke(
        app, ["demo", "--manifest", str(DEMO_MANIFEST), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "pip install 'sharebatch[demo]'" in result.stderr
