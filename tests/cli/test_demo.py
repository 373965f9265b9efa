"""`sharebatch demo`: the real run on an embedded S3, ending in a verified download."""

from __future__ import annotations

import os
import sys
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
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "pip install 'sharebatch[demo]'" in result.stderr


def test_demo_help_names_the_extra_to_install() -> None:
    """The help text keeps the brackets of sharebatch[demo] (Rich would read them as markup)."""
    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "pip install 'sharebatch[demo]'" in result.stdout
