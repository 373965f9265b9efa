"""The ``source:`` setting: an S3 Inventory report instead of a listing, checked and inherited."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.manifest.load import load_manifest, manifest_json_schema
from tests.support.s3 import write_manifest

HEAD = """\
version: 1
defaults:
  bucket: data-bucket
  expires_in: 7d
  source: {inventory: "s3://inv-dest/data-bucket/daily/", max_age: 8d}
jobs:
  - name: from-defaults
    prefixes: [a/]
    recipients: [{id: r}]
"""


def test_source_inherits_from_defaults_and_a_job_overrides_it(tmp_path: Path) -> None:
    """Defaults give every job the report; a job's own block replaces it whole."""
    path = write_manifest(
        tmp_path / "m.yml",
        HEAD
        + """\
  - name: own
    source: {inventory: "s3://inv-dest/x/2026-11-29T01-02Z/manifest.json", verify_sample: 5}
    prefixes: [b/]
    recipients: [{id: r}]
""",
    )
    first, second = (job.grants[0].source for job in load_manifest(path).jobs)
    assert first is not None and second is not None
    assert (first.bucket, first.key, first.max_age, first.verify_sample) == (
        "inv-dest",
        "data-bucket/daily/",
        8 * 86400,
        0,
    )
    assert (second.key, second.max_age, second.verify_sample) == (
        "x/2026-11-29T01-02Z/manifest.json",
        None,
        5,
    )


def test_bad_source_fields_are_each_located(tmp_path: Path) -> None:
    """A non-s3 URI, a key that is neither a folder nor a manifest.json, a max_age that is
    not a period and a negative sample: exit 2, each with file, line and field."""
    path = write_manifest(
        tmp_path / "m.yml",
        HEAD
        + """\
  - name: bad
    source:
      inventory: "https://inv-dest/daily/"
      max_age: soon
      verify_sample: -1
    prefixes: [b/]
    recipients: [{id: r}]
  - name: worse
    source: {inventory: "s3://inv-dest/daily", max_age: 1.5, colour: red}
    prefixes: [c/]
    recipients: [{id: r}]
""",
    )
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    expected = [
        "m.yml:12:18: jobs[1].source.inventory: 'https://inv-dest/daily/' is not an s3:// URI",
        "m.yml:13:16: jobs[1].source.max_age: 'soon' is not a duration",
        "m.yml:14:22: jobs[1].source.verify_sample: verify_sample must be a whole number",
        "m.yml:18:25: jobs[2].source.inventory: 's3://inv-dest/daily' must end with '/'",
        "m.yml:18:57: jobs[2].source.max_age: 1.5 is not a duration",
        "m.yml:18:62: jobs[2].source.colour: unknown field; expected one of inventory,",
    ]
    for want in expected:
        assert any(want in line for line in lines), f"{want!r} not in {lines}"
    assert not (tmp_path / "bundles").exists()


def test_the_schema_describes_source() -> None:
    """`sharebatch schema` knows source and its three fields."""
    schema = manifest_json_schema()
    settings = schema["$defs"]["Settings"]["properties"]
    assert "source" in settings
    block = schema["$defs"]["Source"]
    assert set(block["properties"]) == {"inventory", "max_age", "verify_sample"}
    assert block["required"] == ["inventory"]
    assert block["properties"]["verify_sample"]["minimum"] == 0
