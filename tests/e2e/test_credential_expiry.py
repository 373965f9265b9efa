"""Links never die before their expires_at: temporary credentials and on_short_credentials."""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sharebatch.errors import CredentialsError, SigningError
from sharebatch.models import Credentials, Expiry, ObjectRef
from sharebatch.run.sign import (
    CredentialLimit,
    Signer,
    check_lifetimes,
    signed_window,
)
from sharebatch.run.slots import read_policy
from sharebatch.s3.gateway import S3Gateway
from tests.support.http_upload import post_form, put
from tests.support.linkkit import (
    SESSION_KEY,
    SESSION_TOKEN,
    audit_events,
    container_credentials,
    invoke,
    parse_iso,
    run_dir_of,
)
from tests.support.s3 import S3, fetch, fresh_s3, write_manifest

BUCKET = "short-creds"
FILES = {"q3/a.pdf": b"%PDF a", "q3/b.csv": b"x,y\n1,2\n"}


JOB = """\
  - name: q3
    prefixes: [q3/]
    recipients:
      - id: globex
"""


def manifest(
    tmp_path: Path, endpoint: str, extra: str = "", expires: str = "2h", job: str = JOB
) -> Path:
    return write_manifest(
        tmp_path / "m.yml",
        f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  endpoint_url: {endpoint}
  expires_in: {expires}
{extra}jobs:
{job}""",
    )


@pytest.fixture
def seeded(moto_endpoint: str) -> Any:
    """moto with the bucket seeded (the seeding client has its own keys, not the run's)."""
    with fresh_s3(moto_endpoint) as s3:
        s3.bucket(BUCKET, FILES)
        yield s3


def fetch_object(s3: S3, key: str) -> bytes:
    """An object's bytes as stored, read with the seeding client."""
    with s3.client.get_object(Bucket=BUCKET, Key=key)["Body"] as body:
        data: bytes = body.read()
    return data


def rows(bundle: Path) -> list[dict[str, str]]:
    with (bundle / "links.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def x_amz_expires(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


def test_gateway_reports_the_expiry_of_refreshable_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The container provider's expiry, source and session token reach the Credentials."""

    async def load() -> Credentials:
        async with S3Gateway() as gateway:
            return await gateway.credentials()

    with container_credentials(monkeypatch) as expiry:
        found = asyncio.run(load())
    assert (found.access_key_id, found.session_token) == (SESSION_KEY, SESSION_TOKEN)
    assert found.expiry == expiry
    assert found.method == "container-role"
    assert SESSION_TOKEN not in repr(found)


def test_fail_is_the_default_and_issues_nothing(
    seeded: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2h links on 1h credentials: exit 3 naming the source and expiry; nothing written."""
    out = tmp_path / "out"
    with container_credentials(monkeypatch) as expiry:
        result = invoke("run", str(manifest(tmp_path, seeded.endpoint)), "--out", str(out))
    assert result.exit_code == 3
    assert "source container-role" in result.stderr
    assert f"expire at {expiry:%Y-%m-%dT%H:%M:%SZ}" in result.stderr
    assert "job q3, recipient globex" in result.stderr
    assert not out.exists()
    assert result.stdout == ""


def test_clamp_ends_links_with_the_credentials_and_records_it(
    seeded: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """clamp: every link ends by the credential expiry, as its row, header and audit say."""
    path = manifest(tmp_path, seeded.endpoint, "  on_short_credentials: clamp\n")
    with container_credentials(monkeypatch) as expiry:
        run_dir = run_dir_of(invoke("run", str(path), "--out", str(tmp_path / "out")))
    bundle = run_dir / "q3" / "globex"
    found = rows(bundle)
    assert [fetch(r["url"]) for r in found] == [FILES[r["key"]] for r in found]
    for row in found:
        _, url_end = signed_window(row["url"])
        # The URL itself stops by the credential expiry, within the signer's 1 s rounding.
        assert expiry - timedelta(seconds=2) < url_end <= expiry
        assert parse_iso(row["expires_at"]) == url_end
        assert x_amz_expires(row["url"]) < 7200
    header = json.loads((bundle / "links.json").read_text())["header"]
    assert header["clamped_to"] == f"{expiry:%Y-%m-%dT%H:%M:%SZ}"
    assert header["on_short_credentials"] == "clamp"
    assert header["expiry"] == {"expires_in": 7200}
    assert header["credentials"] == {
        "source": "container-role",
        "kind": "session",
        "expires_at": f"{expiry:%Y-%m-%dT%H:%M:%SZ}",
    }
    events = {e["event"]: e for e in audit_events(run_dir)}
    assert events["links_clamped"]["clamped_to"] == header["clamped_to"]
    assert events["links_outlive_credentials"]["policy"] == "clamp"
    assert events["credentials_loaded"]["kind"] == "session"
    assert SESSION_TOKEN not in (run_dir / "audit.jsonl").read_text()


def test_warn_keeps_the_links_but_states_when_they_really_die(
    seeded: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """warn: links keep their 2h signature; each row's expires_at is the credential expiry."""
    path = manifest(tmp_path, seeded.endpoint, "  on_short_credentials: warn\n")
    with container_credentials(monkeypatch) as expiry:
        result = invoke("run", str(path), "--out", str(tmp_path / "out"))
    run_dir = run_dir_of(result)
    found = rows(run_dir / "q3" / "globex")
    assert len(found) == len(FILES)
    for row in found:
        assert x_amz_expires(row["url"]) == 7200
        assert parse_iso(row["expires_at"]) == expiry
    assert "links_outlive_credentials" in result.stderr
    header = json.loads((run_dir / "q3" / "globex" / "links.json").read_text())["header"]
    assert header["clamped_to"] is None
    assert header["expires_at"] == f"{expiry:%Y-%m-%dT%H:%M:%SZ}"


def test_links_within_the_credentials_are_left_alone(
    seeded: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30m links on 1h credentials: full 30m, no warning, nothing clamped."""
    path = manifest(tmp_path, seeded.endpoint, expires="30m")
    with container_credentials(monkeypatch):
        result = invoke("run", str(path), "--out", str(tmp_path / "out"))
    run_dir = run_dir_of(result)
    for row in rows(run_dir / "q3" / "globex"):
        _, url_end = signed_window(row["url"])
        assert x_amz_expires(row["url"]) == 1800
        assert parse_iso(row["expires_at"]) == url_end
    names = {e["event"] for e in audit_events(run_dir)}
    assert "links_outlive_credentials" not in names and "links_clamped" not in names


def test_session_token_without_expiry_is_warned_about(
    seeded: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session token from the environment has no known expiry: the run says so, and goes on."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SESSION_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "temporary/secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    result = invoke("run", str(manifest(tmp_path, seeded.endpoint)), "--out", str(tmp_path / "o"))
    run_dir = run_dir_of(result)
    [event] = [e for e in audit_events(run_dir) if e["event"] == "credentials_expiry_unknown"]
    assert event["source"] == "env"
    assert SESSION_TOKEN not in result.stderr


NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OBJ = ObjectRef("bkt", "k.txt", 1, "e", NOW)


def _presigner(skew: int = 0, calls: list[int] | None = None) -> Any:
    """Signs at NOW + skew seconds, as a presigner whose second ticked after the clock read."""

    def presign(method: str, bucket: str, key: str, expires: int, params: Any) -> str:
        if calls is not None:
            calls.append(expires)
        stamp = (NOW + timedelta(seconds=skew)).strftime("%Y%m%dT%H%M%SZ")
        return f"https://h/{key}?X-Amz-Date={stamp}&X-Amz-Expires={expires}&X-Amz-Signature=s"

    return presign


def _limit(policy: Any, after: timedelta = timedelta(hours=1)) -> CredentialLimit:
    return CredentialLimit(NOW + after, "container-role", policy)


def test_clamp_re_signs_when_the_presigner_second_ticks() -> None:
    """A link stamped a second late would outlive the bound by a second: it is signed again."""
    calls: list[int] = []
    signer = Signer(
        _presigner(skew=1, calls=calls),
        job="j",
        expiry=Expiry(seconds=7200),
        clock=lambda: NOW,
        limit=_limit("clamp"),
    )
    [link] = signer.sign_get("r", [OBJ])
    assert calls == [3600, 3599]
    assert link.expires_at == NOW + timedelta(hours=1)
    assert signer.clamped_to == NOW + timedelta(hours=1)


def test_fixed_moment_is_clamped_to_the_credentials_too() -> None:
    """expires_at later than the credentials: clamp ends the link with the credentials."""
    signer = Signer(
        _presigner(),
        job="j",
        expiry=Expiry(at=NOW + timedelta(hours=5)),
        clock=lambda: NOW,
        limit=_limit("clamp"),
    )
    [link] = signer.sign_get("r", [OBJ])
    assert link.expires_at == NOW + timedelta(hours=1)


def test_fail_refuses_at_signing_time_too() -> None:
    """A run that started in time but signs past the point: the signer refuses (exit 3)."""
    signer = Signer(
        _presigner(), job="j", expiry=Expiry(seconds=7200), clock=lambda: NOW, limit=_limit("fail")
    )
    with pytest.raises(CredentialsError, match="container-role") as info:
        signer.sign_get("r", [OBJ])
    assert info.value.exit_code == 3


def test_warn_sets_expires_at_to_the_credential_expiry() -> None:
    """warn: the URL keeps its 2h, the link's expires_at is when the credentials end."""
    calls: list[int] = []
    signer = Signer(
        _presigner(calls=calls),
        job="j",
        expiry=Expiry(seconds=7200),
        clock=lambda: NOW,
        limit=_limit("warn"),
    )
    [link] = signer.sign_get("r", [OBJ])
    assert calls == [7200]
    assert link.expires_at == NOW + timedelta(hours=1)
    assert signer.clamped_to is None


def test_clamp_with_credentials_already_expired_is_exit_3() -> None:
    """Credentials that ended mid-run cannot sign a working link, whatever the policy."""
    signer = Signer(
        _presigner(),
        job="j",
        expiry=Expiry(seconds=60),
        clock=lambda: NOW,
        limit=_limit("clamp", after=timedelta(seconds=-5)),
    )
    with pytest.raises(CredentialsError, match="expired"):
        signer.sign_get("r", [OBJ])


def test_the_seven_day_cap_is_checked_on_the_signed_url() -> None:
    """A presigner that ignored the requested validity cannot slip a 30-day URL through."""

    def generous(method: str, bucket: str, key: str, expires: int, params: Any) -> str:
        return f"https://h/{key}?X-Amz-Date=20261128T120000Z&X-Amz-Expires=2592000"

    signer = Signer(generous, job="j", expiry=Expiry(seconds=60), clock=lambda: NOW)
    with pytest.raises(SigningError, match="604800"):
        signer.sign_get("r", [OBJ])


@pytest.mark.parametrize("policy", ["fail", "clamp", "warn"])
def test_expired_credentials_are_refused_before_signing(policy: Any) -> None:
    """Credentials whose expiry has passed: exit 3 under every policy, naming source and time."""
    creds = Credentials("ASIA", "s", "tok", expiry=NOW - timedelta(minutes=1), method="sso")
    with pytest.raises(CredentialsError, match="from sso expired at 2026-11-28T11:59:00Z"):
        check_lifetimes(creds, [("j", "r", Expiry(seconds=60), policy)], NOW)


def test_lifetime_check_returns_the_clamp_and_warn_cases() -> None:
    """Only recipients whose links would outlive the credentials are returned."""
    creds = Credentials("ASIA", "s", "tok", expiry=NOW + timedelta(hours=1), method="sso")
    found = check_lifetimes(
        creds,
        [
            ("j", "short", Expiry(seconds=600), "fail"),
            ("j", "long", Expiry(seconds=7200), "clamp"),
            ("j", "fixed", Expiry(at=NOW + timedelta(hours=3)), "warn"),
        ],
        NOW,
    )
    assert [(o.recipient, o.policy, o.links_end) for o in found] == [
        ("long", "clamp", NOW + timedelta(hours=2)),
        ("fixed", "warn", NOW + timedelta(hours=3)),
    ]
    long_term = Credentials("AKIA", "s")
    assert check_lifetimes(long_term, [("j", "r", Expiry(seconds=7200), "fail")], NOW) == []


# --- upload slots -------------------------------------------------------------------------


UPLOAD_JOB = """\
  - name: q3
    prefixes: [q3/]
    upload:
      prefix: "inbox/{recipient.id}/"
      max_size: 1KB
      expires_in: 24h
    recipients:
      - id: globex
        upload: {keys: [signed.pdf]}
      - id: initech
        upload: {content_types: [application/pdf]}
"""


def upload_manifest(tmp_path: Path, endpoint: str, policy: str | None) -> Path:
    """30m links (within 2h credentials) and 24h upload slots: a PUT slot and a POST slot."""
    setting = f"  on_short_credentials: {policy}\n" if policy else ""
    return manifest(tmp_path, endpoint, setting, "30m", UPLOAD_JOB)


def uploads_of(run_dir: Path, recipient: str) -> list[dict[str, Any]]:
    """The bundle's upload rows from links.json, after checking uploads.csv says the same."""
    bundle = run_dir / "q3" / recipient
    found: list[dict[str, Any]] = json.loads((bundle / "links.json").read_text())["uploads"]
    with (bundle / "uploads.csv").open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [r["expires_at"] for r in table] == [u["expires_at"] for u in found]
    return found


def url_end(upload: dict[str, Any]) -> datetime:
    """When S3 stops honouring the upload: the PUT URL's window or the POST policy's end."""
    if upload["method"] == "PUT":
        return signed_window(upload["url"])[1]
    return parse_iso(read_policy(upload["fields"])["expiration"][:19] + "Z")


def test_upload_slots_outliving_the_credentials_fail_the_run(
    seeded: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """24h slots on 2h credentials under fail (the default): exit 3, nothing written."""
    out = tmp_path / "out"
    path = upload_manifest(tmp_path, seeded.endpoint, None)
    with container_credentials(monkeypatch, timedelta(hours=2)) as expiry:
        result = invoke("run", str(path), "--out", str(out))
    assert result.exit_code == 3
    assert "job q3, recipient globex (and 1 more recipients): upload slots would work" in (
        result.stderr
    )
    assert f"expire at {expiry:%Y-%m-%dT%H:%M:%SZ}" in result.stderr
    assert not out.exists()


def test_clamped_upload_slots_end_with_the_credentials(
    seeded: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """clamp: the PUT URL and the POST policy end by the credential expiry, as the rows say,
    and both still take an upload."""
    path = upload_manifest(tmp_path, seeded.endpoint, "clamp")
    with container_credentials(monkeypatch, timedelta(hours=2)) as expiry:
        run_dir = run_dir_of(invoke("run", str(path), "--out", str(tmp_path / "out")))
    issued = uploads_of(run_dir, "globex") + uploads_of(run_dir, "initech")
    assert [u["method"] for u in issued] == ["PUT", "POST"]
    for upload in issued:
        end = url_end(upload)
        # Within the signer's 1 s rounding, never past the credentials.
        assert expiry - timedelta(seconds=2) < end <= expiry
        assert parse_iso(upload["expires_at"]) == end
    put_url, form = issued[0], issued[1]
    assert x_amz_expires(put_url["url"]) < 7200
    assert put(put_url["url"], b"%PDF signed", put_url["headers"])[0] == 200
    assert post_form(form["url"], form["fields"], "back.pdf", b"%PDF back", "x/y")[0] == 204
    assert fetch_object(seeded, "inbox/globex/signed.pdf") == b"%PDF signed"
    assert fetch_object(seeded, "inbox/initech/back.pdf") == b"%PDF back"
    events = [e for e in audit_events(run_dir) if e["event"] == "uploads_outlive_credentials"]
    assert {(e["recipient"], e["policy"]) for e in events} == {
        ("globex", "clamp"),
        ("initech", "clamp"),
    }
    # The links (30m) fit the credentials: only the slots are clamped.
    assert (
        json.loads((run_dir / "q3" / "globex" / "links.json").read_text())["header"]["clamped_to"]
        is None
    )


def test_warned_upload_slots_keep_their_time_and_state_when_they_die(
    seeded: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """warn: the URL and policy keep their 24h, each row's expires_at is the credential expiry,
    and the warning is logged."""
    path = upload_manifest(tmp_path, seeded.endpoint, "warn")
    with container_credentials(monkeypatch, timedelta(hours=2)) as expiry:
        result = invoke("run", str(path), "--out", str(tmp_path / "out"))
    run_dir = run_dir_of(result)
    issued = uploads_of(run_dir, "globex") + uploads_of(run_dir, "initech")
    assert x_amz_expires(issued[0]["url"]) == 86400
    for upload in issued:
        assert url_end(upload) > expiry + timedelta(hours=21)
        assert parse_iso(upload["expires_at"]) == expiry
    assert "uploads_outlive_credentials" in result.stderr


@pytest.mark.parametrize(("policy", "status"), [(None, "FAIL"), ("clamp", "WARN")])
def test_doctor_reports_upload_slots_outliving_the_credentials(
    seeded: S3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    policy: str | None,
    status: str,
) -> None:
    """doctor: 24h slots on 2h credentials are a FAIL under fail, a WARN under clamp; the 30m
    links are fine."""
    path = upload_manifest(tmp_path, seeded.endpoint, policy)
    with container_credentials(monkeypatch, timedelta(hours=2)) as expiry:
        result = invoke("doctor", str(path), "--json")
    found = {(c["name"], c["subject"]): c for c in json.loads(result.stdout)["checks"]}
    assert found[("expiry", "q3")]["status"] == "OK"
    uploads = found[("uploads", "q3")]
    assert uploads["status"] == status
    assert uploads["message"].startswith(
        "upload slots live up to 1d, within the SigV4 limit of 7d, but the credentials expire"
        f" at {expiry:%Y-%m-%dT%H:%M:%SZ}"
    )
    assert result.exit_code == (1 if status == "FAIL" else 0)


def _renewed_uploads(bundle: Path) -> list[dict[str, Any]]:
    [renewed] = sorted(bundle.glob("links.renewed-*.json"))
    found: list[dict[str, Any]] = json.loads(renewed.read_text())["uploads"]
    return found


def test_renewed_upload_slots_are_held_to_the_policy_again(
    seeded: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewal re-issues due slots under the bundle's on_short_credentials: with clamp and
    1h credentials, the renewed PUT URL and POST policy end by those credentials and still take
    an upload; with fail, renew is exit 3 and writes nothing."""
    path = upload_manifest(tmp_path, seeded.endpoint, "clamp")
    with container_credentials(monkeypatch, timedelta(hours=30)):
        run_dir = run_dir_of(invoke("run", str(path), "--out", str(tmp_path / "out")))
    globex, initech = run_dir / "q3" / "globex", run_dir / "q3" / "initech"
    with container_credentials(monkeypatch, timedelta(hours=1)) as expiry:
        result = invoke("renew", str(globex), str(initech), "--within", "25h")
    assert result.exit_code == 0, result.stderr
    issued = _renewed_uploads(globex) + _renewed_uploads(initech)
    assert [u["method"] for u in issued] == ["PUT", "POST"]
    for upload in issued:
        end = url_end(upload)
        assert expiry - timedelta(seconds=2) < end <= expiry
        assert parse_iso(upload["expires_at"]) == end
    put_url, form = issued
    assert put(put_url["url"], b"%PDF again", put_url["headers"])[0] == 200
    assert post_form(form["url"], form["fields"], "again.pdf", b"%PDF 2", "x/y")[0] == 204
    assert fetch_object(seeded, "inbox/globex/signed.pdf") == b"%PDF again"
    assert fetch_object(seeded, "inbox/initech/again.pdf") == b"%PDF 2"

    (tmp_path / "fail").mkdir()
    failing = upload_manifest(tmp_path / "fail", seeded.endpoint, None)
    with container_credentials(monkeypatch, timedelta(hours=30)):
        run_dir = run_dir_of(invoke("run", str(failing), "--out", str(tmp_path / "out2")))
    bundle = run_dir / "q3" / "globex"
    before = sorted(p.name for p in bundle.iterdir())
    with container_credentials(monkeypatch, timedelta(hours=1)):
        result = invoke("renew", str(bundle), "--within", "25h")
    assert result.exit_code == 3
    assert "upload slots would work" in result.stderr
    assert sorted(p.name for p in bundle.iterdir()) == before
