"""The manifest's upload: setting, resolved into Grant.upload (bad files: tests/bad_manifests)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.errors import ManifestError
from sharebatch.manifest.load import Manifest, load_manifest, manifest_json_schema
from sharebatch.manifest.upload import clamd_address
from sharebatch.models import ScanSetting, UploadSlot
from tests.support.paths import ROOT

EXAMPLE = ROOT / "manifests" / "signed-returns.yml"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
AS_OF = date(2026, 11, 28)


def load(tmp_path: Path, text: str) -> Manifest:
    path = tmp_path / "m.yml"
    path.write_text(text, encoding="utf-8")
    return load_manifest(path, as_of=AS_OF, now=NOW)


def slots(manifest: Manifest) -> dict[tuple[str, str], UploadSlot | None]:
    return {(g.job, g.recipient.id): g.upload for j in manifest.jobs for g in j.grants}


BASE = """\
version: 1
defaults:
  bucket: acme-reports
  expires_in: 7d
  upload:
    prefix: "inbox/{period.label}/{recipient.id}/"
    max_size: 20MB
    content_types: [application/pdf]
"""


def test_upload_fields_inherit_one_by_one_and_false_gives_no_slot(tmp_path: Path) -> None:
    """Each field comes from the most specific level; upload: false cuts the slot off."""
    manifest = load(
        tmp_path,
        BASE
        + """\
jobs:
  - name: q3
    prefixes: [reports/]
    upload: {expires_in: 2h, content_types: [application/pdf, text/csv]}
    recipients:
      - id: globex
        upload: {keys: [signed.pdf, data.csv], max_size: 1MB}
      - id: initech
      - id: hooli
        upload: false
  - name: archive
    prefixes: [archive/]
    upload: false
    recipients:
      - id: globex
      - id: wayne
        upload: {prefix: "returns/{recipient.id}/", max_size: 10KB}
""",
    )
    both = ("application/pdf", "text/csv")
    assert slots(manifest) == {
        ("q3", "globex"): UploadSlot(
            "inbox/2026-Q3/globex/", 1_000_000, 7200, both, ("signed.pdf", "data.csv")
        ),
        ("q3", "initech"): UploadSlot("inbox/2026-Q3/initech/", 20_000_000, 7200, both),
        ("q3", "hooli"): None,
        ("archive", "globex"): None,
        # Below a level that says false, a slot needs every required field again.
        ("archive", "wayne"): UploadSlot("returns/wayne/", 10_000, 3600),
    }


def test_a_slot_takes_its_documented_defaults(tmp_path: Path) -> None:
    """Without them: one hour, any type, no fixed keys (an open slot)."""
    text = BASE.replace("    content_types: [application/pdf]\n", "")
    manifest = load(
        tmp_path, text + "jobs:\n  - {name: q3, prefixes: [r/], recipients: [{id: a}]}\n"
    )
    assert slots(manifest)[("q3", "a")] == UploadSlot("inbox/2026-Q3/a/", 20_000_000, 3600, (), ())


def test_without_upload_anywhere_no_grant_has_a_slot(tmp_path: Path) -> None:
    """The setting is optional: a manifest without it resolves exactly as before."""
    text = "version: 1\ndefaults: {bucket: b-1, expires_in: 7d}\n"
    manifest = load(
        tmp_path, text + "jobs:\n  - {name: q3, prefixes: [r/], recipients: [{id: a}]}\n"
    )
    assert slots(manifest) == {("q3", "a"): None}


def test_keys_are_templates_rendered_per_recipient(tmp_path: Path) -> None:
    """{recipient.*} and {period.*} work in keys as in the prefix."""
    job = (
        "jobs:\n  - name: q3\n    prefixes: [r/]\n"
        '    upload: {keys: ["{recipient.id}-{period.label}.pdf"]}\n'
        "    recipients: [{id: globex}, {id: initech}]\n"
    )
    found = slots(load(tmp_path, BASE + job))
    assert [s.keys for s in found.values() if s] == [
        ("globex-2026-Q3.pdf",),
        ("initech-2026-Q3.pdf",),
    ]


def test_one_recipient_id_may_share_its_folder_across_jobs(tmp_path: Path) -> None:
    """Two jobs giving the same recipient id the same folder are fine; anyone else is not."""
    jobs = (
        "jobs:\n"
        "  - {name: a, prefixes: [r/], recipients: [{id: globex}]}\n"
        "  - {name: b, prefixes: [s/], recipients: [{id: globex}]}\n"
    )
    text = BASE.replace("{period.label}/", "")
    assert len(set(slots(load(tmp_path, text + jobs)).values())) == 1
    clash = (
        jobs + "  - {name: c, prefixes: [t/], recipients: [{id: x, upload: {prefix: inbox/}}]}\n"
    )
    with pytest.raises(ManifestError) as info:
        load(tmp_path, text + clash)
    # One issue per slot it overlaps: globex's folder in job a and in job b.
    assert [i.field for i in info.value.issues] == ["jobs[2].recipients[0].upload.prefix"] * 2


def test_slots_in_other_buckets_do_not_conflict(tmp_path: Path) -> None:
    """Overlap is judged per bucket: the same folder in two buckets is two folders."""
    text = """\
version: 1
defaults: {bucket: acme-reports, expires_in: 7d}
jobs:
  - name: a
    prefixes: [inbox/]
    recipients: [{id: x}]
  - name: b
    bucket: other-bucket
    prefixes: [r/]
    upload: {prefix: inbox/, max_size: 10KB}
    recipients: [{id: y}]
"""
    assert slots(load(tmp_path, text))[("b", "y")] == UploadSlot("inbox/", 10_000)
    with pytest.raises(ManifestError) as info:
        load(tmp_path, text.replace("bucket: other-bucket", "bucket: acme-reports"))
    assert [i.field for i in info.value.issues] == ["jobs[1].upload.prefix"]
    assert "shared for download in job 'a'" in info.value.issues[0].message


def test_validate_shows_each_slot(tmp_path: Path) -> None:
    """validate prints the slot's folder, expiry, size, types and keys; --json has them all."""
    result = CliRunner().invoke(app, ["validate", str(EXAMPLE), "--as-of", "2026-10-01"])
    assert result.exit_code == 0, result.output
    assert "    upload to       inbox/2026-Q3/globex/" in result.stdout
    assert "    upload keys     signed-statement.pdf, globex-confirmation.pdf" in result.stdout
    assert "    upload expires  1d after signing" in result.stdout
    as_json = CliRunner().invoke(app, ["validate", str(EXAMPLE), "--as-of", "2026-10-01", "--json"])
    [job] = json.loads(as_json.stdout)["jobs"]
    assert [r["upload"] for r in job["recipients"]] == [
        {
            "prefix": "inbox/2026-Q3/globex/",
            "max_size": 20_000_000,
            "expires_in": 3600,
            "content_types": ["application/pdf"],
            "keys": ["signed-statement.pdf", "globex-confirmation.pdf"],
        },
        {
            "prefix": "inbox/2026-Q3/initech/",
            "max_size": 20_000_000,
            "expires_in": 86400,
            "content_types": ["application/pdf"],
            "keys": [],
        },
        None,
    ]


def test_the_schema_describes_upload_and_its_false(tmp_path: Path) -> None:
    """Editors see the Upload fields with descriptions, and false as a value of upload."""
    schema = manifest_json_schema()
    upload = schema["$defs"]["Upload"]
    assert set(upload["properties"]) == {
        "prefix",
        "expires_in",
        "max_size",
        "content_types",
        "keys",
        "scan",
    }
    assert upload["additionalProperties"] is False
    assert all(p.get("description") for p in upload["properties"].values())
    options = schema["$defs"]["Settings"]["properties"]["upload"]["anyOf"]
    assert options == [{"$ref": "#/$defs/Upload"}, {"const": False}, {"type": "null"}]


SCANNED = """\
version: 1
defaults:
  bucket: acme-reports
  expires_in: 7d
  upload:
    prefix: "inbox/{recipient.id}/"
    max_size: 20MB
    scan: {engine: clamd, quarantine_prefix: "quarantine/"}
jobs:
  - name: q3
    prefixes: [q3/]
    recipients:
      - id: globex
      - id: initech
        upload: {scan: {engine: guardduty}}
      - id: hooli
        upload: {scan: {engine: clamd, clamd: "tcp://127.0.0.2:3310"}}
      - id: acme
        upload: false
"""


def test_scan_inherits_as_one_mapping_and_only_with_a_slot(tmp_path: Path) -> None:
    """upload.scan: the most specific mapping applies whole (no field merged from above), the
    clamd default is Debian's socket, and a grant without a slot carries no scan setting."""
    manifest = load(tmp_path, SCANNED)
    scans = {g.recipient.id: g.scan for g in manifest.jobs[0].grants}
    assert scans == {
        "globex": ScanSetting("clamd", "unix:///run/clamav/clamd.ctl", "quarantine/"),
        "initech": ScanSetting("guardduty", None, None),
        "hooli": ScanSetting("clamd", "tcp://127.0.0.2:3310", None),
        "acme": None,
    }


def test_a_scan_default_does_not_make_a_slot_where_a_job_has_none(tmp_path: Path) -> None:
    """scan in defaults with no prefix there: jobs without an upload slot stay valid, slotless."""
    text = SCANNED.replace('    prefix: "inbox/{recipient.id}/"\n    max_size: 20MB\n', "")
    manifest = load(tmp_path, text)
    assert {g.recipient.id: (g.upload, g.scan) for g in manifest.jobs[0].grants}["globex"] == (
        None,
        None,
    )


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("unix:///run/clamav/clamd.ctl", ("unix", "/run/clamav/clamd.ctl")),
        ("tcp://127.0.0.1:3310", ("tcp", ("127.0.0.1", 3310))),
        ("tcp://[::1]:3310", ("tcp", ("::1", 3310))),
    ],
)
def test_clamd_addresses_parse_to_socket_or_loopback(address: str, expected: object) -> None:
    """The two written forms of a clamd address become what the client connects to."""
    assert clamd_address(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "tcp://localhost.example:3310",
        "tcp://192.168.1.5:3310",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:99999",
        "http://127.0.0.1:3310",
        "unix://relative/clamd.ctl",
        "unix:///run/clamd.ctl\u202e",
    ],
)
def test_clamd_addresses_off_this_machine_or_malformed_are_refused(address: str) -> None:
    """A remote host, a missing or bad port, another scheme, a relative socket or an invisible
    character: refused with a ValueError, which the loader locates."""
    with pytest.raises(ValueError, match="clamd address"):
        clamd_address(address)


def test_validate_shows_how_each_slot_is_scanned(tmp_path: Path) -> None:
    """validate's text names the engine, clamd's address and the quarantine per slot; its
    JSON carries the scan setting for slots that have one, and no key for those that do not."""
    path = tmp_path / "m.yml"
    path.write_text(SCANNED, encoding="utf-8")
    text = CliRunner().invoke(app, ["validate", str(path), "--as-of", "2026-11-28"]).stdout
    assert (
        "upload scan     clamd at unix:///run/clamav/clamd.ctl; infected files moved to"
        " quarantine/" in text
    )
    assert "upload scan     GuardDuty's tags; infected files stay" in text
    result = CliRunner().invoke(app, ["validate", str(path), "--as-of", "2026-11-28", "--json"])
    grants = {g["recipient"]: g for g in json.loads(result.stdout)["jobs"][0]["recipients"]}
    assert grants["hooli"]["scan"] == {
        "engine": "clamd",
        "clamd": "tcp://127.0.0.2:3310",
        "quarantine_prefix": None,
    }
    assert "scan" not in grants["acme"]


def test_a_clamd_port_of_zero_is_refused() -> None:
    """Port 0 names no listening clamd: refused like a missing port."""
    with pytest.raises(ValueError, match="host and port"):
        clamd_address("tcp://127.0.0.1:0")
