"""sharebatch renew: due links re-signed into a new bundle beside the old, which stays as is."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sharebatch.audit import url_digest
from sharebatch.run.link_ids import link_id_of
from sharebatch.run.sign import signed_window
from tests.support.http_upload import post_form, put
from tests.support.linkkit import (
    audit_events,
    container_credentials,
    invoke,
    parse_iso,
    run_dir_of,
)
from tests.support.renewal import BUCKET, FILES, INITECH_ONLY, digests, json_bundle, run_two
from tests.support.s3 import S3, fetch, fresh_s3, write_manifest


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


def recorded(bundle: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as the bundle and record it in its run's audit log, as if the run had
    written it so: how these tests make a bundle state a run does not produce by itself."""
    bundle.write_text(json.dumps(data), encoding="utf-8")
    event = {"event": "bundle_written", "path": str(bundle), "sha256": digests_of(bundle)}
    with (bundle.parent.parent.parent / "audit.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(event) + "\n")


def digests_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    # Link ids too: each renewed link has a fresh one, and the event names both.
    assert [(e["old_link_id"], e["link_id"]) for e in renewed] == [
        (a["link_id"], b["link_id"]) for a, b in zip(old, new, strict=True)
    ]
    assert all(b["link_id"] == link_id_of(b["url"]) for b in new)
    ids = {a["link_id"] for a in old} | {b["link_id"] for b in new}
    assert len(ids) == 2 * len(FILES) and None not in ids
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
    recorded(bundle / "links.json", data)
    (bundle / "links.csv").unlink()
    result = invoke("renew", str(bundle / "links.json"))
    assert result.exit_code == 0, result.stderr
    [written] = [Path(line) for line in result.stdout.splitlines()]
    assert written.suffix == ".json"  # the formats the old bundle had
    new = json_bundle(written)
    assert new["links"][0]["url"] == data["links"][0]["url"]
    assert new["links"][2]["url"] == data["links"][2]["url"]
    assert parse_iso(new["links"][1]["expires_at"]) > datetime.now(UTC)
    # Kept links keep their ids; the renewed one has a new id.
    assert [r["link_id"] for r in new["links"]][::2] == [r["link_id"] for r in data["links"]][::2]
    assert new["links"][1]["link_id"] not in {r["link_id"] for r in data["links"]}
    # A renewal that renames a kept link (its URL unchanged) is not its source's.
    new["links"][0]["link_id"] = "0000000000000000"
    written.write_text(json.dumps(new), encoding="utf-8")
    refused = invoke("renew", str(written), "--within", "2h")
    assert refused.exit_code == 2
    assert "links[0]" in refused.stderr and "its link_id is not its source's" in refused.stderr
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
    old = bundle / "links.json"
    recorded(old, data)
    result = invoke("renew", str(old), "--within", "2h")
    assert result.exit_code == 2
    assert f"{old}: header: no expiry policy" in result.stderr
    assert list(bundle.glob("links.renewed-*")) == []


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


def edited(bundle: Path, dest: Path, key: str) -> Path:
    """A copy of ``bundle`` whose first row names ``key`` and is already expired."""
    data = json_bundle(bundle)
    data["links"][0]["key"] = key
    data["links"][0]["expires_at"] = "2020-01-01T00:00:00Z"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(data), encoding="utf-8")
    return dest


def test_an_edited_bundle_is_refused_and_the_untouched_one_renews(s3: S3, tmp_path: Path) -> None:
    """A copy of globex's links.json pointed at initech's object: exit 2 naming the file and
    why (its sha256 is not what the run wrote), nothing written; the original still renews."""
    s3.bucket(BUCKET, {**FILES, **INITECH_ONLY})
    run_dir = run_two(s3.endpoint, tmp_path)
    globex = run_dir / "q3" / "globex"
    # In the run folder, where the run's audit log is found, and moved out of it.
    in_run, moved = globex / "links.edited.json", tmp_path / "moved" / "links.json"
    for copy, extra in ((in_run, []), (moved, ["--audit-log", str(run_dir / "audit.jsonl")])):
        edited(globex / "links.json", copy, "initech/private.pdf")
        before = digests(copy.parent)
        result = invoke("renew", str(copy), *extra)
        assert result.exit_code == 2, result.stderr
        assert f"{copy}: sha256 " in result.stderr
        assert "not a bundle its run wrote" in result.stderr
        assert digests(copy.parent) == before
        assert "link_renewed" not in (run_dir / "audit.jsonl").read_text()
    result = invoke("renew", str(globex / "links.json"), "--within", "2h")
    assert result.exit_code == 0, result.stderr
    new = json_bundle(Path(result.stdout.splitlines()[1]))
    assert [fetch(row["url"]) for row in new["links"]] == [FILES[k] for k in sorted(FILES)]


def test_a_moved_bundle_needs_its_runs_audit_log(s3: S3, tmp_path: Path) -> None:
    """Out of its run folder a bundle cannot be checked: exit 2, unless --audit-log names the
    run's log; then it renews and its renewal is logged beside it."""
    s3.bucket(BUCKET, FILES)
    bundle = run(s3.endpoint, tmp_path)
    run_log = bundle.parent.parent / "audit.jsonl"
    moved = tmp_path / "archive" / "globex"
    shutil.copytree(bundle, moved)
    refused = invoke("renew", str(moved), "--within", "2h")
    assert refused.exit_code == 2
    assert f"{moved / 'links.json'}: no audit log of run " in refused.stderr
    assert "--audit-log" in refused.stderr
    assert sorted(p.name for p in moved.iterdir()) == ["links.csv", "links.json"]
    other = tmp_path / "other.jsonl"
    other.write_text('{"event": "run_started", "run_id": "someone-else"}\n', encoding="utf-8")
    wrong = invoke("renew", str(moved), "--within", "2h", "--audit-log", str(other))
    assert wrong.exit_code == 2
    assert "no audit log of run " in wrong.stderr
    done = invoke("renew", str(moved), "--within", "2h", "--audit-log", str(run_log))
    assert done.exit_code == 0, done.stderr
    written = [Path(p) for p in done.stdout.splitlines()]
    assert [p.parent for p in written] == [moved, moved]
    beside = written[1].with_name(written[1].stem + ".audit.jsonl")
    events = [json.loads(line) for line in beside.read_text().splitlines()]
    assert [e["event"] for e in events].count("link_renewed") == len(FILES)


def test_a_renewal_of_a_moved_bundle_renews_again_but_not_when_widened(
    s3: S3, tmp_path: Path
) -> None:
    """A renewal made outside the run folder is checked against its source: the same rows
    renew again; a row the source did not hold (another recipient's object) is exit 2."""
    s3.bucket(BUCKET, {**FILES, **INITECH_ONLY})
    run_dir = run_two(s3.endpoint, tmp_path)
    moved = tmp_path / "archive" / "globex"
    shutil.copytree(run_dir / "q3" / "globex", moved)
    log_arg = ("--audit-log", str(run_dir / "audit.jsonl"))
    first = invoke("renew", str(moved), "--within", "2h", *log_arg)
    assert first.exit_code == 0, first.stderr
    renewal = Path(first.stdout.splitlines()[1])
    forged = edited(renewal, tmp_path / "forged" / renewal.name, "initech/private.pdf")
    shutil.copy(moved / "links.json", forged.parent / "links.json")
    refused = invoke("renew", str(forged), *log_arg)
    assert refused.exit_code == 2
    assert f"{forged}: links[0]: initech/private.pdf" in refused.stderr
    assert sorted(p.name for p in forged.parent.iterdir()) == ["links.json", renewal.name]
    again = invoke("renew", str(moved), "--within", "2h", *log_arg)
    assert again.exit_code == 0, again.stderr
    latest = json_bundle(Path(again.stdout.splitlines()[1]))
    assert latest["header"]["renewed_from"]["path"] == str(renewal)
    assert [fetch(row["url"]) for row in latest["links"]] == [FILES[k] for k in sorted(FILES)]


def test_a_deleted_or_changed_object_is_reported_not_re_signed(s3: S3, tmp_path: Path) -> None:
    """HEAD before re-signing: a deleted object and one replaced by other bytes are reported
    per row (stderr, --json, audit) and keep their old row; the rest renew; exit 1."""
    s3.bucket(BUCKET, FILES)
    bundle = run(s3.endpoint, tmp_path)
    s3.client.delete_object(Bucket=BUCKET, Key="q3/b.csv")
    s3.client.put_object(Bucket=BUCKET, Key="q3/c d+e.txt", Body=b"other bytes")
    old = json_bundle(bundle / "links.json")["links"]
    result = invoke("renew", str(bundle), "--within", "2h", "--json")
    assert result.exit_code == 1, result.stderr
    [renewal] = json.loads(result.stdout)
    assert (renewal["renewed"], renewal["kept"]) == (1, 2)
    problems = {p["key"]: p for p in renewal["not_renewed"]}
    assert problems["q3/b.csv"]["outcome"] == "missing"
    assert problems["q3/c d+e.txt"]["outcome"] == "changed"
    assert "size 11 bytes, the bundle says 5" in problems["q3/c d+e.txt"]["detail"]
    new = json_bundle(Path(renewal["written"][1]))["links"]
    assert fetch(new[0]["url"]) == FILES["q3/a.pdf"]
    assert [r["url"] for r in new[1:]] == [r["url"] for r in old[1:]]
    events = audit_events(bundle.parent.parent)
    skipped = [(e["key"], e["outcome"]) for e in events if e["event"] == "link_not_renewed"]
    assert skipped == [("q3/b.csv", "missing"), ("q3/c d+e.txt", "changed")]
    text = invoke("renew", str(bundle / "links.json"), "--within", "2h")
    assert text.exit_code == 1
    assert f"{bundle / 'links.json'}: links[1]: q3/b.csv: not renewed: missing" in text.stderr


UPLOADS = """\
version: 1
defaults: {{bucket: {bucket}, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: q3
    prefixes: [q3/]
    upload: {{prefix: "inbox/{{recipient.id}}/", max_size: 1KB}}
    recipients:
      - id: globex
        upload: {{keys: [contract.pdf], content_types: [application/pdf]}}
      - id: initech
      - id: hooli
        upload: {{expires_in: 1d}}
"""


def test_renewed_bundles_keep_their_upload_slots(s3: S3, tmp_path: Path) -> None:
    """Due slots are re-issued with their policy (a PUT URL, a POST form), a slot not due is
    kept as it was; the header's count stays true; uploads through renewed slots store the
    exact bytes."""
    s3.bucket(BUCKET, FILES)
    path = write_manifest(tmp_path / "up.yml", UPLOADS.format(bucket=BUCKET))
    out = str(tmp_path / "out")
    run_dir = run_dir_of(invoke("run", str(path), "--out", out, "--endpoint-url", s3.endpoint))
    renewed = {}
    for who in ("globex", "initech", "hooli"):
        folder = run_dir / "q3" / who
        before = digests(folder)
        result = invoke("renew", str(folder), "--within", "2h")
        assert result.exit_code == 0, result.stderr
        new = json_bundle(Path(result.stdout.splitlines()[1]))
        old = json_bundle(folder / "links.json")
        assert new["header"]["uploads"] == len(new["uploads"]) == len(old["uploads"]) == 1
        uploads_csv = folder / Path(result.stdout.splitlines()[1]).name.replace(
            "links.", "uploads.", 1
        ).replace(".json", ".csv")
        with uploads_csv.open(newline="", encoding="utf-8") as handle:
            assert [r["url"] for r in csv.DictReader(handle)] == [new["uploads"][0]["url"]]
        assert {k: v for k, v in digests(folder).items() if k in before} == before
        renewed[who] = (old["uploads"][0], new["uploads"][0])
    # Signed in the same second as the run's, a slot may come out identical: the audit log
    # shows which were issued again.
    events = audit_events(run_dir)
    issued = [e["recipient"] for e in events if e["event"] == "upload_slot_issued"]
    assert sorted(issued) == ["globex", "globex", "hooli", "initech", "initech"]
    done = {e["recipient"]: e["uploads_renewed"] for e in events if e["event"] == "bundle_renewed"}
    assert done == {"globex": 1, "initech": 1, "hooli": 0}
    old_put, put_slot = renewed["globex"]
    # Each re-issued slot has a new id; its event names the one it replaces.
    replaced = {
        e["link_id"]: e.get("replaces") for e in events if e["event"] == "upload_slot_issued"
    }
    for who in ("globex", "initech"):
        was, now = renewed[who]
        assert was["link_id"] != now["link_id"]
        assert replaced[now["link_id"]] == was["link_id"]
        assert replaced[was["link_id"]] is None
    assert (put_slot["key"], put_slot["headers"]) == (old_put["key"], old_put["headers"])
    assert parse_iso(put_slot["expires_at"]) >= parse_iso(old_put["expires_at"])
    status, _ = put(put_slot["url"], b"%PDF signed", put_slot["headers"])
    assert status == 200
    old_form, form = renewed["initech"]
    assert (form["key"], form["max_size"]) == (old_form["key"], old_form["max_size"])
    status, _ = post_form(form["url"], form["fields"], "back.bin", b"returned \x00 bytes")
    assert status == 204
    kept_old, kept = renewed["hooli"]
    assert kept == kept_old
    stored = {
        key: s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        for key in ("inbox/globex/contract.pdf", "inbox/initech/back.bin")
    }
    assert stored == {
        "inbox/globex/contract.pdf": b"%PDF signed",
        "inbox/initech/back.bin": b"returned \x00 bytes",
    }


def test_another_recipients_bundle_copied_in_is_refused(s3: S3, tmp_path: Path) -> None:
    """initech's bundle (recorded by the run) copied into globex's folder: exit 2, since the
    folder's newest renewal would hand initech's links to globex; nothing written."""
    s3.bucket(BUCKET, {**FILES, **INITECH_ONLY})
    run_dir = run_two(s3.endpoint, tmp_path)
    globex = run_dir / "q3" / "globex"
    shutil.copy(run_dir / "q3" / "initech" / "links.json", globex / "links.copy.json")
    before = digests(globex)
    result = invoke("renew", str(globex / "links.copy.json"), "--within", "2h")
    assert result.exit_code == 2
    assert f"{globex / 'links.copy.json'}: a bundle of job q3, recipient initech" in result.stderr
    assert digests(globex) == before


def test_a_recorded_row_outside_the_prefixes_is_refused(s3: S3, tmp_path: Path) -> None:
    """Even a bundle its run's log vouches for is never renewed beyond the prefixes in its
    header: a row for initech/ in globex's q3/ bundle is exit 2, naming the row."""
    s3.bucket(BUCKET, {**FILES, **INITECH_ONLY})
    run_dir = run_two(s3.endpoint, tmp_path)
    bundle = run_dir / "q3" / "globex" / "links.json"
    data = json_bundle(bundle)
    assert data["header"]["prefixes"] == ["q3/"]
    data["links"][0]["key"] = "initech/private.pdf"
    recorded(bundle, data)
    result = invoke("renew", str(bundle), "--within", "2h")
    assert result.exit_code == 2
    assert f"{bundle}: links[0]: initech/private.pdf: outside the prefixes" in result.stderr
    assert not list(bundle.parent.glob("*.renewed-*"))


def test_a_run_without_link_ids_renews_without_them(s3: S3, tmp_path: Path) -> None:
    """link_ids: false is recorded in the header (and only then), and the renewal keeps it:
    no renewed link carries an id, the events say null."""
    s3.bucket(BUCKET, FILES)
    bundle = run(s3.endpoint, tmp_path, "expires_in: 1h\n  link_ids: false")
    old = json_bundle(bundle / "links.json")
    assert old["header"]["link_ids"] is False
    assert [r["link_id"] for r in old["links"]] == [None] * len(FILES)
    result = invoke("renew", str(bundle), "--within", "2h")
    assert result.exit_code == 0, result.stderr
    new = json_bundle(Path(result.stdout.splitlines()[1]))
    assert new["header"]["link_ids"] is False
    assert all(r["link_id"] is None and "x-sharebatch-id" not in r["url"] for r in new["links"])
    for row in new["links"]:
        assert fetch(row["url"]) == FILES[row["key"]]
    renewed = [e for e in audit_events(bundle.parent.parent) if e["event"] == "link_renewed"]
    assert [(e["old_link_id"], e["link_id"]) for e in renewed] == [(None, None)] * len(FILES)
    with (bundle / "links.csv").open(newline="", encoding="utf-8") as handle:
        assert {r["link_id"] for r in csv.DictReader(handle)} == {""}


def test_a_renewal_whose_link_ids_were_changed_is_refused(s3: S3, tmp_path: Path) -> None:
    """A renewal vouched for by its source must keep each kept link's id and name each new
    link's own: a row claiming another id would credit its downloads to another link."""
    s3.bucket(BUCKET, FILES)
    bundle = run(s3.endpoint, tmp_path)
    first = Path(invoke("renew", str(bundle), "--within", "2h").stdout.splitlines()[1])
    data = json_bundle(first)
    data["links"][0]["link_id"] = "0000000000000000"
    first.write_text(json.dumps(data), encoding="utf-8")
    result = invoke("renew", str(first), "--within", "2h")
    assert result.exit_code == 2
    assert "links[0]" in result.stderr
    assert "its URL is not that key's link re-signed" in result.stderr
