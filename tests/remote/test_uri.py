"""``s3://`` OUT values: parsed into bucket and folder prefix, or refused saying why."""

from __future__ import annotations

import pytest

from sharebatch.errors import UsageError
from sharebatch.remote.uri import S3Uri, is_remote, parse_uri


@pytest.mark.parametrize(
    ("value", "bucket", "prefix"),
    [
        ("s3://runs-bucket", "runs-bucket", ""),
        ("s3://runs-bucket/", "runs-bucket", ""),
        ("s3://runs-bucket/sharebatch", "runs-bucket", "sharebatch/"),
        ("s3://runs-bucket/a/b/", "runs-bucket", "a/b/"),
    ],
)
def test_good_uris_become_a_bucket_and_a_folder_prefix(
    value: str, bucket: str, prefix: str
) -> None:
    """The prefix always ends with '/', so keys under it are a folder's."""
    assert parse_uri(value) == S3Uri(bucket, prefix)
    assert str(parse_uri(value)) == f"s3://{bucket}/{prefix}"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("s3:/runs-bucket/x/", "not an s3:// URI"),
        ("S3://runs-bucket/x/", "not an s3:// URI"),
        ("s3://", "bucket name"),
        ("s3:///x/", "bucket name"),
        ("s3://Runs_Bucket/x/", "bucket name"),
        ("s3://runs-bucket//x/", "empty, '.' or '..' segment"),
        ("s3://runs-bucket/a/../b/", "empty, '.' or '..' segment"),
        ("s3://runs-bucket/a/./b/", "empty, '.' or '..' segment"),
        ("s3://runs-bucket/a\\b/", "backslash"),
        ("s3://runs-bucket/a\nb/", "prefix"),
        ("s3://runs-bucket/" + "a" * 300 + "/", "over 256 bytes"),
    ],
)
def test_bad_uris_are_usage_errors_naming_the_problem(value: str, said: str) -> None:
    """Each malformed value is exit 2 with what is wrong, never a local folder named 's3:'."""
    assert is_remote(value)
    with pytest.raises(UsageError) as caught:
        parse_uri(value)
    assert said in str(caught.value)
    assert caught.value.exit_code == 2


def test_local_paths_are_not_remote() -> None:
    """Only values starting with s3: are meant for S3; folders keep working as before."""
    assert not is_remote("bundles")
    assert not is_remote("/srv/s3/bundles")
    assert not is_remote(None)


def test_child_adds_checked_segments() -> None:
    """A run id becomes a sub-folder; one that would climb out is refused."""
    assert parse_uri("s3://runs-bucket/p/").child("run-1") == S3Uri("runs-bucket", "p/run-1/")
    with pytest.raises(UsageError):
        parse_uri("s3://runs-bucket/p/").child("../other")
