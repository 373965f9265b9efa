"""The refusals S3 makes on upload links, shown against a stand-in that enforces them.

moto checks no signature, expiry or POST policy, so these tests send the links sharebatch
issues to ``s3_gatekeeper``, a small server applying the rules AWS documents for presigned
PUTs and POST policies (see its docstring for exactly which). The first test calibrates it:
what botocore signs passes, and the refusals S3 is documented to make are made.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from sharebatch.manifest.load import load_manifest
from sharebatch.models import Credentials, UploadLink
from sharebatch.run.plan import build_plan
from sharebatch.run.slots import Uploads, curl_command, sample_file
from sharebatch.s3.gateway import S3Gateway
from tests.support.http_upload import post_form, put
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, write_manifest
from tests.support.s3_gatekeeper import Gatekeeper, gatekeeper

BUCKET = "acme-reports"


@pytest.fixture
def gate() -> Iterator[Gatekeeper]:
    """The enforcing stand-in, knowing the tests' access key."""
    with gatekeeper({ACCESS_KEY: SECRET_KEY}, REGION) as state:
        yield state


def issue(
    gate: Gatekeeper, tmp_path: Path, credentials: Credentials | None = None
) -> dict[str, list[UploadLink]]:
    """Load a manifest pointing at the stand-in and sign its slots as a run would."""
    text = f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: {REGION}
  endpoint_url: {gate.endpoint}
  expires_in: 1h
jobs:
  - name: q3
    prefixes: [reports/]
    upload: {{prefix: "inbox/{{recipient.id}}/", max_size: 100, expires_in: 30m}}
    recipients:
      - id: globex
        upload: {{content_types: [application/pdf], keys: [contract.pdf]}}
      - id: initech
        upload: {{content_types: [application/pdf, text/csv]}}
      - id: hooli
"""
    plan = build_plan(load_manifest(write_manifest(tmp_path / "m.yml", text)))
    creds = credentials or Credentials(ACCESS_KEY, SECRET_KEY)

    async def sign() -> dict[str, list[UploadLink]]:
        async with S3Gateway() as gateway:
            uploads = await Uploads.prepare(plan, gateway, creds)
            return {route.recipient: uploads.issue(route) for route in plan.routes}

    return asyncio.run(sign())


def test_the_stand_in_passes_botocore_and_refuses_as_s3_documents(gate: Gatekeeper) -> None:
    """Calibration: botocore's own PUT URL and POST form pass; an uncovered field is refused."""
    client = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=gate.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(signature_version="s3v4", request_checksum_calculation="when_required"),
    )
    try:
        url = client.generate_presigned_url(
            "put_object", Params={"Bucket": BUCKET, "Key": "k", "ContentType": "text/plain"}
        )
        form = client.generate_presigned_post(BUCKET, "up/${filename}", ExpiresIn=60)
    finally:
        client.close()
    assert put(url, b"put", {"Content-Type": "text/plain"})[0] == 200
    assert post_form(form["url"], form["fields"], "a.txt", b"post")[0] == 204
    assert gate.objects[(BUCKET, "up/a.txt")] == (b"post", None)
    status, body = post_form(form["url"], {**form["fields"], "acl": "public-read"}, "b", b"x")
    assert (status, b"Extra input fields: acl" in body) == (403, True)


def test_a_post_form_within_its_limits_is_accepted(gate: Gatekeeper, tmp_path: Path) -> None:
    """Each POST form takes a file of an allowed type and size under the slot's folder."""
    links = issue(gate, tmp_path)
    for link in links["initech"]:
        name = sample_file(link.content_type)
        assert post_form(link.url, link.fields, name, b"ok" * 50)[0] == 204
        assert gate.objects[(BUCKET, f"inbox/initech/{name}")] == (b"ok" * 50, link.content_type)
    [open_form] = links["hooli"]
    fields = {**open_form.fields, "Content-Type": "image/png"}  # any type: allowed by condition
    assert post_form(open_form.url, fields, "scan.png", b"png")[0] == 204


def test_a_post_over_max_size_is_refused(gate: Gatekeeper, tmp_path: Path) -> None:
    """content-length-range: 101 bytes into a 100-byte slot is EntityTooLarge."""
    link = issue(gate, tmp_path)["initech"][0]
    status, body = post_form(link.url, link.fields, "big.pdf", b"x" * 101)
    assert (status, b"<Code>EntityTooLarge</Code>" in body) == (400, True)
    assert gate.objects == {}


def test_a_post_of_another_type_is_refused(gate: Gatekeeper, tmp_path: Path) -> None:
    """The form's Content-Type is fixed by the policy: changing it fails the condition."""
    link = issue(gate, tmp_path)["initech"][0]
    fields = {**link.fields, "Content-Type": "text/html"}
    status, body = post_form(link.url, fields, "page.html", b"<script>")
    assert (status, b"Policy Condition failed" in body) == (403, True)
    assert b"Content-Type" in body


def test_a_post_outside_the_slot_folder_is_refused(gate: Gatekeeper, tmp_path: Path) -> None:
    """The key must start with the slot prefix: another recipient's folder is refused."""
    link = issue(gate, tmp_path)["initech"][0]
    for key in ("inbox/globex/contract.pdf", "reports/summary.pdf", "inbox/initech-x/a.pdf"):
        status, body = post_form(link.url, {**link.fields, "key": key}, "a.pdf", b"x")
        assert (status, b'"starts-with", "$key", "inbox/initech/"' in body) == (403, True)
    assert gate.objects == {}


def test_a_post_with_a_field_of_its_own_is_refused(gate: Gatekeeper, tmp_path: Path) -> None:
    """No field can be added (acl=public-read, metadata): each needs a policy condition."""
    link = issue(gate, tmp_path)["hooli"][0]
    for extra in ({"acl": "public-read"}, {"x-amz-meta-owner": "me"}):
        status, body = post_form(link.url, {**link.fields, **extra}, "a.pdf", b"x")
        assert (status, b"Extra input fields" in body) == (403, True)


def test_a_tampered_policy_is_refused(gate: Gatekeeper, tmp_path: Path) -> None:
    """A policy edited by the recipient (a bigger max_size) no longer matches its signature."""
    import base64
    import json

    link = issue(gate, tmp_path)["hooli"][0]
    policy = json.loads(base64.b64decode(link.fields["policy"]))
    policy["conditions"][0] = ["content-length-range", 0, 10**9]
    forged = base64.b64encode(json.dumps(policy).encode()).decode()
    status, body = post_form(link.url, {**link.fields, "policy": forged}, "a.pdf", b"x" * 200)
    assert (status, b"SignatureDoesNotMatch" in body) == (403, True)


def test_a_post_form_after_its_expiry_is_refused(gate: Gatekeeper, tmp_path: Path) -> None:
    """Once the policy's expiration (30 minutes here) has passed, the form is refused."""
    link = issue(gate, tmp_path)["hooli"][0]
    assert link.expires_at - link.signed_at == timedelta(minutes=30)
    gate.now = link.expires_at + timedelta(seconds=1)
    status, body = post_form(link.url, link.fields, "a.pdf", b"x")
    assert (status, b"Policy expired" in body) == (403, True)


def test_a_put_must_send_exactly_the_signed_content_type(gate: Gatekeeper, tmp_path: Path) -> None:
    """The signed type passes; another type, or none, is SignatureDoesNotMatch."""
    [link] = issue(gate, tmp_path)["globex"]
    assert link.headers == {"Content-Type": "application/pdf"}
    for headers in ({"Content-Type": "text/html"}, {"Content-Type": "application/x-evil"}):
        status, body = put(link.url, b"%PDF", headers)
        assert (status, b"SignatureDoesNotMatch" in body) == (403, True)
    assert put(link.url, b"%PDF", link.headers)[0] == 200
    assert gate.objects[(BUCKET, "inbox/globex/contract.pdf")] == (b"%PDF", "application/pdf")


def test_a_put_url_after_its_expiry_is_refused(gate: Gatekeeper, tmp_path: Path) -> None:
    """X-Amz-Date + X-Amz-Expires (30 minutes): after that the URL is refused."""
    [link] = issue(gate, tmp_path)["globex"]
    assert link.expires_at - link.signed_at == timedelta(minutes=30)
    gate.now = link.expires_at + timedelta(seconds=1)
    status, body = put(link.url, b"%PDF", link.headers)
    assert (status, b"Request has expired" in body) == (403, True)


def test_a_put_url_cannot_limit_the_size(gate: Gatekeeper, tmp_path: Path) -> None:
    """Documented limit: S3 takes any size (up to 5 GB) through a PUT URL; inbox flags it."""
    [link] = issue(gate, tmp_path)["globex"]
    assert put(link.url, b"x" * 1000, link.headers)[0] == 200


def test_forms_signed_with_a_session_token_cover_the_token_field(
    gate: Gatekeeper, tmp_path: Path
) -> None:
    """Temporary credentials add x-amz-security-token to the form, with its own condition."""
    creds = Credentials(ACCESS_KEY, SECRET_KEY, session_token="FwoGZXIvYXdzEJr//token")
    link = issue(gate, tmp_path, creds)["hooli"][0]
    assert link.fields["x-amz-security-token"] == "FwoGZXIvYXdzEJr//token"
    assert post_form(link.url, link.fields, "a.pdf", b"x")[0] == 204


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed here")
def test_the_curl_commands_pass_every_check(gate: Gatekeeper, tmp_path: Path) -> None:
    """The generated curl commands, run by a shell, satisfy the signature and policy checks."""
    links = issue(gate, tmp_path)
    work = tmp_path / "recipient"
    work.mkdir()
    for link in [*links["globex"], *links["initech"], *links["hooli"]]:
        name = (
            link.key.rsplit("/", 1)[1] if link.method == "PUT" else sample_file(link.content_type)
        )
        (work / name).write_bytes(b"from curl")
        done = subprocess.run(
            ["sh", "-c", curl_command(link)], cwd=work, capture_output=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(key for _, key in gate.objects) == [
        "inbox/globex/contract.pdf",
        "inbox/hooli/your-file",
        "inbox/initech/your-file.csv",
        "inbox/initech/your-file.pdf",
    ]
    oversized = work / "your-file.pdf"
    oversized.write_bytes(b"x" * 101)
    done = subprocess.run(
        ["sh", "-c", curl_command(links["initech"][0])], cwd=work, capture_output=True, check=False
    )
    assert done.returncode != 0 and b"EntityTooLarge" in done.stdout


@pytest.mark.parametrize(
    "extra",
    [
        {"x-amz-tagging": "sharebatch-scan=clean"},
        {"X-Amz-Tagging": "sharebatch-scan=clean&sharebatch-scan-etag=x"},
        {"x-amz-acl": "public-read"},
        {"x-amz-meta-owner": "me"},
    ],
)
def test_a_put_with_x_amz_headers_it_was_not_signed_for_is_refused(
    gate: Gatekeeper, tmp_path: Path, extra: dict[str, str]
) -> None:
    """S3 refuses x-amz-* headers not signed into a presigned PUT; so an uploader cannot
    send forged scan tags (x-amz-tagging) or an ACL with our slot URL. The same PUT without
    them, as our own uploads send it, passes."""
    [link] = issue(gate, tmp_path)["globex"]
    status, body = put(link.url, b"%PDF", {**link.headers, **extra})
    assert (status, b"headers present in the request which were not signed" in body) == (
        403,
        True,
    )
    assert gate.objects == {}
    assert put(link.url, b"%PDF", link.headers)[0] == 200
