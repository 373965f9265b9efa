"""``read_inbox(scan=True)`` on moto with a real clamd (and a fake one for the faults).

Each test seeds a slot as a recipient's upload would leave it, scans, and reads the result
back from S3 itself (tags with boto3, the quarantine's bytes), not only from the report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sharebatch import audit
from sharebatch.errors import UsageError
from sharebatch.lifecycle.inbox import Inbox, read_inbox, read_inbox_async
from sharebatch.models import Connection
from sharebatch.scanning.scan import CHUNK
from sharebatch.scanning.verdicts import GUARDDUTY_TAG, TAG_ETAG, TAG_SIGNATURE, TAG_VERDICT
from tests.support.clamd import SIGNATURE, STREAM_MAX, ClamdServer, eicar
from tests.support.fake_clamd import fake_clamd
from tests.support.s3 import S3, write_manifest
from tests.support.scan_inbox import AS_OF, AWKWARD, BUCKET, manifest


def scan(path: Path, s3: S3, **options: Any) -> Inbox:
    return read_inbox(
        path, as_of=AS_OF, connection=Connection(endpoint_url=s3.endpoint), scan=True, **options
    )


def tags(s3: S3, key: str) -> dict[str, str]:
    found = s3.client.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in found}


def by_key(inbox: Inbox) -> dict[str, Any]:
    return {e.key: e for s in inbox.slots for e in s.entries}


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every log event of the test."""
    with audit.capture() as found:
        yield found


def test_clean_infected_and_too_large_each_get_their_status_and_tags(
    s3: S3, tmp_path: Path, clamd: ClamdServer, events: list[dict[str, Any]]
) -> None:
    """A clean file is clean and tagged so at its ETag; EICAR is infected with our signature,
    tagged, copied to the quarantine with its tags and bytes, and gone from the slot; a file
    over StreamMaxLength is too_large_to_scan (never clean). Exit 1."""
    big = b"\x00" * (STREAM_MAX + 1)
    s3.bucket(
        BUCKET,
        {"inbox/globex/ok.txt": b"fine", "inbox/globex/bad.com": eicar(), "inbox/globex/big": big},
    )
    inbox = scan(manifest(tmp_path, clamd.unix_url), s3)
    found = by_key(inbox)
    assert found["inbox/globex/ok.txt"].scan.status == "clean"
    assert found["inbox/globex/big"].scan.status == "too_large_to_scan"
    bad = found["inbox/globex/bad.com"]
    assert bad.scan.status == "infected" and bad.scan.signature.startswith(SIGNATURE)
    moved_to = f"quarantine/inbox/globex/bad.com@{bad.etag}"
    assert bad.etag and bad.quarantined_to == moved_to
    assert inbox.exit_code == 1

    ok_tags = tags(s3, "inbox/globex/ok.txt")
    etag = s3.client.head_object(Bucket=BUCKET, Key="inbox/globex/ok.txt")["ETag"].strip('"')
    assert (ok_tags[TAG_VERDICT], ok_tags[TAG_ETAG]) == ("clean", etag)
    assert tags(s3, "inbox/globex/big")[TAG_VERDICT] == "too-large"
    moved = tags(s3, moved_to)
    assert moved[TAG_VERDICT] == "infected" and moved[TAG_SIGNATURE].startswith(SIGNATURE)
    body = s3.client.get_object(Bucket=BUCKET, Key=moved_to)["Body"]
    assert body.read() == eicar()
    listed = s3.client.list_objects_v2(Bucket=BUCKET, Prefix="inbox/globex/bad")
    assert listed["KeyCount"] == 0

    scanned = {e["key"]: e for e in events if e["event"] == "upload_scanned"}
    assert set(scanned) == {"inbox/globex/ok.txt", "inbox/globex/bad.com", "inbox/globex/big"}
    assert scanned["inbox/globex/bad.com"]["verdict"] == "infected"
    assert {"job", "recipient", "etag", "signature", "seconds"} <= set(
        scanned["inbox/globex/ok.txt"]
    )
    (moved_event,) = [e for e in events if e["event"] == "upload_quarantined"]
    assert (moved_event["key"], moved_event["quarantine_key"]) == (
        "inbox/globex/bad.com",
        moved_to,
    )


def test_only_clean_uploads_exit_0_and_unscanned_slots_do_not_count(
    s3: S3, tmp_path: Path, clamd: ClamdServer
) -> None:
    """Every scanned upload clean: exit 0; hooli's slot has no scan setting, so its file has
    no verdict and does not make the inbox fail."""
    s3.bucket(BUCKET, {"inbox/globex/a.txt": b"a", "inbox/hooli/b.txt": b"b"})
    inbox = scan(manifest(tmp_path, clamd.tcp_url), s3)
    found = by_key(inbox)
    assert found["inbox/globex/a.txt"].scan.status == "clean"
    assert found["inbox/hooli/b.txt"].scan is None
    assert inbox.exit_code == 0


@pytest.mark.asyncio
async def test_an_unchanged_clean_object_is_not_sent_again_but_a_replaced_one_is(
    s3: S3, tmp_path: Path
) -> None:
    """Second scan of the same object: its clean tag at the same ETag stands, clamd gets no
    connection. The object replaced (new ETag, tags cleared by the PUT): scanned again."""
    s3.bucket(BUCKET, {"inbox/globex/a.txt": b"first"})
    async with fake_clamd("ok") as fake:
        path = manifest(tmp_path, fake.url)
        options: dict[str, Any] = {
            "as_of": AS_OF,
            "connection": Connection(endpoint_url=s3.endpoint),
            "scan": True,
        }
        first = await read_inbox_async(path, **options)
        second = await read_inbox_async(path, **options)
        assert fake.streamed == [5]
        s3.client.put_object(Bucket=BUCKET, Key="inbox/globex/a.txt", Body=b"second!")
        third = await read_inbox_async(path, **options)
    assert fake.streamed == [5, 7]
    verdicts = [by_key(i)["inbox/globex/a.txt"].scan for i in (first, second, third)]
    assert [(v.status, v.fresh) for v in verdicts] == [
        ("clean", True),
        ("clean", False),
        ("clean", True),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["drop", "drop_mid_stream", "stall", "garbage"])
async def test_a_misbehaving_clamd_leaves_the_upload_scan_error_and_tagged_error(
    s3: S3, tmp_path: Path, mode: Any
) -> None:
    """clamd drops, hangs past the step timeout, or answers garbage: scan_error, tagged
    error, exit 1; and the next scan tries again (an error is not a verdict that stands)."""
    s3.bucket(BUCKET, {"inbox/globex/a.bin": b"y" * 200_000})
    async with fake_clamd(mode) as fake:
        path = manifest(tmp_path, fake.url)
        options: dict[str, Any] = {
            "as_of": AS_OF,
            "connection": Connection(endpoint_url=s3.endpoint),
            "scan": True,
            "scan_timeout": 0.3,
        }
        inbox = await read_inbox_async(path, **options)
        before = fake.connections
        await read_inbox_async(path, **options)
        assert fake.connections == before + 1
    entry = by_key(inbox)["inbox/globex/a.bin"]
    assert entry.scan.status == "scan_error" and entry.scan.detail
    assert inbox.exit_code == 1
    assert tags(s3, "inbox/globex/a.bin")[TAG_VERDICT] == "error"


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("NO_THREATS_FOUND", "clean"),
        ("THREATS_FOUND", "infected"),
        ("UNSUPPORTED", "scan_error"),
        ("ACCESS_DENIED", "scan_error"),
        ("FAILED", "scan_error"),
        ("SOMETHING_NEW", "scan_error"),
        (None, "unscanned"),
    ],
)
def test_guardduty_tags_map_to_statuses_without_clamd(
    s3: S3, tmp_path: Path, value: str | None, status: str
) -> None:
    """engine guardduty reads GuardDutyMalwareScanStatus as GuardDuty writes it (set here by
    the test): each documented value, an unknown one and none map to the same statuses as
    clamd's. No clamd is running: the manifest's address for globex is never used."""
    s3.bucket(BUCKET, {"inbox/initech/r.pdf": b"%PDF"})
    if value is not None:
        s3.client.put_object_tagging(
            Bucket=BUCKET,
            Key="inbox/initech/r.pdf",
            Tagging={"TagSet": [{"Key": GUARDDUTY_TAG, "Value": value}]},
        )
    inbox = scan(manifest(tmp_path, "unix:///nonexistent/clamd.ctl", quarantine=None), s3)
    assert by_key(inbox)["inbox/initech/r.pdf"].scan.status == status
    assert inbox.exit_code == (0 if status == "clean" else 1)


def test_guardduty_threats_are_quarantined_with_its_tag(s3: S3, tmp_path: Path) -> None:
    """THREATS_FOUND with a quarantine_prefix: moved like clamd's infected files, the
    GuardDuty tag travelling with the copy."""
    s3.bucket(BUCKET, {"inbox/initech/r.pdf": b"%PDF"})
    s3.client.put_object_tagging(
        Bucket=BUCKET,
        Key="inbox/initech/r.pdf",
        Tagging={"TagSet": [{"Key": GUARDDUTY_TAG, "Value": "THREATS_FOUND"}]},
    )
    inbox = scan(manifest(tmp_path, "unix:///nonexistent/clamd.ctl"), s3)
    entry = by_key(inbox)["inbox/initech/r.pdf"]
    assert entry.quarantined_to == f"quarantine/inbox/initech/r.pdf@{entry.etag}"
    assert tags(s3, entry.quarantined_to) == {GUARDDUTY_TAG: "THREATS_FOUND"}


def test_infected_without_quarantine_stays_tagged_in_place(
    s3: S3, tmp_path: Path, clamd: ClamdServer
) -> None:
    """No quarantine_prefix: the infected file stays in the slot, tagged infected."""
    s3.bucket(BUCKET, {"inbox/globex/bad.com": eicar()})
    inbox = scan(manifest(tmp_path, clamd.unix_url, quarantine=None), s3)
    entry = by_key(inbox)["inbox/globex/bad.com"]
    assert entry.scan.status == "infected" and entry.quarantined_to is None
    assert tags(s3, "inbox/globex/bad.com")[TAG_VERDICT] == "infected"


def test_other_tags_survive_and_a_key_with_awkward_characters_is_scanned(
    s3: S3, tmp_path: Path, clamd: ClamdServer
) -> None:
    """A key with spaces, %, &, quotes, a backslash and a bidi override is read, scanned
    and tagged; a tag somebody else set on it is kept beside ours."""
    s3.bucket(BUCKET, {AWKWARD: b"contract"})
    s3.client.put_object_tagging(
        Bucket=BUCKET, Key=AWKWARD, Tagging={"TagSet": [{"Key": "owner", "Value": "legal"}]}
    )
    inbox = scan(manifest(tmp_path, clamd.unix_url), s3)
    assert by_key(inbox)[AWKWARD].scan.status == "clean"
    found = tags(s3, AWKWARD)
    assert found["owner"] == "legal" and found[TAG_VERDICT] == "clean"


@pytest.mark.asyncio
async def test_an_object_deleted_between_listing_and_scanning_is_a_scan_error(
    s3: S3, tmp_path: Path
) -> None:
    """The object goes away after it was listed: its tags cannot be read (NoSuchKey), so it
    is a scan_error, never clean, and clamd is not asked."""
    from sharebatch.lifecycle import inbox as inbox_module

    s3.bucket(BUCKET, {"inbox/globex/gone.txt": b"here, then not"})
    real = inbox_module.scan_objects

    async def delete_first(gateway: Any, uploads: Any, **kwargs: Any) -> Any:
        s3.client.delete_object(Bucket=BUCKET, Key="inbox/globex/gone.txt")
        return await real(gateway, uploads, **kwargs)

    async with fake_clamd("ok") as fake:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(inbox_module, "scan_objects", delete_first)
            inbox = await read_inbox_async(
                manifest(tmp_path, fake.url),
                as_of=AS_OF,
                connection=Connection(endpoint_url=s3.endpoint),
                scan=True,
            )
    entry = by_key(inbox)["inbox/globex/gone.txt"]
    assert entry.scan.status == "scan_error" and "NoSuchKey" in entry.scan.detail
    assert fake.connections == 0


@pytest.mark.asyncio
async def test_an_object_replaced_after_listing_is_not_judged_by_the_new_bytes(
    s3: S3, tmp_path: Path
) -> None:
    """The object is overwritten after listing: reading it If-Match the listed ETag fails, so
    the listed version is a scan_error rather than a verdict about other bytes."""
    from sharebatch.lifecycle import inbox as inbox_module

    s3.bucket(BUCKET, {"inbox/globex/v.txt": b"version one"})
    real = inbox_module.scan_objects

    async def replace_first(gateway: Any, uploads: Any, **kwargs: Any) -> Any:
        s3.client.put_object(Bucket=BUCKET, Key="inbox/globex/v.txt", Body=b"version two!")
        return await real(gateway, uploads, **kwargs)

    async with fake_clamd("ok") as fake:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(inbox_module, "scan_objects", replace_first)
            inbox = await read_inbox_async(
                manifest(tmp_path, fake.url),
                as_of=AS_OF,
                connection=Connection(endpoint_url=s3.endpoint),
                scan=True,
            )
    entry = by_key(inbox)["inbox/globex/v.txt"]
    assert entry.scan.status == "scan_error"
    assert fake.streamed == []


def test_scan_without_any_scan_setting_is_a_usage_error(s3: S3, tmp_path: Path) -> None:
    """--scan on a manifest whose slots say nothing of scanning: exit 2, not a silent pass."""
    path = write_manifest(
        tmp_path / "plain.yml",
        f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: q3
    prefixes: [q3/]
    upload: {{prefix: "inbox/{{recipient.id}}/", max_size: 1MB}}
    recipients: [{{id: globex}}]
""",
    )
    with pytest.raises(UsageError, match="no upload slot says how to scan"):
        scan(path, s3)


@pytest.mark.asyncio
async def test_objects_stream_whole_in_bounded_pieces_at_most_concurrency_at_once(
    s3: S3, tmp_path: Path
) -> None:
    """Eight 3 MiB objects (each larger than a read chunk) reach clamd whole, in pieces of at
    most a read chunk (1 MiB), never more than --concurrency (2) of them at once."""
    s3.bucket(BUCKET, {f"inbox/globex/f{i}.bin": bytes([i]) * (3 << 20) for i in range(8)})
    async with fake_clamd("ok") as fake:
        inbox = await read_inbox_async(
            manifest(tmp_path, fake.url),
            as_of=AS_OF,
            connection=Connection(endpoint_url=s3.endpoint),
            scan=True,
            scan_concurrency=2,
        )
    assert fake.streamed == [3 << 20] * 8
    assert fake.largest_piece <= CHUNK < 3 << 20
    assert 1 <= fake.peak <= 2
    assert inbox.exit_code == 0


@pytest.mark.asyncio
async def test_a_hostile_signature_name_is_shown_escaped_and_tagged_safely(
    s3: S3, tmp_path: Path
) -> None:
    """A signature name with an escape sequence and a bidi override (clamd's answer is
    outsiders' text, the database may be anyone's): the report shows it escaped, the tag
    holds only characters S3 allows."""
    from sharebatch.cli.inbox import render_inbox

    s3.bucket(BUCKET, {"inbox/globex/x.bin": b"x"})
    async with fake_clamd("found") as fake:
        fake.signature = "Evil\x1b[31m\u202eName"
        inbox = await read_inbox_async(
            manifest(tmp_path, fake.url, quarantine=None),
            as_of=AS_OF,
            connection=Connection(endpoint_url=s3.endpoint),
            scan=True,
        )
    text = render_inbox(inbox)
    assert "\x1b" not in text and "\u202e" not in text
    assert "Evil\\x1b[31m\\u202eName" in text
    assert tags(s3, "inbox/globex/x.bin")[TAG_SIGNATURE] == "Evil__31m_Name"


@pytest.mark.asyncio
async def test_credentials_refused_mid_scan_end_it_once_with_exit_3(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 refusing the credentials while objects stream (here: the read raising what
    read_object raises for InvalidAccessKeyId): one CredentialsError, not a group of them."""
    from sharebatch.errors import CredentialsError
    from sharebatch.s3.gateway import S3Gateway

    s3.bucket(BUCKET, {f"inbox/globex/{i}.txt": b"x" for i in range(3)})

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise CredentialsError("S3 rejected the credentials: InvalidAccessKeyId")
        yield b""  # an async generator, as read_object is

    monkeypatch.setattr(S3Gateway, "read_object", refused)
    async with fake_clamd("ok") as fake:
        with pytest.raises(CredentialsError) as caught:
            await read_inbox_async(
                manifest(tmp_path, fake.url),
                as_of=AS_OF,
                connection=Connection(endpoint_url=s3.endpoint),
                scan=True,
            )
    assert caught.value.exit_code == 3


def test_the_report_names_the_etag_each_verdict_is_of(
    s3: S3, tmp_path: Path, clamd: ClamdServer
) -> None:
    """JSON files and CSV rows of a scanned inbox carry the ETag the verdict refers to."""
    from sharebatch.lifecycle.inbox import write_inbox_csv

    s3.bucket(BUCKET, {"inbox/globex/a.txt": b"a"})
    etag = s3.client.head_object(Bucket=BUCKET, Key="inbox/globex/a.txt")["ETag"].strip('"')
    inbox = scan(manifest(tmp_path, clamd.unix_url), s3)
    [row] = [r for r in inbox.rows() if r["key"] == "inbox/globex/a.txt"]
    assert (row["etag"], row["scan"]) == (etag, "clean")
    [globex] = [s for s in inbox.as_dict()["slots"] if s["recipient"] == "globex"]
    assert [(f["etag"], f["scan"]) for f in globex["files"]] == [(etag, "clean")]
    write_inbox_csv(inbox, tmp_path / "inbox.csv")
    header, *lines = (tmp_path / "inbox.csv").read_text().splitlines()
    assert "etag" in header.split(",") and any(etag in line for line in lines)


@pytest.mark.asyncio
async def test_the_s3_pool_is_at_least_the_scan_concurrency(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--concurrency 2 for listing, 12 scans at once: every S3 client gets a connection pool
    of more than 12, so streaming scans never wait on each other for a connection."""
    from sharebatch.s3 import clients

    pools: list[int] = []
    real = clients.client_config

    def recorded(target: Any, max_connections: int, policy: Any = None) -> Any:
        pools.append(max_connections)
        return real(target, max_connections, policy)

    monkeypatch.setattr(clients, "client_config", recorded)
    s3.bucket(BUCKET, {f"inbox/globex/{i}.bin": b"x" for i in range(3)})
    async with fake_clamd("ok") as fake:
        inbox = await read_inbox_async(
            manifest(tmp_path, fake.url),
            as_of=AS_OF,
            connection=Connection(endpoint_url=s3.endpoint),
            scan=True,
            concurrency=2,
            scan_concurrency=12,
        )
    assert inbox.exit_code == 0
    assert pools and min(pools) > 12
