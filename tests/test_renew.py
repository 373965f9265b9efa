"""sharebatch renew: due links re-signed into a new bundle beside the old, which stays as is."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sharebatch.audit import url_digest
from sharebatch.signing import signed_window
from tests.conftest import S3, fetch, fresh_s3, write_manifest
from tests.linkkit import (
    audit_events,
    container_credentials,
    invoke,
    parse_iso,
    run_dir_of,
)

BUCKET = "renew-me"
FILES = {"q3/a.pdf": b"%PDF a", "q3/b.csv": b"x,y\n1,2\n", "q3/c d+e.txt": "caf\u00e9".encode()}


def run(endpoint: str, tmp_path: Path, settings: str = "expires_in: 1h") -> Path:
    path = write_manifest(
        tmp_path / "m.yml",
        f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  {settings}
  download_name: "Q3-{{basename}}"
jobs:
  - name: q3
    prefixes: [q3/]
    recipients: [{{id: globex}}]
""",
    )
    result = invoke("run", str(path), "--out", str(tmp_path / "out"), "--endpoint-url", endpoint)
    return run_dir_of(result) / "q3" / "globex"


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def json_bundle(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_due_links_are_re_signed_into_a_new_bundle(s3: S3, tmp_path: Path) -> None:
    """--within 2h renews 1h links: a new CSV+JSON beside the old, same bytes, old untouched."""
    s3.bucket(BUCKET, FILES)
    bundle = run(s3.endpoint, tmp_path)
    before = digests(bundle)
    result = invoke("renew", str(bundle / "links.json"), "--within", "2h")
    assert result.exit_code == 0, result.stderr
    written = [Path(line) for line in result.stdout.splitlines()]
    assert [p.suffix for p in written] == [".csv", ".json"]
    assert all(p.parent == bundle and p.name.startswith("links.renewed-") for p in written)
    # The old files are byte for byte what they were; only the new ones were added.
    after = digests(bundle)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {p.name for p in written}
    old = json_bundle(bundle / "links.json")
    new = json_bundle(written[1])
    assert [r["key"] for r in new["links"]] == [r["key"] for r in old["links"]]
    for row in new["links"]:
        assert fetch(row["url"]) == FILES[row["key"]]
        signed_at, expires_at = signed_window(row["url"])
        assert expires_at - signed_at == timedelta(hours=1)
        assert parse_iso(row["expires_at"]) == expires_at
        # The download name and its encoding are signed again exactly as before.
        assert "response-content-disposition=attachment%3B%20filename%3D%22Q3-" in row["url"]
    with written[0].open(newline="", encoding="utf-8") as handle:
        assert [r["url"] for r in csv.DictReader(handle)] == [r["url"] for r in new["links"]]
    header = new["header"]
    assert header["renewed_from"]["path"] == str(bundle / "links.json")
    assert header["renewed_from"]["sha256"] == before["links.json"]
    assert header["renewed"] == len(FILES) and header["links"] == len(FILES)
    assert header["expiry"] == {"expires_in": 3600}


def test_audit_links_each_old_url_to_its_new_one(s3: S3, tmp_path: Path) -> None:
    """The run's audit log gains link_renewed (old and new url_sha256) and bundle_renewed."""
    s3.bucket(BUCKET, FILES)
    bundle = run(s3.endpoint, tmp_path)
    result = invoke("renew", str(bundle), "--within", "2h")
    written = [Path(line) for line in result.stdout.splitlines()]
    events = audit_events(bundle.parent.parent)
    renewed = [e for e in events if e["event"] == "link_renewed"]
    old = json_bundle(bundle / "links.json")["links"]
    new = json_bundle(written[1])["links"]
    assert [(e["key"], e["old_url_sha256"], e["url_sha256"]) for e in renewed] == [
        (a["key"], url_digest(a["url"]), url_digest(b["url"]))
        for a, b in zip(old, new, strict=True)
    ]
    [done] = [e for e in events if e["event"] == "bundle_renewed"]
    assert done["source"] == str(bundle / "links.json")
    assert done["written"] == [str(p) for p in written]
    assert done["sha256"] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in written]
    assert (done["renewed"], done["kept"]) == (len(FILES), 0)


def test_a_folder_stands_for_its_latest_renewal(s3: S3, tmp_path: Path) -> None:
    """Renewing (or inspecting) a folder again takes the newest renewal, not the original."""
    s3.bucket(BUCKET, FILES)
    bundle = run(s3.endpoint, tmp_path)
    first = invoke("renew", str(bundle), "--within", "2h").stdout.splitlines()
    second = invoke("renew", str(bundle), "--within", "2h").stdout.splitlines()
    assert len(second) == 2 and set(first).isdisjoint(second)
    assert all(Path(p).name.count(".renewed-") == 1 for p in second)
    header = json_bundle(Path(second[1]))["header"]
    assert header["renewed_from"]["path"] == first[1]
    report = json.loads(invoke("inspect", str(bundle), "--json").stdout)
    assert report["bundles"][0]["path"] == second[1]


def test_nothing_due_writes_nothing(s3: S3, tmp_path: Path) -> None:
    """Without --within only expired links are due; fresh ones: nothing written, exit 0."""
    s3.bucket(BUCKET, FILES)
    bundle = run(s3.endpoint, tmp_path)
    before = digests(bundle)
    result = invoke("renew", str(bundle / "links.csv"))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "nothing to renew" in result.stderr
    assert digests(bundle) == before


def test_only_due_links_are_renewed_the_rest_kept(s3: S3, tmp_path: Path) -> None:
    """A row past its expires_at is renewed; the others keep their URL in the new bundle."""
    s3.bucket(BUCKET, FILES)
    bundle = run(s3.endpoint, tmp_path)
    data = json_bundle(bundle / "links.json")
    data["links"][1]["expires_at"] = "2026-01-01T00:00:00Z"  # as if its credentials had ended
    (bundle / "links.json").write_text(json.dumps(data))
    (bundle / "links.csv").unlink()
    result = invoke("renew", str(bundle / "links.json"))
    assert result.exit_code == 0, result.stderr
    [written] = [Path(line) for line in result.stdout.splitlines()]
    assert written.suffix == ".json"  # the formats the old bundle had
    new = json_bundle(written)
    assert new["links"][0]["url"] == data["links"][0]["url"]
    assert new["links"][2]["url"] == data["links"][2]["url"]
    assert parse_iso(new["links"][1]["expires_at"]) > datetime.now(UTC)
    assert fetch(new["links"][1]["url"]) == FILES[new["links"][1]["key"]]
    assert (new["header"]["renewed"], new["header"]["links"]) == (1, 3)


def test_a_fixed_end_is_kept(s3: S3, tmp_path: Path) -> None:
    """expires_at bundles renew to the same moment; a renewal never extends a fixed end."""
    s3.bucket(BUCKET, FILES)
    end = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    bundle = run(s3.endpoint, tmp_path, f"expires_at: {end:%Y-%m-%dT%H:%M:%SZ}")
    result = invoke("renew", str(bundle), "--within", "4h")
    assert result.exit_code == 0, result.stderr
    new = json_bundle(Path(result.stdout.splitlines()[1]))
    for row in new["links"]:
        _, url_end = signed_window(row["url"])
        assert url_end <= end and parse_iso(row["expires_at"]) == url_end
    assert new["header"]["expiry"] == {"expires_at": f"{end:%Y-%m-%dT%H:%M:%SZ}"}


def test_renewing_through_the_csv_signs_the_exact_keys(s3: S3, tmp_path: Path) -> None:
    """Given links.csv, renewal takes rows from links.json: keys that a CSV shows escaped for
    spreadsheets (a leading '-', '=') are signed exactly as stored."""
    files = {"-r/=a.txt": b"dash", "-r/b.txt": b"bee"}
    s3.bucket(BUCKET, files)
    path = write_manifest(
        tmp_path / "dash.yml",
        f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: dash
    prefixes: ["-r/"]
    recipients: [{{id: globex}}]
""",
    )
    result = invoke("run", str(path), "--out", str(tmp_path / "o2"), "--endpoint-url", s3.endpoint)
    bundle = run_dir_of(result) / "dash" / "globex"
    renewed = invoke("renew", str(bundle / "links.csv"), "--within", "2h")
    assert renewed.exit_code == 0, renewed.stderr
    new = json_bundle(Path(renewed.stdout.splitlines()[1]))
    assert [row["key"] for row in new["links"]] == sorted(files)
    assert [fetch(row["url"]) for row in new["links"]] == [files[k] for k in sorted(files)]


def test_a_csv_only_bundle_cannot_be_renewed(s3: S3, tmp_path: Path) -> None:
    """Without the JSON header the expiry policy is unknown: exit 2, nothing written."""
    s3.bucket(BUCKET, FILES)
    bundle = run(s3.endpoint, tmp_path, "expires_in: 1h\n  formats: [csv]")
    result = invoke("renew", str(bundle / "links.csv"), "--within", "2h")
    assert result.exit_code == 2
    assert "links.json is not beside it" in result.stderr
    assert [p.name for p in bundle.iterdir()] == ["links.csv"]


def test_a_bundle_without_a_policy_is_refused(s3: S3, tmp_path: Path) -> None:
    """A header without expiry/target (an older bundle) is exit 2 naming the file."""
    s3.bucket(BUCKET, FILES)
    bundle = run(s3.endpoint, tmp_path)
    data = json_bundle(bundle / "links.json")
    del data["header"]["expiry"]
    old = tmp_path / "links.json"
    old.write_text(json.dumps(data))
    result = invoke("renew", str(old), "--within", "2h")
    assert result.exit_code == 2
    assert f"{old}: header: no expiry policy" in result.stderr
    assert list(tmp_path.glob("links.renewed-*")) == []


def test_short_credentials_refuse_renewal_by_default(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renewing 2h links with 1h credentials under policy fail: exit 3, nothing written."""
    with fresh_s3(moto_endpoint) as s3:
        s3.bucket(BUCKET, FILES)
        with monkeypatch.context() as static:
            static.setenv("AWS_ACCESS_KEY_ID", "AKIATESTTESTTESTTEST")
            static.setenv("AWS_SECRET_ACCESS_KEY", "long-term/secret/key/value")
            bundle = run(s3.endpoint, tmp_path, "expires_in: 2h")
        before = digests(bundle)
        with container_credentials(monkeypatch) as expiry:
            result = invoke("renew", str(bundle), "--within", "3h")
    assert result.exit_code == 3
    assert f"source container-role) expire at {expiry:%Y-%m-%dT%H:%M:%SZ}" in result.stderr
    assert digests(bundle) == before
