"""Merging our statements into an existing bucket policy: every other statement kept in order,
ours replaced, a file that is no policy refused; and the result is what S3's API takes back
(moto's PutBucketPolicy accepts it and GetBucketPolicy returns it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sharebatch.errors import UsageError
from sharebatch.guardrails.document import bucket_policy, dumps, merged, parse_policy, read_policy
from tests.support.grants import BUCKET, grant, manifest
from tests.support.s3 import S3

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)

THEIRS: list[dict[str, Any]] = [
    {
        "Sid": "AllowAudit",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::1:root"},
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/audit/*",
    },
    {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:DeleteBucket",
        "Resource": f"arn:aws:s3:::{BUCKET}",
    },
]
OLD_OURS = {
    "Sid": "sharebatch-ip-000000000000",
    "Effect": "Deny",
    "Principal": "*",
    "Action": "s3:GetObject",
    "Resource": f"arn:aws:s3:::{BUCKET}/gone/*",
}


def ours() -> list[dict[str, Any]]:
    document = bucket_policy(manifest(grant("globex")), None, now=NOW).document
    return list(document["Statement"])


def test_merge_keeps_theirs_in_order_and_replaces_ours() -> None:
    """Their statements (one without a Sid) stay first, in order and unchanged; an old
    statement of ours that the manifest no longer makes is gone; Id is kept."""
    existing = {
        "Version": "2012-10-17",
        "Id": "acme",
        "Statement": [THEIRS[0], OLD_OURS, THEIRS[1]],
    }
    result = merged(parse_policy(json.dumps(existing), "x"), ours())
    assert result["Id"] == "acme"
    assert result["Statement"][:2] == THEIRS
    assert [s["Sid"] for s in result["Statement"][2:]] == [s["Sid"] for s in ours()]
    again = merged(parse_policy(json.dumps(result), "x"), ours())
    assert again == result


def test_get_bucket_policy_answer_and_single_statement_are_read() -> None:
    """The whole get-bucket-policy answer ({"Policy": "..."}) is unwrapped; a Statement given
    as one object is a one-statement list."""
    inner = {"Version": "2012-10-17", "Statement": THEIRS[0]}
    found = parse_policy(json.dumps({"Policy": json.dumps(inner)}), "answer.json")
    assert found["Statement"] == [THEIRS[0]]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "a JSON list"),
        ('{"Version": "2012-10-17"}', "no Statement"),
        ('{"Statement": ["x"]}', "Statement is not a list of objects"),
        ('{"Version": "2099-01-01", "Statement": []}', "unknown Version"),
    ],
)
def test_a_file_that_is_no_policy_is_refused(tmp_path: Path, text: str, why: str) -> None:
    """Anything but a policy document is a UsageError (exit 2) naming the file and why."""
    path = tmp_path / "current.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as raised:
        read_policy(path)
    assert raised.value.exit_code == 2
    assert str(raised.value).startswith(f"{path}: not a bucket policy: {why}")


def test_an_old_version_with_policy_variables_is_not_upgraded_silently() -> None:
    """Our statements need 2012-10-17; a 2008 document whose statements hold ${...} would
    change meaning under it, so the merge refuses rather than alter them."""
    old = {
        "Version": "2008-10-17",
        "Statement": [{**THEIRS[0], "Resource": f"arn:aws:s3:::{BUCKET}/${{aws:username}}/*"}],
    }
    with pytest.raises(UsageError, match="policy variables"):
        merged(parse_policy(json.dumps(old), "x"), ours())
    plain = merged(parse_policy(json.dumps({**old, "Statement": THEIRS}), "x"), ours())
    assert plain["Version"] == "2012-10-17" and plain["Statement"][:2] == THEIRS


def test_moto_takes_the_policy_and_gives_it_back(s3: S3) -> None:
    """The printed JSON goes into PutBucketPolicy as is and GetBucketPolicy returns the same
    document."""
    s3.bucket(BUCKET, {"reports/q3/a.pdf": b"a"})
    existing = {"Version": "2012-10-17", "Statement": THEIRS}
    text = dumps(merged(existing, ours()))
    s3.client.put_bucket_policy(Bucket=BUCKET, Policy=text)
    back = s3.client.get_bucket_policy(Bucket=BUCKET)["Policy"]
    assert json.loads(back) == json.loads(text)
