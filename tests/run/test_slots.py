"""Unit tests of upload slots: the POST policy document, the PUT URLs, the curl commands.

Signing goes through the same botocore and fast-signer paths a run uses, at a frozen time, so
the policy's expiry and the form's fields can be stated exactly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import shlex
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.auth
import botocore.signers
import pytest

from sharebatch import audit
from sharebatch.errors import CredentialsError, SigningError
from sharebatch.manifest.upload import key_content_type
from sharebatch.models import BucketTarget, Credentials, ShortCredentials, UploadLink, UploadSlot
from sharebatch.run.link_ids import LINK_ID_PATTERN, link_id_of
from sharebatch.run.sign import CredentialLimit, signed_window
from sharebatch.run.slots import (
    curl_command,
    issue_slot,
    post_policy,
    read_policy,
    sample_file,
    uncovered_fields,
    upload_row,
)
from sharebatch.s3.gateway import S3Gateway

NOW = datetime(2026, 11, 28, 20, 15, 30)  # naive UTC, as botocore's clock gives it
ENDPOINT = "http://127.0.0.1:9000"
TARGET = BucketTarget("acme-reports", "eu-west-1", ENDPOINT, "path")
CREDS = Credentials("AKIAUNITTESTUNITTEST", "unit/secret+key")
SLOT = UploadSlot("inbox/2026-Q3/globex/", 5_000_000, 1800, ("application/pdf",))


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """botocore signs (URLs, policies, form dates) as if at NOW."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW)
    monkeypatch.setattr(botocore.signers, "get_current_datetime", lambda: NOW)
    return NOW.replace(tzinfo=UTC)


def signers(creds: Credentials = CREDS) -> tuple[Any, Any]:
    async def make() -> tuple[Any, Any]:
        async with S3Gateway(clock=lambda: NOW.replace(tzinfo=UTC)) as gateway:
            return (
                await gateway.signers.presigner(TARGET, creds),
                await gateway.signers.post_signer(TARGET, creds),
            )

    return asyncio.run(make())


def issue(slot: UploadSlot, creds: Credentials = CREDS) -> list[UploadLink]:
    presign, sign_post = signers(creds)
    return issue_slot("q3", "globex", "acme-reports", slot, presign, sign_post)


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    with audit.capture() as found:
        yield found


# --- the POST policy ------------------------------------------------------------------------


def test_policy_of_a_typed_open_slot(frozen: datetime) -> None:
    """Expiry NOW + expires_in; conditions: size range, exact type, bucket, key prefix, SigV4."""
    [link] = issue(SLOT)
    policy = read_policy(link.fields)
    assert policy["expiration"] == "2026-11-28T20:45:30Z"
    scope = "AKIAUNITTESTUNITTEST/20261128/eu-west-1/s3/aws4_request"
    assert policy["conditions"] == [
        ["content-length-range", 0, 5_000_000],
        {"Content-Type": "application/pdf"},
        {"bucket": "acme-reports"},
        ["starts-with", "$key", "inbox/2026-Q3/globex/"],
        {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
        {"x-amz-credential": scope},
        {"x-amz-date": "20261128T201530Z"},
    ]
    assert {k: v for k, v in link.fields.items() if k not in ("policy", "x-amz-signature")} == {
        "Content-Type": "application/pdf",
        "key": "inbox/2026-Q3/globex/${filename}",
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": scope,
        "x-amz-date": "20261128T201530Z",
    }
    assert (link.method, link.url) == (
        "POST",
        f"{ENDPOINT}/acme-reports?x-sharebatch-id={link.link_id}",
    )
    assert (link.signed_at, link.expires_at) == (frozen, frozen + timedelta(seconds=1800))


def test_the_form_signature_is_sigv4_over_the_policy(frozen: datetime) -> None:
    """x-amz-signature is HMAC-SHA256 of the base64 policy with the day's derived key."""
    [link] = issue(SLOT)
    key = f"AWS4{CREDS.secret_access_key}".encode()
    for part in ("20261128", "eu-west-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, link.fields["policy"].encode(), hashlib.sha256).hexdigest()
    assert link.fields["x-amz-signature"] == expected


def test_every_form_field_has_a_condition(frozen: datetime) -> None:
    """No field of any form is left without a condition (S3 would refuse the upload)."""
    typed = UploadSlot("in/", 10, 60, ("application/pdf", "text/csv"))
    for slot in (typed, UploadSlot("in/", 10)):
        for creds in (CREDS, Credentials("AKIAX", "s", session_token="tok")):
            for link in issue(slot, creds):
                assert uncovered_fields(link.fields, read_policy(link.fields)["conditions"]) == []


def test_a_slot_of_any_type_says_octet_stream_and_allows_any(frozen: datetime) -> None:
    """Without content_types: one form, Content-Type preset and open by a starts-with ''."""
    [link] = issue(UploadSlot("in/", 10))
    assert link.content_type is None
    assert link.fields["Content-Type"] == "application/octet-stream"
    assert ["starts-with", "$Content-Type", ""] in read_policy(link.fields)["conditions"]


def test_several_types_give_one_form_each(frozen: datetime) -> None:
    """A policy fixes a field to one value, so each allowed type gets its own form."""
    links = issue(UploadSlot("in/", 10, 60, ("application/pdf", "text/csv; charset=utf-8")))
    assert [(x.content_type, x.fields["Content-Type"]) for x in links] == [
        ("application/pdf", "application/pdf"),
        ("text/csv; charset=utf-8", "text/csv; charset=utf-8"),
    ]
    for link in links:
        assert {"Content-Type": link.content_type} in read_policy(link.fields)["conditions"]


def test_post_policy_alone_names_only_what_sharebatch_adds() -> None:
    """post_policy's own part: the size range and the type, as fields and conditions."""
    assert post_policy(SLOT, "application/pdf") == (
        {"Content-Type": "application/pdf"},
        [["content-length-range", 0, 5_000_000], {"Content-Type": "application/pdf"}],
    )


def test_uncovered_fields_finds_extras_and_knows_the_exempt_ones() -> None:
    """Fields named by eq, starts-with or a mapping are covered; policy/signature/file exempt."""
    conditions = [{"key": "k"}, ["starts-with", "$Content-Type", ""], ["eq", "$acl", "private"]]
    fields = ["key", "content-type", "ACL", "policy", "x-amz-signature", "file", "x-ignore-me"]
    assert uncovered_fields(fields, conditions) == []
    assert uncovered_fields([*fields, "x-amz-meta-a", "success_action_status"], conditions) == [
        "x-amz-meta-a",
        "success_action_status",
    ]


def test_a_form_with_an_uncovered_field_is_never_issued(events: list[dict[str, Any]]) -> None:
    """Should a signer return a field without condition, no slot is issued rather than one S3
    would refuse."""
    policy = base64.b64encode(json.dumps({"expiration": "x", "conditions": []}).encode()).decode()

    def bad_post(
        bucket: str, key: str, fields: Mapping[str, str], c: Sequence[object], e: int
    ) -> tuple[str, dict[str, str]]:
        return "https://x", {**fields, "key": key, "policy": policy}

    with pytest.raises(SigningError, match="without a policy condition"):
        issue_slot("q3", "globex", "b", SLOT, lambda *a: "", bad_post)
    assert events == []


def test_read_policy_refuses_what_is_not_a_policy() -> None:
    """A missing or unreadable policy field is an error, not a guess."""
    for fields in ({}, {"policy": "not base64!"}, {"policy": base64.b64encode(b"[1]").decode()}):
        with pytest.raises(SigningError):
            read_policy(fields)


def test_an_expiry_beyond_seven_days_is_refused() -> None:
    """The SigV4 limit holds at signing time too, whatever the manifest allowed."""
    with pytest.raises(SigningError, match=r"outside 1\.\.604800s"):
        issue_slot(
            "q3", "g", "b", UploadSlot("in/", 1, 604_801), lambda *a: "", lambda *a: ("", {})
        )


# --- credentials that end before the slot ---------------------------------------------------

SESSION = Credentials("ASIAUNITTESTUNITTEST", "unit/secret+key", "unit-token")
TYPED_KEY = UploadSlot("inbox/globex/", 1000, 1800, ("application/pdf",), ("signed.pdf",))


def issue_limited(
    slot: UploadSlot, policy: ShortCredentials, now: datetime, ends: datetime
) -> UploadLink:
    """The one link of ``slot``, signed at ``now`` with credentials ending at ``ends``."""
    presign, sign_post = signers(SESSION)
    limit = CredentialLimit(ends, "container-role", policy)
    [link] = issue_slot(
        "q3", "globex", "b", slot, presign, sign_post, limit=limit, clock=lambda: now
    )
    return link


def test_clamp_ends_the_put_url_and_the_post_policy_with_the_credentials(
    frozen: datetime,
) -> None:
    """A 30-minute slot on credentials ending in 10: the PUT URL's window and the POST policy's
    expiration end exactly then, as the links' expires_at say."""
    ends = frozen + timedelta(minutes=10)
    put = issue_limited(TYPED_KEY, "clamp", frozen, ends)
    assert signed_window(put.url) == (frozen, ends)
    assert put.expires_at == ends
    form = issue_limited(SLOT, "clamp", frozen, ends)
    assert read_policy(form.fields)["expiration"] == "2026-11-28T20:25:30Z"
    assert form.expires_at == ends


def test_a_form_stamped_a_second_late_is_signed_again_shorter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """botocore's clock ticked past ours: the policy would end a second after the credentials,
    so the form is signed again, one second shorter."""
    now = NOW.replace(tzinfo=UTC)
    late = NOW + timedelta(seconds=1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: late)
    monkeypatch.setattr(botocore.signers, "get_current_datetime", lambda: late)
    ends = now + timedelta(minutes=10)
    form = issue_limited(SLOT, "clamp", now, ends)
    assert read_policy(form.fields)["expiration"] == "2026-11-28T20:25:30Z"
    assert form.fields["x-amz-date"] == "20261128T201531Z"
    assert form.expires_at == ends


def test_warn_keeps_the_slot_and_states_the_credential_expiry(frozen: datetime) -> None:
    """warn: URL and policy keep their 30 minutes; expires_at is when the credentials end."""
    ends = frozen + timedelta(minutes=10)
    put = issue_limited(TYPED_KEY, "warn", frozen, ends)
    assert signed_window(put.url) == (frozen, frozen + timedelta(minutes=30))
    assert put.expires_at == ends
    form = issue_limited(SLOT, "warn", frozen, ends)
    assert read_policy(form.fields)["expiration"] == "2026-11-28T20:45:30Z"
    assert form.expires_at == ends


def test_fail_refuses_a_slot_that_would_outlive_the_credentials(frozen: datetime) -> None:
    """fail: no slot is issued past the credentials; exit 3, naming the source."""
    with pytest.raises(CredentialsError, match="an upload slot signed now would work") as info:
        issue_limited(SLOT, "fail", frozen, frozen + timedelta(minutes=10))
    assert "container-role" in str(info.value)
    assert info.value.exit_code == 3


# --- PUT URLs --------------------------------------------------------------------------------


def test_put_urls_sign_each_keys_one_type_and_no_checksum(frozen: datetime) -> None:
    """One PUT per key, its type chosen by extension and signed; expiry read from the URL."""
    slot = UploadSlot("in/", 10, 900, ("application/pdf", "text/csv"), ("a.pdf", "b.csv"))
    links = issue(slot)
    assert [(x.method, x.key, x.content_type, x.headers) for x in links] == [
        ("PUT", "in/a.pdf", "application/pdf", {"Content-Type": "application/pdf"}),
        ("PUT", "in/b.csv", "text/csv", {"Content-Type": "text/csv"}),
    ]
    for link in links:
        assert link.url.startswith(f"{ENDPOINT}/acme-reports/{link.key}?")
        assert "X-Amz-SignedHeaders=content-type%3Bhost" in link.url
        assert "X-Amz-Expires=900&" in link.url and "checksum" not in link.url.lower()
        assert link.expires_at - link.signed_at == timedelta(seconds=900)


def test_every_upload_link_carries_its_own_id(frozen: datetime) -> None:
    """Each PUT URL signs its id (after nothing else, before X-Amz-*); each POST form's action
    URL carries its id unsigned; ``ids=False`` leaves both bare; ``replaces`` names the old
    link each re-issued one stands for."""
    slot = UploadSlot("in/", 10, 900, ("application/pdf",), ("a.pdf", "b.pdf"))
    puts = issue(slot)
    posts = issue(SLOT)
    ids = [x.link_id for x in (*puts, *posts)]
    assert len(set(ids)) == 3 and all(i and LINK_ID_PATTERN.fullmatch(i) for i in ids)
    for link in puts:
        assert f"?x-sharebatch-id={link.link_id}&X-Amz-Algorithm=" in link.url
        assert link_id_of(link.url) == link.link_id
    assert link_id_of(posts[0].url) == posts[0].link_id
    assert "x-sharebatch-id" not in json.dumps(dict(posts[0].fields))
    presign, sign_post = signers()
    bare = issue_slot("q3", "globex", "acme-reports", slot, presign, sign_post, ids=False)
    assert [x.link_id for x in bare] == [None, None]
    assert all("x-sharebatch-id" not in x.url for x in bare)
    with audit.capture() as found:
        issue_slot(
            "q3",
            "globex",
            "acme-reports",
            slot,
            presign,
            sign_post,
            replaces={("PUT", "in/a.pdf", "application/pdf"): "00000000000000aa"},
        )
    assert [e.get("replaces") for e in found if e["event"] == "upload_slot_issued"] == [
        "00000000000000aa",
        None,
    ]


def test_a_put_of_any_type_signs_only_the_host(frozen: datetime) -> None:
    """No content_types: nothing but host is signed, and curl sends no type header."""
    [link] = issue(UploadSlot("in/", 10, keys=("data.bin",)))
    assert "X-Amz-SignedHeaders=host&" in link.url
    assert link.headers == {}
    assert "-H" not in shlex.split(curl_command(link))


@pytest.mark.parametrize(
    ("name", "allowed", "expected"),
    [
        ("a.pdf", (), None),
        ("a.anything", ("application/pdf",), "application/pdf"),
        ("A.PDF", ("application/pdf", "text/csv"), "application/pdf"),
        ("data.csv", ("application/pdf", "text/csv; charset=utf-8"), "text/csv; charset=utf-8"),
    ],
)
def test_a_keys_content_type(name: str, allowed: tuple[str, ...], expected: str | None) -> None:
    """One allowed type serves every key; with several, the extension chooses."""
    assert key_content_type(name, allowed) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a.xlsx", "no media type is known for '.xlsx'"),
        ("README", "a name without extension"),
        ("a.png", "'.png' means image/png, not in content_types"),
    ],
)
def test_a_key_whose_type_cannot_be_chosen_is_refused(name: str, message: str) -> None:
    """A PUT signs one type: a key matching none of several is an error naming why."""
    with pytest.raises(ValueError, match="signs exactly one Content-Type") as info:
        key_content_type(name, ("application/pdf", "text/csv"))
    assert message in str(info.value)


# --- curl commands ---------------------------------------------------------------------------


def test_the_put_command_sends_exactly_the_signed_headers(frozen: datetime) -> None:
    """curl -T with the key's name, the signed Content-Type, then the URL."""
    [link] = issue(UploadSlot("in/", 10, 60, ("application/pdf",), ("signed contract.pdf",)))
    assert shlex.split(curl_command(link)) == [
        "curl",
        "--fail-with-body",
        "--globoff",
        "-T",
        "signed contract.pdf",
        "-H",
        "Content-Type: application/pdf",
        link.url,
    ]


def test_the_post_command_sends_every_field_literally_then_the_file(frozen: datetime) -> None:
    """--form-string for each field in order (no @ or < reading), the file last, the URL."""
    [link] = issue(SLOT, Credentials("AKIAX", "s", session_token="tok;type=x"))
    args = shlex.split(curl_command(link, "report (final).pdf"))
    assert args[:3] == ["curl", "--fail-with-body", "--globoff"]
    pairs = [args[i + 1] for i in range(3, len(args) - 3, 2) if args[i] == "--form-string"]
    assert pairs == [f"{k}={v}" for k, v in link.fields.items()]
    assert args[-3:] == ["-F", "file=@report (final).pdf", link.url]


@pytest.mark.secrets_on_stdout  # the commands printed are the data
def test_commands_survive_a_posix_shell_unchanged(frozen: datetime) -> None:
    """Printed by sh instead of run, each argument comes back exactly: quoting is right."""
    awkward = UploadSlot("in/$HOME & 'q'/", 10, 60, ("text/plain",), ("`x` $(y).txt",))
    for link in [*issue(awkward), *issue(UploadSlot("in/$x'/", 10))]:
        command = curl_command(link)
        printed = subprocess.run(
            ["sh", "-c", "printf '%s\\n' " + command.removeprefix("curl ")],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        assert printed.splitlines() == shlex.split(command)[1:]


def test_sample_file_names_follow_the_type() -> None:
    """The placeholder in POST commands has the type's usual extension, or none."""
    assert sample_file("application/pdf") == "your-file.pdf"
    assert sample_file("text/csv; charset=utf-8") == "your-file.csv"
    assert sample_file("x-unknown/thing") == "your-file"
    assert sample_file(None) == "your-file"


def test_bundle_rows_and_audit_events_of_a_slot(
    frozen: datetime, events: list[dict[str, Any]]
) -> None:
    """A row carries URL, fields, headers and curl; the event only digests, never a signature."""
    [link] = issue(SLOT)
    row = upload_row(link)
    assert row == {
        "recipient": "globex",
        "bucket": "acme-reports",
        "method": "POST",
        "key": "inbox/2026-Q3/globex/${filename}",
        "content_type": "application/pdf",
        "max_size": 5_000_000,
        "expires_at": "2026-11-28T20:45:30Z",
        "link_id": link.link_id,
        "url": link.url,
        "fields": dict(link.fields),
        "headers": {},
        "curl": curl_command(link),
    }
    assert list(row).index("link_id") == list(row).index("url") - 1
    [event] = [e for e in events if e["event"] == "upload_slot_issued"]
    assert event["link_id"] == link.link_id and "replaces" not in event
    assert event["policy_sha256"] == hashlib.sha256(link.fields["policy"].encode()).hexdigest()
    assert link.fields["x-amz-signature"] not in json.dumps(event)
    assert "url_sha256" not in event and "fields" not in event


def test_secrets_stay_out_of_repr_and_logs(events: list[dict[str, Any]]) -> None:
    """repr() shows no URL or field, and a curl command or form logged by mistake is redacted."""
    link = UploadLink(
        "q3", "g", "b", "POST", "k", None, 1, NOW, NOW, "https://u", {"x-amz-signature": "S"}, {}
    )
    assert "https://u" not in repr(link) and "'S'" not in repr(link)
    audit.get_logger().info("oops", detail="curl --form-string 'x-amz-signature=abc' https://u")
    audit.get_logger().info("oops", fields={"x-amz-signature": "abc"}, curl="curl ...")
    assert [(e["detail"],) for e in events[:1]] == [(audit.REDACTED,)]
    assert (events[1]["fields"], events[1]["curl"]) == (audit.REDACTED, audit.REDACTED)
