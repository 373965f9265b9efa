"""The CloudFront key is checked when the manifest loads: validate, doctor and run all stop at
its line, with exit 2, before any request is made or anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from tests.support.cloudfront_keys import make_key, pem, write_key

MANIFEST = """\
version: 1
defaults:
  bucket: acme-reports
  expires_in: 30d
  link: cloudfront
  cloudfront:
    domain: d111111abcdef8.cloudfront.net
    key_pair_id: K2JCJMDEHXQW5F
    private_key: {file: cf.pem}
    max_expires_in: 90d
jobs:
  - name: q3
    prefixes: [reports/]
    recipients:
      - id: globex
"""


@pytest.mark.parametrize("command", ["validate", "doctor", "run"])
def test_a_group_readable_key_stops_every_command_at_its_line(tmp_path: Path, command: str) -> None:
    """A 0640 key file: exit 2, the first line is the located issue with the chmod that fixes
    it, no key material anywhere, and run writes nothing."""
    data = pem(make_key("p256"))
    key = write_key(tmp_path / "cf.pem", data, 0o640)
    manifest = tmp_path / "m.yml"
    manifest.write_text(MANIFEST, encoding="utf-8")
    out = tmp_path / "out"
    extra = ["--out", str(out)] if command == "run" else []
    result = CliRunner().invoke(app, [command, str(manifest), *extra], catch_exceptions=False)
    assert result.exit_code == 2
    first = result.stderr.splitlines()[0]
    assert first == (
        f"{manifest}:9:18: defaults.cloudfront.private_key: private key file {str(key)!r} is"
        f" readable by group or others (mode 0640); a signing key must be private to its"
        f" owner: chmod 600 {key}"
    )
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    assert not out.exists()
