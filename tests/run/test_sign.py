"""Signatures: our presigning configuration against independently produced vectors and botocore."""

from __future__ import annotations

import asyncio
import json
import unicodedata
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, quote, unquote, urlsplit

import botocore.auth
import botocore.session
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharebatch import audit
from sharebatch.audit import url_digest
from sharebatch.errors import SigningError
from sharebatch.models import (
    LINK_ID_PARAM,
    MAX_EXPIRES_IN,
    BucketTarget,
    Credentials,
    Expiry,
    Link,
    ObjectRef,
)
from sharebatch.run import link_ids, sign
from sharebatch.run.link_ids import LINK_ID_PATTERN, link_id_of
from sharebatch.run.sign import (
    Columns,
    CredentialLimit,
    Signer,
    content_disposition,
    signed_window,
)
from sharebatch.s3.gateway import S3Gateway
from sharebatch.s3.presigners import botocore_presigner
from sharebatch.s3.sigv4 import SigV4Presigner, Unsupported
from sharebatch.s3.workersign import FastPresigner
from sharebatch.visible import without_hidden
from tests.support import tricky
from tests.support.paths import DATA

VECTORS = json.loads((DATA / "sigv4-presign.json").read_text())
SIGNING_TIME = datetime.strptime(VECTORS["signing_time"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _label(case: dict[str, Any]) -> str:
    i = case["input"]
    return f"{i['method']}-{i['style']}-{i['region']}-{i['key']!r}"[:80]


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """botocore reads the signing time through botocore.auth.get_current_datetime."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: SIGNING_TIME)
    return SIGNING_TIME


def _presign(case: dict[str, Any], at: datetime, *, fast: bool, link_id: str | None = None) -> str:
    i = case["input"]
    target = BucketTarget(
        bucket=i["bucket"],
        region=i["region"],
        endpoint_url=i.get("endpoint"),
        addressing_style=i["style"],
    )
    creds = Credentials(
        access_key_id=VECTORS["access_key_id"],
        secret_access_key=VECTORS["secret_access_key"],
        session_token=i.get("sessionToken"),
    )
    params = {}
    if "responseContentDisposition" in i:
        params["ResponseContentDisposition"] = i["responseContentDisposition"]
    if "responseContentType" in i:
        params["ResponseContentType"] = i["responseContentType"]
    if "contentType" in i:
        params["ContentType"] = i["contentType"]
    if link_id is not None:
        params[LINK_ID_PARAM] = link_id

    async def make() -> str:
        async with S3Gateway(clock=lambda: at) as gateway:
            if fast:
                presign = await gateway.signers.presigner(target, creds)
            else:
                session = botocore.session.Session()
                presign = botocore_presigner(session, target, i["region"], creds)
            return presign(i["method"], i["bucket"], i["key"], i["expires"], params)

    return asyncio.run(make())


@pytest.mark.parametrize("fast", [True, False], ids=["gateway", "botocore-path"])
@pytest.mark.parametrize("case", VECTORS["cases"], ids=_label)
def test_presigned_url_matches_vector(
    case: dict[str, Any], fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both signing paths yield, byte for byte, the URL botocore and the JS SDK agree on."""
    # Most vectors share the file's signing time; the AWS documentation example has its own.
    stamp = parse_qs(urlsplit(case["url"]).query)["X-Amz-Date"][0]
    at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at)
    assert _presign(case, at, fast=fast) == case["url"]


def test_gateway_falls_back_to_botocore_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call the fast signer refuses is signed by botocore instead, with the same result."""
    case = VECTORS["cases"][0]
    at = SIGNING_TIME
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at)
    expected = _presign(case, at, fast=True)

    def refuse(*args: object) -> str:
        raise Unsupported("test")

    monkeypatch.setattr(SigV4Presigner, "__call__", refuse)
    assert _presign(case, at, fast=True) == expected == case["url"]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=_label)
def test_every_signing_path_signs_a_link_id_alike(
    case: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an id, the gateway's fast signer, its per-call botocore fallback and the botocore
    signer chosen outright all give one URL, which carries the id and differs from the
    vector's only in the id and the signature."""
    at = datetime.strptime(
        parse_qs(urlsplit(case["url"]).query)["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"
    ).replace(tzinfo=UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at)
    link_id = "0123456789abcdef"
    fast = _presign(case, at, fast=True, link_id=link_id)
    chosen = _presign(case, at, fast=False, link_id=link_id)

    def refuse(*args: object) -> str:
        raise Unsupported("test")

    monkeypatch.setattr(SigV4Presigner, "__call__", refuse)
    assert _presign(case, at, fast=True, link_id=link_id) == fast == chosen
    assert link_id_of(fast) == link_id
    bare, signature = fast.replace(f"{LINK_ID_PARAM}={link_id}&", "").split("X-Amz-Signature=")
    assert bare == case["url"].split("X-Amz-Signature=")[0]
    assert signature != case["url"].split("X-Amz-Signature=")[1]


def test_botocore_settings_in_the_environment_select_botocore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where botocore would be steered by the environment, the fast signer stands aside."""
    monkeypatch.setenv("AWS_USE_DUALSTACK_ENDPOINT", "true")
    target = BucketTarget("my-bucket", "eu-west-1", None, "virtual")
    creds = Credentials("AKIAEXAMPLE", "secret")

    async def make() -> str:
        async with S3Gateway() as gateway:
            presign = await gateway.signers.presigner(target, creds)
            return presign("GET", "my-bucket", "k", 60, {})

    with audit.capture() as events:
        url = asyncio.run(make())
    assert ".dualstack." in url
    [selected] = [e for e in events if e["event"] == "signer_selected"]
    assert selected["signer"] == "botocore"
    assert "AWS_USE_DUALSTACK_ENDPOINT" in selected["reason"]


def test_signed_window_reads_the_url() -> None:
    """expires_at is read back from X-Amz-Date + X-Amz-Expires of the URL itself."""
    case = next(c for c in VECTORS["cases"] if c["input"]["expires"] == 604800)
    signed_at, expires_at = signed_window(case["url"])
    assert signed_at == SIGNING_TIME
    assert (expires_at - signed_at).total_seconds() == 604800


def test_sigv2_urls_are_refused() -> None:
    """A URL without SigV4 parameters (SigV2 style) is never accepted into a bundle."""
    sigv2 = "https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIA&Signature=abc%3D&Expires=1700000000"
    with pytest.raises(SigningError, match="SigV4"):
        signed_window(sigv2)


@pytest.mark.parametrize("expires_in", [0, -1, MAX_EXPIRES_IN + 1])
def test_signer_enforces_the_seven_day_limit(expires_in: int) -> None:
    """The 7-day SigV4 limit is checked when signing, not only when loading a manifest."""
    with pytest.raises(SigningError, match="604800"):
        Signer(lambda *a: "", job="j", expiry=Expiry(seconds=expires_in))


def test_signer_builds_links_with_real_expiry(frozen_clock: datetime) -> None:
    """Each link carries the object, GET, and the moment its signature stops working."""
    case = VECTORS["cases"][0]
    obj = ObjectRef("my-bucket", "plain.txt", 3, "etag", frozen_clock)
    signer = Signer(lambda *a: case["url"], job="j", expiry=Expiry(seconds=3600))
    [link] = signer.sign_get("alice", [obj])
    assert (link.method, link.recipient, link.obj) == ("GET", "alice", obj)
    assert link.expires_at == datetime(2024, 1, 15, 13, 34, 56, tzinfo=UTC)
    assert "X-Amz-Signature" not in repr(link)


def _recording_presigner(calls: list[tuple[Any, ...]]) -> Any:
    def presign(method: str, bucket: str, key: str, expires: int, params: Any) -> str:
        calls.append((method, key, expires, dict(params)))
        return (
            f"https://h/{key}?X-Amz-Date=20261128T120000Z&X-Amz-Expires={expires}&X-Amz-Signature=x"
        )

    return presign


def test_absolute_expiry_gives_every_link_the_same_end() -> None:
    """With expires_at, each batch is signed for the time left, so links die at that moment."""
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    end = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
    calls: list[tuple[Any, ...]] = []
    signer = Signer(_recording_presigner(calls), job="j", expiry=Expiry(at=end), clock=lambda: now)
    [link] = signer.sign_get("r", [ObjectRef("b", "k", 1, "e", now)])
    assert calls[0][2] == int((end - now).total_seconds())
    assert link.expires_at == end


def test_absolute_expiry_in_the_past_is_refused_at_signing() -> None:
    """An expires_at that has passed by signing time is refused, never turned into a bad link."""
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    signer = Signer(_recording_presigner([]), job="j", expiry=Expiry(at=now), clock=lambda: now)
    with pytest.raises(SigningError, match="outside"):
        signer.sign_get("r", [ObjectRef("b", "k", 1, "e", now)])


def test_download_name_and_content_type_are_signed_parameters() -> None:
    """download_name becomes response-content-disposition; content_type response-content-type."""
    calls: list[tuple[Any, ...]] = []
    signer = Signer(
        _recording_presigner(calls),
        job="j",
        expiry=Expiry(seconds=60),
        download_name="Q3-{stem}{ext}",
        content_type="application/pdf",
    )
    [link] = signer.sign_get("r", [ObjectRef("b", "dir/report.final.pdf", 1, "e", SIGNING_TIME)])
    assert calls[0][3] == {
        "ResponseContentDisposition": 'attachment; filename="Q3-report.final.pdf"',
        "ResponseContentType": "application/pdf",
        LINK_ID_PARAM: link.link_id,
    }


@pytest.mark.parametrize(
    "name",
    ["report.pdf", "résumé 2026.pdf", "日本語.txt", 'quote"and\\slash.txt', "emoji-😀.csv", ""],
)
def test_content_disposition_round_trips(name: str) -> None:
    """The header decodes back to the exact name (RFC 6266/5987), with an ASCII fallback."""
    header = content_disposition(name)
    assert header.isascii()
    message = EmailMessage()
    message["Content-Disposition"] = header
    fallback = message.get_param("filename", header="content-disposition")
    assert isinstance(fallback, str)
    assert fallback.isascii()
    assert '"' not in fallback
    assert "\\" not in fallback
    # RFC 6266: a client that understands filename* prefers it over filename.
    extended = [p for p in header.split("; ") if p.startswith("filename*=")]
    if extended:
        charset, _, encoded = extended[0].removeprefix("filename*=").split("'", 2)
        assert charset == "UTF-8"
        assert unquote(encoded, encoding="utf-8", errors="strict") == name
    else:
        assert fallback == (name or "download")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("\u202egnp.exe.pdf", "gnp.exe.pdf"),
        ("nul\x00bell\x07esc\x1b.txt", "nulbellesc.txt"),
        ("line\u2028sep\ufeff.txt", "linesep.txt"),
        ("r\u00e9sum\u00e9\u2067.pdf", "r\u00e9sum\u00e9.pdf"),
        ("\u202e\u200b", "download"),
        (".\u200b.", "download"),
    ],
)
def test_content_disposition_drops_hidden_characters(name: str, shown: str) -> None:
    """Controls, bidi and invisible characters are stripped from both names; a name left
    empty or dots only is 'download'."""
    header = content_disposition(name)
    message = EmailMessage()
    message["Content-Disposition"] = header
    fallback = message.get_param("filename", header="content-disposition")
    extended = [p for p in header.split("; ") if p.startswith("filename*=")]
    decoded = unquote(extended[0].split("'", 2)[2]) if extended else fallback
    assert decoded == shown
    assert isinstance(fallback, str) and fallback.isascii() and fallback.isprintable()
    assert "%E2%80%AE" not in header and "%00" not in header and "%1B" not in header


def _fast_signer(link_ids: bool) -> Signer:
    presign = SigV4Presigner(
        Credentials(VECTORS["access_key_id"], VECTORS["secret_access_key"]),
        region="eu-west-1",
        endpoint_url=None,
        addressing_style="auto",
        clock=lambda: SIGNING_TIME,
    )
    return Signer(
        presign, job="j", expiry=Expiry(seconds=3600), clock=lambda: SIGNING_TIME, link_ids=link_ids
    )


def test_two_recipients_of_one_object_in_one_second_get_different_links() -> None:
    """The old weakness: the same object signed for two recipients within one second gave one
    URL (and one sha256 in the audit log). Each link now carries its own signed id, so URLs
    and digests differ; with ``link_ids: false`` the weakness is back, as documented."""
    obj = ObjectRef("my-bucket", "reports/q3.pdf", 1, "e", SIGNING_TIME)
    signer = _fast_signer(True)
    [one] = signer.sign_get("globex", [obj])
    [two] = signer.sign_get("initech", [obj])
    assert one.signed_at == two.signed_at  # the same second, the same key and expiry
    assert one.link_id is not None and two.link_id is not None
    assert LINK_ID_PATTERN.fullmatch(one.link_id) and LINK_ID_PATTERN.fullmatch(two.link_id)
    assert one.link_id != two.link_id
    assert (link_id_of(one.url), link_id_of(two.url)) == (one.link_id, two.link_id)
    assert one.url != two.url
    assert url_digest(one.url) != url_digest(two.url)
    off = _fast_signer(False)
    [three], [four] = off.sign_get("globex", [obj]), off.sign_get("initech", [obj])
    assert three.link_id is None and LINK_ID_PARAM not in three.url
    assert three.url == four.url


def test_link_ids_are_unique_across_many_links() -> None:
    """50,000 links of one object in one second: 50,000 distinct ids, each 16 lowercase hex."""
    obj = ObjectRef("my-bucket", "k", 1, "e", SIGNING_TIME)
    links = _fast_signer(True).sign_get("r", [obj] * 50_000)
    ids = {link.link_id for link in links}
    assert len(ids) == 50_000
    assert all(i is not None and LINK_ID_PATTERN.fullmatch(i) for i in ids)


_AT = datetime(2026, 11, 28, 12, 0, 0, 250_000, tzinfo=UTC)


def _fresh_ids() -> Any:
    """Link ids drawn from a counter, the same sequence on each call (the pool emptied)."""
    counter = iter(range(1 << 30))
    link_ids._pool.clear()

    def bits(size: int) -> bytes:
        return b"".join(next(counter).to_bytes(8) for _ in range(size // 8))

    return mock.patch.object(link_ids, "random_bits", bits)


def _both_ways(
    objects: list[ObjectRef], slow: Any = None, **options: Any
) -> tuple[list[Link], list[Link], Signer]:
    """The links of ``objects`` signed in one batch (FastPresigner.get_many) and one by one
    (the same presigner seen without get_many), under the same clock and link ids."""
    fast = SigV4Presigner(
        Credentials("AKIDEXAMPLE", "secret"),
        region="eu-west-1",
        endpoint_url=None,
        addressing_style="auto",
        clock=lambda: _AT,
        environ={},
    )
    batch = Signer(FastPresigner(fast, lambda: slow or fast), clock=lambda: _AT, **options)
    per_link = FastPresigner(fast, lambda: slow or fast)
    single = Signer(lambda *a: per_link(*a), clock=lambda: _AT, **options)
    with _fresh_ids():
        batched = batch.sign_get("alice", objects)
    with _fresh_ids():
        one_by_one = single.sign_get("alice", objects)
    return batched, one_by_one, batch


@given(
    st.lists(st.one_of(tricky.plain(), tricky.texts(surrogates=False, min_size=1)), max_size=6),
    st.sampled_from(["{basename}", "{key}", "{stem}-copy{ext}", "x"]),
    st.sampled_from([None, "text/csv"]),
    st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_a_batch_signs_the_links_one_by_one_signing_gives(
    keys: list[str], download_name: str, content_type: str | None, ids: bool
) -> None:
    """Signing a chunk in one get_many call gives the very links (URL, window, id) that one
    presigner call per link gives, whatever the keys, download name and content type."""
    objects = [ObjectRef("my-bucket", key or "k", 1, "e", _AT) for key in keys]
    batched, one_by_one, _ = _both_ways(
        objects,
        job="j",
        expiry=Expiry(seconds=3600),
        download_name=download_name,
        content_type=content_type,
        link_ids=ids,
    )
    assert batched == one_by_one
    assert all(link.signed_at == _AT.replace(microsecond=0) for link in batched)


def test_a_batch_under_a_credential_limit_is_signed_link_by_link() -> None:
    """Links that temporary credentials clamp are signed one by one, as before: same links,
    same clamp recorded."""
    objects = [ObjectRef("my-bucket", f"k{i}", 1, "e", _AT) for i in range(3)]
    limit = CredentialLimit(_AT.replace(microsecond=0) + timedelta(minutes=30), "role", "clamp")
    batched, one_by_one, signer = _both_ways(
        objects, job="j", expiry=Expiry(seconds=3600), limit=limit
    )
    assert batched == one_by_one
    assert all(link.expires_at <= limit.expiry for link in batched)
    assert signer.clamped_to == limit.expiry


def test_a_key_only_botocore_signs_sends_its_batch_link_by_link() -> None:
    """A key the fast signer refuses (a lone surrogate) makes the batch fall back: that link
    goes to the slow signer, the others are the fast signer's, ids in order."""
    calls: list[str] = []

    def slow(method: str, bucket: str, key: str, expires: int, params: Any) -> str:
        calls.append(key)
        return f"https://slow/x?X-Amz-Date=20261128T120000Z&X-Amz-Expires={expires}&a=b"

    objects = [ObjectRef("my-bucket", key, 1, "e", _AT) for key in ("a", "b\ud800", "c")]
    batched, one_by_one, _ = _both_ways(objects, slow=slow, job="j", expiry=Expiry(seconds=60))
    assert calls == ["b\ud800", "b\ud800"]  # once in each way of signing
    assert batched == one_by_one
    assert batched[1].url.startswith("https://slow/")


def _general_disposition(filename: str) -> str:
    """content_disposition as it was before its shortcut for plain names."""
    name = without_hidden(filename)
    if not name.strip(". "):
        name = "download"
    if sign._PLAIN_NAME.issuperset(name):
        return f'attachment; filename="{name}"'
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = "".join(c if c in sign._PLAIN_NAME else "_" for c in folded).strip() or "download"
    encoded = quote(name, safe=sign._ATTR_CHARS)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


@given(st.one_of(tricky.texts(), tricky.plain(), st.sampled_from(["", ".", "..", " . "])))
@settings(max_examples=150, deadline=None)
def test_the_plain_name_shortcut_changes_no_header(name: str) -> None:
    """A plain name's header, said at once, is the one the general path makes."""
    assert content_disposition(name) == _general_disposition(name)


def _columns_as_links(
    signer: Signer, recipient: str, objects: list[ObjectRef]
) -> list[Link] | None:
    """``sign_columns``' answer as the links it stands for (None: it answered with links)."""
    signed = signer.sign_columns(recipient, objects)
    if not isinstance(signed, Columns):
        return None
    ids = signed.ids if signed.ids is not None else [None] * len(objects)
    return [
        Link(signer.job, recipient, obj, "GET", signed.signed_at, signed.expires_at, url, link_id)
        for obj, url, link_id in zip(objects, signed.urls, ids, strict=True)
    ]


@given(st.lists(tricky.texts(surrogates=False), min_size=1, max_size=6), st.booleans())
@settings(max_examples=100, deadline=None)
def test_a_chunk_signed_into_columns_holds_sign_gets_links(keys: list[str], ids: bool) -> None:
    """sign_columns gives, as columns, the very links sign_get gives for the chunk (URLs, ids
    in order, window), or those links themselves when the chunk cannot be signed at once."""
    objects = [ObjectRef("my-bucket", key or "k", 1, "e", _AT) for key in keys]
    fast = SigV4Presigner(
        Credentials("AKIDEXAMPLE", "secret"), region="eu-west-1", endpoint_url=None,
        addressing_style="auto", clock=lambda: _AT, environ={},
    )  # fmt: skip
    signer = Signer(
        FastPresigner(fast, lambda: fast), clock=lambda: _AT, job="j",
        expiry=Expiry(seconds=3600), link_ids=ids,
    )  # fmt: skip
    with _fresh_ids():
        expected = signer.sign_get("alice", objects)
    with _fresh_ids():
        as_columns = _columns_as_links(signer, "alice", objects)
    with _fresh_ids():
        answered = signer.sign_columns("alice", objects)
    assert (as_columns if as_columns is not None else answered) == expected


def test_a_chunk_under_a_credential_limit_comes_back_as_links() -> None:
    """A chunk whose links must be shortened is not signed into columns: sign_columns gives
    sign_get's links (clamped), the ids it drew in them."""
    objects = [ObjectRef("my-bucket", f"k{i}", 1, "e", _AT) for i in range(3)]
    limit = CredentialLimit(_AT.replace(microsecond=0) + timedelta(minutes=30), "role", "clamp")
    batched, _, signer = _both_ways(objects, job="j", expiry=Expiry(seconds=3600), limit=limit)
    with _fresh_ids():
        answered = signer.sign_columns("alice", objects)
    assert answered == batched
    assert signer.clamped_to == limit.expiry


@pytest.mark.parametrize("counts", [[3, 600, 1, 512, 1100], [512, 512], [0, 5]])
def test_ids_drawn_a_page_at_a_time_are_new_link_ids_sequence(counts: list[int]) -> None:
    """link_ids.draw hands out, a page at a time, the ids new_link_id would, in its order,
    across refills of the pool."""
    with _fresh_ids():
        one_by_one = [link_ids.new_link_id() for _ in range(sum(counts))]
    with _fresh_ids():
        drawn = [i for count in counts for i in link_ids.draw(count)]
    assert drawn == one_by_one
    assert len(set(drawn)) == len(drawn)
