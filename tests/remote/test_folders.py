"""Publishing a local folder to S3 (moto), fetching it back, and telling a finished one.

Each request goes to moto through the fault proxy where a test needs to see requests in
order or refuse some: a bucket policy demanding an encryption header is modelled as the
proxy's 403 for a PUT without ``x-amz-server-side-encryption``.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from sharebatch.errors import LinkError, S3WriteError, UsageError
from sharebatch.models import BucketTarget, Connection
from sharebatch.remote.folders import fetch_folder, holds_any, is_complete, publish_folder
from sharebatch.remote.uri import parse_uri
from sharebatch.s3.gateway import S3Gateway
from sharebatch.s3.upload import Encryption
from tests.support.faultproxy import fault_proxy
from tests.support.s3 import S3

BUCKET = "runs-bucket"
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BIG = 9 * (1 << 20) + 123  # over the 8 MiB threshold: a multipart upload of two parts


def _folder(root: Path, *, big: bool = False) -> Path:
    """A run-like folder: nested bundles, an audit log, a summary."""
    files = {
        "audit.jsonl": b'{"event": "run_started"}\n',
        "index.html": b"<!doctype html><title>run</title>\n",
        "q3/globex/links.json": b'{"links": []}\n',
        "q3/globex/links.csv": "key,url\nr\u00e9sum\u00e9.pdf,x\n".encode(),
        "q3/initech/links.json": b'{"links": [1]}\n',
        "summary.json": b'{"status": "ok"}\n',
    }
    if big:
        files["q3/globex/big.bin"] = os.urandom(BIG)
    for rel, body in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_publish_then_fetch_gives_the_same_bytes_private_on_disk(s3: S3, tmp_path: Path) -> None:
    """Every file, a multipart one included, comes back byte for byte; fetched files are
    0600 and folders 0700; the published folder reads as complete."""
    s3.bucket(BUCKET, {})
    local = _folder(tmp_path / "run", big=True)
    connection = Connection(endpoint_url=s3.endpoint)
    published = publish_folder(local, f"s3://{BUCKET}/runs/r1/", connection=connection)
    assert (published.files, published.complete) == (7, True)
    assert published.encryption["algorithm"] == "AES256"
    assert is_complete(f"s3://{BUCKET}/runs/r1/", connection=connection)

    fetched = fetch_folder(f"s3://{BUCKET}/runs/r1/", tmp_path / "back", connection=connection)
    assert fetched.files == 7
    assert _tree(tmp_path / "back") == _tree(local)
    for path in (tmp_path / "back").rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
    big = s3.client.head_object(Bucket=BUCKET, Key="runs/r1/q3/globex/big.bin")
    assert big["ETag"].strip('"').endswith("-2")  # two parts: streamed, not one body


def test_summary_is_the_last_request_and_every_object_is_private(s3: S3, tmp_path: Path) -> None:
    """The marker is uploaded after every other file; no object grants anyone but the
    owner (GetObjectAcl), and each has the content type a browser expects."""
    s3.bucket(BUCKET, {})
    local = _folder(tmp_path / "run")
    with fault_proxy(s3.endpoint) as proxy:
        publish_folder(local, f"s3://{BUCKET}/p/", connection=Connection(endpoint_url=proxy.url))
        puts = [seen.path for seen in proxy.seen if seen.method == "PUT"]
    assert puts[-1] == f"/{BUCKET}/p/summary.json"
    assert len(puts) == 6
    listed = s3.client.list_objects_v2(Bucket=BUCKET, Prefix="p/")["Contents"]
    assert len(listed) == 6
    owner = s3.client.get_object_acl(Bucket=BUCKET, Key="p/summary.json")["Owner"]["ID"]
    for found in listed:
        acl = s3.client.get_object_acl(Bucket=BUCKET, Key=found["Key"])
        assert [(g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"]] == [
            (owner, "FULL_CONTROL")
        ], found["Key"]
    head = s3.client.head_object(Bucket=BUCKET, Key="p/q3/globex/links.csv")
    assert head["ContentType"] == "text/csv; charset=utf-8"


def test_a_kms_bucket_gets_kms_headers_a_policy_demanding_them_is_met(
    s3: S3, tmp_path: Path
) -> None:
    """A bucket whose default is SSE-KMS: each object is stored with that key, and each PUT
    says so itself (a PUT without the header is refused here, as such a policy does)."""
    s3.bucket(BUCKET, {})
    s3.client.put_bucket_encryption(
        Bucket=BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": KMS_KEY,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    local = _folder(tmp_path / "run", big=True)
    with fault_proxy(s3.endpoint) as proxy:
        # PutObject and CreateMultipartUpload take the header; UploadPart (a PUT naming its
        # uploadId) and CompleteMultipartUpload do not, the upload's encryption set at its start.
        header = "x-amz-server-side-encryption"
        proxy.add(
            "denied", method="PUT", missing_header=header, unless_query="uploadId", times=None
        )
        proxy.add("denied", method="POST", query="uploads", missing_header=header, times=None)
        # The model bites: a plain PUT without the header is refused.
        plain = fault_free_put(proxy.url)
        assert plain == "AccessDenied"
        assert fault_free_post(proxy.url) == "AccessDenied"
        published = publish_folder(
            local, f"s3://{BUCKET}/kms/", connection=Connection(endpoint_url=proxy.url)
        )
    assert published.encryption == {
        "algorithm": "aws:kms",
        "kms_key_id": KMS_KEY,
        "bucket_key": True,
        "source": "bucket",
    }
    for found in s3.client.list_objects_v2(Bucket=BUCKET, Prefix="kms/")["Contents"]:
        head = s3.client.head_object(Bucket=BUCKET, Key=found["Key"])
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KMS_KEY)


def fault_free_put(endpoint: str) -> str | None:
    """A PutObject without any encryption header through ``endpoint``: its error code."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1")
    try:
        client.put_object(Bucket=BUCKET, Key="plain/x", Body=b"x")
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    finally:
        client.close()
    return None


def fault_free_post(endpoint: str) -> str | None:
    """A CreateMultipartUpload without any encryption header: its error code."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1")
    try:
        client.create_multipart_upload(Bucket=BUCKET, Key="plain/y")
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    finally:
        client.close()
    return None


def test_an_upload_refused_midway_leaves_no_summary(s3: S3, tmp_path: Path) -> None:
    """One file refused (after others went): S3WriteError naming its key, and no
    summary.json, so the folder never reads as complete."""
    s3.bucket(BUCKET, {})
    local = _folder(tmp_path / "run")
    with fault_proxy(s3.endpoint) as proxy:
        proxy.add("denied", path=f"/{BUCKET}/half/q3/initech/", times=None)
        with pytest.raises(S3WriteError) as caught:
            publish_folder(
                local, f"s3://{BUCKET}/half/", connection=Connection(endpoint_url=proxy.url)
            )
    assert "q3/initech/links.json" in str(caught.value)
    keys = [o["Key"] for o in s3.client.list_objects_v2(Bucket=BUCKET, Prefix="half/")["Contents"]]
    assert "half/summary.json" not in keys
    assert "half/audit.jsonl" in keys  # a half-written folder, recognisable as such
    assert not is_complete(f"s3://{BUCKET}/half/", connection=Connection(endpoint_url=s3.endpoint))


def test_an_occupied_prefix_is_refused_and_the_marker_is_a_conditional_write(
    s3: S3, tmp_path: Path
) -> None:
    """A second publish to the same folder is a usage error with nothing uploaded; the
    marker's own PUT carries If-None-Match: *, so a writer racing past the check loses."""
    s3.bucket(BUCKET, {})
    connection = Connection(endpoint_url=s3.endpoint)
    local = _folder(tmp_path / "run")
    publish_folder(local, f"s3://{BUCKET}/once/", connection=connection)
    assert holds_any(f"s3://{BUCKET}/once/", connection=connection)
    with pytest.raises(UsageError, match="already holds objects"):
        publish_folder(local, f"s3://{BUCKET}/once/", connection=connection)

    async def again() -> None:
        async with S3Gateway(connection) as gateway:
            await gateway.uploads.upload_file(
                BucketTarget(BUCKET, None, s3.endpoint),
                "once/summary.json",
                local / "summary.json",
                content_type="application/json",
                encryption=Encryption("AES256"),
                if_none_match=True,
            )

    with pytest.raises(S3WriteError, match="PreconditionFailed"):
        asyncio.run(again())


@pytest.mark.parametrize(
    "hostile",
    [
        "p/../escape.txt",
        "p/a/../../escape.txt",
        "p//etc/passwd",
        "p/./x",
        "p/a\\..\\..\\x",
        "p/tab\there",
        "p/folder-marker/",
    ],
)
def test_fetch_refuses_keys_that_would_escape_and_writes_nothing(
    s3: S3, tmp_path: Path, hostile: str
) -> None:
    """Any key with '..', '.', an empty segment, a backslash or a control character
    refuses the whole fetch before a byte is written (exit 2)."""
    s3.bucket(BUCKET, {"p/good.txt": b"ok", hostile: b"evil"})
    dest = tmp_path / "fetched"
    with pytest.raises(LinkError, match="refusing to fetch") as caught:
        fetch_folder(f"s3://{BUCKET}/p/", dest, connection=Connection(endpoint_url=s3.endpoint))
    assert caught.value.exit_code == 2
    assert not dest.exists()
    assert not (tmp_path / "escape.txt").exists()


def test_fetch_refuses_a_key_that_is_both_file_and_folder(s3: S3, tmp_path: Path) -> None:
    """'p/a' and 'p/a/b' cannot both be written: refused whole, nothing written."""
    s3.bucket(BUCKET, {"p/a": b"file", "p/a/b": b"inside"})
    with pytest.raises(LinkError, match="both a file and a folder"):
        fetch_folder(
            f"s3://{BUCKET}/p/", tmp_path / "f", connection=Connection(endpoint_url=s3.endpoint)
        )
    assert not (tmp_path / "f").exists()


def test_fetch_into_a_folder_holding_files_is_refused(s3: S3, tmp_path: Path) -> None:
    """Fetched files never mix with (or overwrite) what a folder already holds."""
    s3.bucket(BUCKET, {"p/a.txt": b"a"})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "a.txt").write_bytes(b"mine")
    with pytest.raises(UsageError, match="not a new or empty folder"):
        fetch_folder(
            f"s3://{BUCKET}/p/", tmp_path / "busy", connection=Connection(endpoint_url=s3.endpoint)
        )
    assert (tmp_path / "busy" / "a.txt").read_bytes() == b"mine"


def test_parse_uri_is_what_every_function_takes(s3: S3) -> None:
    """A string URI is parsed by the same rules as --out: a bad one is exit 2."""
    with pytest.raises(UsageError):
        is_complete("s3://runs-bucket/a//b/", connection=Connection(endpoint_url=s3.endpoint))
    assert parse_uri("s3://runs-bucket/a").prefix == "a/"


def test_a_republish_removes_the_old_marker_first(s3: S3, tmp_path: Path) -> None:
    """Without exclusive (a shard re-run), the old summary.json goes before any file is
    replaced: a republish that fails midway leaves the folder unfinished, not complete with
    a mix of old and new files; one that succeeds is complete with the new bytes."""
    s3.bucket(BUCKET, {})
    connection = Connection(endpoint_url=s3.endpoint)
    first = _folder(tmp_path / "first")
    publish_folder(first, f"s3://{BUCKET}/shard/", connection=connection)
    second = _folder(tmp_path / "second")
    (second / "summary.json").write_bytes(b'{"status": "ok", "attempt": 2}\n')
    with fault_proxy(s3.endpoint) as proxy:
        proxy.add("denied", path=f"/{BUCKET}/shard/q3/initech/", times=None)
        with pytest.raises(S3WriteError):
            publish_folder(
                second,
                f"s3://{BUCKET}/shard/",
                connection=Connection(endpoint_url=proxy.url),
                exclusive=False,
            )
    assert not is_complete(f"s3://{BUCKET}/shard/", connection=connection)
    publish_folder(second, f"s3://{BUCKET}/shard/", connection=connection, exclusive=False)
    assert is_complete(f"s3://{BUCKET}/shard/", connection=connection)
    body = s3.client.get_object(Bucket=BUCKET, Key="shard/summary.json")["Body"].read()
    assert body == b'{"status": "ok", "attempt": 2}\n'
