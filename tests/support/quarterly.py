"""The quarterly-partners manifest, and a run of it on moto: what the page tests share.

One job ``q3`` shares ``reports/q3/`` with two partners, each with a folder of its own;
``globex`` has a name and an address, ``initech`` neither. Tests add jobs of their own
(``extra_jobs``) and choose what the bucket holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from sharebatch.cli import app
from tests.support.s3 import S3, write_manifest

BUCKET = "acme-reports"
MANIFEST = f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  expires_in: 72h
jobs:
  - name: q3
    prefixes: [reports/q3/]
    recipients:
      - id: globex
        name: Globex Corporation
        email: finance@globex.example
        prefixes: [partners/globex/]
      - id: initech
        prefixes: [partners/initech/]
"""


@dataclass(frozen=True)
class QuarterlyRun:
    """Runs the quarterly manifest through the CLI; the ``quarterly`` fixture hands one out."""

    s3: S3
    folder: Path

    def __call__(
        self, files: dict[str, bytes], extra_jobs: str = "", *, exit_code: int = 0
    ) -> Path:
        """Seed ``files``, run the manifest (plus ``extra_jobs``); the run folder."""
        self.s3.bucket(BUCKET, files)
        manifest = write_manifest(self.folder / "quarterly.yml", MANIFEST + extra_jobs)
        result = CliRunner().invoke(
            app,
            ["run", str(manifest), "--out", str(self.folder / "out"),
             "--endpoint-url", self.s3.endpoint],
            catch_exceptions=False,
        )  # fmt: skip
        assert result.exit_code == exit_code, result.stderr
        return Path(result.stdout.strip())
