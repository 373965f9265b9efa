"""Merging our statements into an existing bucket policy: every other statement kept in order,
this manifest's scope replaced and other manifests' scopes kept, the bucket-wide age limit
never lowered without --lower-age, a file that is no policy refused; and the result is what
S3's API takes back (moto's PutBucketPolicy accepts it and GetBucketPolicy returns it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sharebatch.errors import UsageError
from sharebatch.guardrails.document import bucket_policy, dumps, merged, parse_policy, read_policy
from sharebatch.guardrails.live import findings
from sharebatch.guardrails.policy import intent, statements
from sharebatch.manifest.load import Manifest
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
    "Sid": "sharebatch-q3-ip-000000000000",
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
    statement of this manifest's scope that it no longer makes is gone; Id is kept; merging
    again changes nothing."""
    existing = {
        "Version": "2012-10-17",
        "Id": "acme",
        "Statement": [THEIRS[0], OLD_OURS, THEIRS[1]],
    }
    result = merged(parse_policy(json.dumps(existing), "x"), ours(), scope="q3")
    assert result.notes == ()
    document = result.document
    assert document["Id"] == "acme"
    assert document["Statement"][:2] == THEIRS
    assert [s["Sid"] for s in document["Statement"][2:]] == [s["Sid"] for s in ours()]
    again = merged(parse_policy(json.dumps(document), "x"), ours(), scope="q3")
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
        merged(parse_policy(json.dumps(old), "x"), ours(), scope="q3")
    plain = merged(parse_policy(json.dumps({**old, "Statement": THEIRS}), "x"), ours(), scope="q3")
    assert plain.document["Version"] == "2012-10-17"
    assert plain.document["Statement"][:2] == THEIRS


def test_moto_takes_the_policy_and_gives_it_back(s3: S3) -> None:
    """The printed JSON goes into PutBucketPolicy as is and GetBucketPolicy returns the same
    document."""
    s3.bucket(BUCKET, {"reports/q3/a.pdf": b"a"})
    existing = {"Version": "2012-10-17", "Statement": THEIRS}
    text = dumps(merged(existing, ours(), scope="q3").document)
    s3.client.put_bucket_policy(Bucket=BUCKET, Policy=text)
    back = s3.client.get_bucket_policy(Bucket=BUCKET)["Policy"]
    assert json.loads(back) == json.loads(text)


QUARTERLY = manifest(
    grant("globex", ("films/",), cloudfront="d1.cloudfront.net", seconds=90 * 86400),
    grant("hooli", ("partners/hooli/",), allow_ips=("203.0.113.0/24",), seconds=7 * 86400),
    path="/srv/manifests/quarterly.yml",
)
MONTHLY = manifest(
    grant("initech", ("monthly/",), seconds=86400), path="/srv/manifests/monthly.yml"
)


def _sids(document: dict[str, Any]) -> list[str]:
    return [s["Sid"] for s in document["Statement"]]


def test_a_second_manifest_keeps_the_firsts_scoped_statements_and_longer_age() -> None:
    """Two manifests on one bucket: the quarterly one (CloudFront links, a 7-day IP-restricted
    s3 recipient) is live; printing the monthly one (1-day links) with --existing keeps the
    quarterly's OAC allow and IP deny (sharebatch-quarterly-...), without which its links get
    403s, and the 7-day age limit its links need, saying so on stderr (review R1). By the
    live judge's own reading, both manifests' guardrails hold afterwards."""
    live = bucket_policy(QUARTERLY, None, now=NOW).document
    quarterly = [s for s in live["Statement"] if s["Sid"].startswith("sharebatch-quarterly-")]
    assert [s["Sid"].split("-")[2] for s in quarterly] == ["ip", "oac"]
    result = bucket_policy(MONTHLY, None, now=NOW, existing=live)
    after = result.document
    assert all(s in after["Statement"] for s in quarterly)
    (age,) = [s for s in after["Statement"] if s["Sid"] == "sharebatch-max-signature-age"]
    assert age["Condition"]["NumericGreaterThan"]["s3:signatureAge"] == (7 * 86400 + 60) * 1000
    assert _sids(after).count("sharebatch-sigv4-only") == 1
    (note,) = result.notes
    assert "kept the existing sharebatch-max-signature-age of 7d1m" in note
    assert "this manifest's 1d1m" in note and "--lower-age" in note
    states = {f.state for f in findings(after, intent(QUARTERLY, BUCKET, now=NOW))}
    assert states == {"present"}
    monthly = {f.guardrail: f.state for f in findings(after, intent(MONTHLY, BUCKET, now=NOW))}
    assert monthly == {"signature-age": "weaker", "sigv4": "present", "https": "present"}
    back = bucket_policy(QUARTERLY, None, now=NOW, existing=after).document
    assert sorted(_sids(back)) == sorted(_sids(after))


def test_lower_age_replaces_a_longer_limit_knowingly() -> None:
    """--lower-age: the monthly manifest's 1-day limit replaces the live 7-day one, and
    stderr says that longer links of others are refused from then on."""
    live = bucket_policy(QUARTERLY, None, now=NOW).document
    result = bucket_policy(MONTHLY, None, now=NOW, existing=live, lower_age=True)
    (age,) = [s for s in result.document["Statement"] if s["Sid"].endswith("signature-age")]
    assert age["Condition"]["NumericGreaterThan"]["s3:signatureAge"] == (86400 + 60) * 1000
    (note,) = result.notes
    assert note.startswith("sharebatch-max-signature-age lowered from 7d1m to this manifest's")
    longer = bucket_policy(QUARTERLY, None, now=NOW, existing=result.document)
    (age,) = [s for s in longer.document["Statement"] if s["Sid"].endswith("signature-age")]
    assert age["Condition"]["NumericGreaterThan"]["s3:signatureAge"] == (7 * 86400 + 60) * 1000
    assert longer.notes == ()


def test_a_manifest_issuing_nothing_presigned_keeps_the_live_age_limit() -> None:
    """A CloudFront-only manifest (no pages, no slots) writes no age statement; merged into a
    policy that has one (another manifest's), it is kept unchanged, and said."""
    cloudfront_only = manifest(
        grant("globex", ("films/",), cloudfront="d1.cloudfront.net"), path="/srv/films.yml"
    )
    live = bucket_policy(MONTHLY, None, now=NOW).document
    (age,) = [s for s in live["Statement"] if s["Sid"] == "sharebatch-max-signature-age"]
    result = bucket_policy(cloudfront_only, None, now=NOW, existing=live)
    assert age in result.document["Statement"]
    assert any("kept the existing sharebatch-max-signature-age (1d1m)" in n for n in result.notes)


def test_scopes_unknown_forms_and_an_unreadable_age() -> None:
    """Only this scope's statements are replaced: another scope's with the same prefix hash
    stays; a sharebatch- statement of no form this version writes (an older one's) is kept
    and said; an age statement of ours with no readable limit is refused, not guessed at."""
    other = {**OLD_OURS, "Sid": "sharebatch-q3x-ip-000000000000"}
    legacy = {**OLD_OURS, "Sid": "sharebatch-ip-000000000000"}
    existing = {"Version": "2012-10-17", "Statement": [OLD_OURS, other, legacy]}
    result = merged(existing, ours(), scope="q3")
    assert result.document["Statement"][:2] == [other, legacy]
    (note,) = result.notes
    assert note.startswith("kept sharebatch-ip-000000000000: a sharebatch- statement of no form")
    age = {**ours()[0], "Condition": {"NumericGreaterThan": {"s3:signatureAge": "7 days"}}}
    with pytest.raises(UsageError, match="no s3:signatureAge limit that sharebatch can read"):
        merged({"Version": "2012-10-17", "Statement": [age]}, ours(), scope="q3")


def test_a_manifest_over_plain_http_drops_the_tls_deny_and_says_so() -> None:
    """A manifest whose grant reaches the bucket over http:// writes no sharebatch-https-only,
    and merged into a policy that has one, removes it (it would refuse that grant's links)."""
    plain: Manifest = manifest(
        grant("globex").model_copy(update={"endpoint_url": "http://127.0.0.1:9000"})
    )
    live = bucket_policy(MONTHLY, None, now=NOW).document
    assert "sharebatch-https-only" in _sids(live)
    result = bucket_policy(plain, None, now=NOW, existing=live)
    assert "sharebatch-https-only" not in _sids(result.document)
    assert any("q3/globex reach it over http://" in n for n in result.notes)
    assert "the existing sharebatch-https-only is removed: this manifest's policy has none" in (
        result.notes
    )
    alone = [s["Sid"] for s in statements(intent(plain, BUCKET, now=NOW))]
    assert alone == ["sharebatch-max-signature-age", "sharebatch-sigv4-only"]
