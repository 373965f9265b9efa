"""The command line surface: entry points, version, help, endpoint from the environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch import __version__
from sharebatch.cli import app
from tests.conftest import S3, fetch, write_manifest


def test_python_dash_m_reports_the_version() -> None:
    """`python -m sharebatch --version` works, as does the console script."""
    done = subprocess.run(
        [sys.executable, "-m", "sharebatch", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"sharebatch {__version__}\n")


def test_run_help_documents_exit_codes() -> None:
    """`sharebatch run --help` names every exit code."""
    result = CliRunner().invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    for code in ("0 ok", "1 some prefixes failed", "2 invalid", "3 no usable credentials", "130"):
        assert code in " ".join(result.stdout.split())


def test_endpoint_from_the_standard_environment(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_ENDPOINT_URL_S3 (the standard chain) points the run at an S3-compatible endpoint."""
    s3.bucket("env-bucket", {"x/1.txt": b"one"})
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
    manifest = write_manifest(
        tmp_path / "m.yml",
        "version: 1\njobs:\n  - name: j\n    bucket: env-bucket\n    region: eu-west-1\n"
        "    expires_in: 10m\n    prefixes: [x/]\n    recipients: [{id: r}]\n",
    )
    result = CliRunner().invoke(app, ["run", str(manifest), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.stderr
    bundle = json.loads((Path(result.stdout.strip()) / "j" / "r" / "links.json").read_text())
    assert [fetch(row["url"]) for row in bundle["links"]] == [b"one"]
    assert bundle["links"][0]["url"].startswith(f"{s3.endpoint}/env-bucket/x/1.txt?")


def test_us_east_1_links_are_sigv4(s3: S3, tmp_path: Path) -> None:
    """Even where botocore would default to SigV2 (us-east-1), links are SigV4."""
    s3.bucket("east-bucket", {"k.txt": b"east"}, region="us-east-1")
    manifest = write_manifest(
        tmp_path / "m.yml",
        "version: 1\njobs:\n  - name: j\n    bucket: east-bucket\n    region: us-east-1\n"
        "    expires_in: 10m\n    prefixes: [k]\n    recipients: [{id: r}]\n",
    )
    result = CliRunner().invoke(
        app, ["run", str(manifest), "--out", str(tmp_path / "o"), "--endpoint-url", s3.endpoint]
    )
    assert result.exit_code == 0, result.stderr
    [row] = json.loads((Path(result.stdout.strip()) / "j" / "r" / "links.json").read_text())[
        "links"
    ]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in row["url"] and "AWSAccessKeyId" not in row["url"]
    assert fetch(row["url"]) == b"east"
