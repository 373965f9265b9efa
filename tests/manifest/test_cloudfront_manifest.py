"""Tests for the manifest's link kinds: ``link:``, ``allow_ips:`` and the ``cloudfront:`` block.

What needs a key file made at test time (its mode is part of the check) is here rather than
in the bad-manifest corpus: git cannot keep a file private to its owner. Every load passes a
fixed ``now`` and ``as_of``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from sharebatch.errors import ManifestError, ManifestIssue
from sharebatch.manifest.load import Grant, Manifest, load_manifest, manifest_json_schema
from sharebatch.models import CloudFrontLinks, KeySource
from tests.support.bad_manifests import NOW
from tests.support.cloudfront_keys import make_key, pem, write_key

AS_OF = date(2026, 11, 28)
DOMAIN = "d111111abcdef8.cloudfront.net"


def _manifest(tmp_path: Path, body: str, key_mode: int = 0o600, key: str = "p256") -> Path:
    """``body`` (a manifest whose key file is ``cf.pem`` beside it) written with that key."""
    write_key(tmp_path / "cf.pem", pem(make_key(key)), key_mode)
    path = tmp_path / "manifest.yml"
    path.write_text(body, encoding="utf-8")
    return path


def _load(path: Path, now: datetime = NOW) -> Manifest:
    return load_manifest(path, as_of=AS_OF, now=now)


def _grants(manifest: Manifest) -> dict[str, Grant]:
    return {g.recipient.id: g for job in manifest.jobs for g in job.grants}


def _issues(path: Path, now: datetime = NOW) -> list[ManifestIssue]:
    with pytest.raises(ManifestError) as info:
        _load(path, now)
    return info.value.issues


def _text(defaults: str = "", job: str = "", recipients: str = "      - id: globex\n") -> str:
    return (
        "version: 1\ndefaults:\n  bucket: acme-reports\n  expires_in: 30d\n"
        "  link: cloudfront\n  cloudfront:\n"
        f"    domain: {DOMAIN}\n    key_pair_id: K2JCJMDEHXQW5F\n"
        "    private_key: {file: cf.pem}\n    max_expires_in: 90d\n"
        + defaults
        + "jobs:\n  - name: q3\n    prefixes: [reports/]\n"
        + job
        + "    recipients:\n"
        + recipients
    )


def test_the_cloudfront_block_inherits_field_by_field(tmp_path: Path) -> None:
    """Defaults give the whole block; one recipient overrides one field (and a job another),
    keeping every other field inherited; the key file is taken relative to the manifest."""
    path = _manifest(
        tmp_path,
        _text(
            job="    cloudfront:\n      hash: sha1\n",
            recipients=(
                "      - id: globex\n"
                "      - id: initech\n"
                "        cloudfront: {key_pair_id: K3OTHERKEYID99}\n"
            ),
        ),
        key="rsa2048",  # sha1 signs with RSA only
    )
    grants = _grants(_load(path))
    source = KeySource(file=str(tmp_path / "cf.pem"))
    assert grants["globex"].link == "cloudfront"
    assert grants["globex"].cloudfront == CloudFrontLinks(
        domain=DOMAIN,
        key_pair_id="K2JCJMDEHXQW5F",
        private_key=source,
        max_expires_in=90 * 86_400,
        hash="sha1",
    )
    assert grants["initech"].cloudfront == CloudFrontLinks(
        domain=DOMAIN,
        key_pair_id="K3OTHERKEYID99",
        private_key=source,
        max_expires_in=90 * 86_400,
        hash="sha1",
    )
    assert grants["globex"].expiry.seconds == 30 * 86_400  # past SigV4's 7 days


def test_hash_defaults_to_sha256_and_optional_fields_to_none(tmp_path: Path) -> None:
    """Without hash, not_before or distribution_arn: sha256, a canned policy, no ARN."""
    links = _grants(_load(_manifest(tmp_path, _text())))["globex"].cloudfront
    assert links is not None
    assert (links.hash, links.not_before, links.distribution_arn) == ("sha256", None, None)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ('"{period.next_start}"', datetime(2026, 10, 1, tzinfo=UTC)),
        ('"{as_of.date}"', datetime(2026, 11, 28, tzinfo=UTC)),
        ("2026-12-01T09:30:00+01:00", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
        ("2026-12-24", datetime(2026, 12, 24, tzinfo=UTC)),
    ],
)
def test_not_before_renders_like_other_moments(
    tmp_path: Path, written: str, expected: datetime
) -> None:
    """not_before is a template or a moment, rendered for the run date like filter dates:
    '{period.next_start}' of a run on 2026-11-28 is the day after Q3, 2026-10-01 UTC."""
    path = _manifest(tmp_path, _text(defaults=f"    not_before: {written}\n"))
    links = _grants(_load(path))["globex"].cloudfront
    assert links is not None and links.not_before == expected


def test_distribution_arn_of_each_partition_is_accepted(tmp_path: Path) -> None:
    """The ARN of the commercial, China and GovCloud partitions are kept as written."""
    for partition in ("aws", "aws-cn", "aws-us-gov"):
        arn = f"arn:{partition}:cloudfront::111122223333:distribution/EDFDVBD6EXAMPLE"
        path = _manifest(tmp_path, _text(defaults=f"    distribution_arn: {arn}\n"))
        links = _grants(_load(path))["globex"].cloudfront
        assert links is not None and links.distribution_arn == arn


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("D111111ABCDEF8.CloudFront.net", "d111111abcdef8.cloudfront.net"),
        ("files.example.com.", "files.example.com"),
        ("http://127.0.0.1:8443", "http://127.0.0.1:8443"),
        ("https://127.0.0.2:9443/", "https://127.0.0.2:9443"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_domain_is_a_host_name_or_a_loopback_origin(
    tmp_path: Path, written: str, kept: str
) -> None:
    """A host name is kept lowercase without its root dot; an http(s) origin is accepted only
    on a loopback address (a test verifier), without a trailing slash."""
    path = _manifest(tmp_path, _text().replace(f"domain: {DOMAIN}", f"domain: {written!r}"))
    links = _grants(_load(path))["globex"].cloudfront
    assert links is not None and links.domain == kept


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("https://127.0.0.1:8443/cdn", "without a path"),
        ("http://localhost:8443", "in clear text"),
        ("ftp://127.0.0.1", "is not a host name"),
        ("cloudfront", "is not a host name"),
        ("d1.cloudfront.net:443", "is not a host name"),
    ],
)
def test_other_domains_are_located_errors(tmp_path: Path, written: str, message: str) -> None:
    """A path on an origin, http to a name (even localhost: it may resolve elsewhere), another
    scheme, a single label or a port on a host name: each one located issue at the domain."""
    path = _manifest(tmp_path, _text().replace(f"domain: {DOMAIN}", f"domain: {written!r}"))
    [issue] = _issues(path)
    assert (issue.line, issue.field) == (7, "defaults.cloudfront.domain")
    assert message in issue.message


def test_allow_ips_inherit_and_are_normalised(tmp_path: Path) -> None:
    """allow_ips is a grant setting: defaults, overridden by a job, then by a recipient ([]
    clears it); IPv4 and IPv6 CIDRs are normalised and a bare address means itself."""
    text = (
        "version: 1\ndefaults:\n  bucket: acme-reports\n  expires_in: 1d\n"
        "  allow_ips: [203.0.113.0/24, 198.51.100.7]\n"
        "jobs:\n"
        "  - name: q3\n    prefixes: [reports/]\n    recipients:\n"
        "      - id: globex\n"
        "      - id: initech\n        allow_ips: ['2001:DB8::/32']\n"
        "      - id: hooli\n        allow_ips: []\n"
        "  - name: q4\n    prefixes: [reports/]\n    allow_ips: [192.0.2.0/28]\n"
        "    recipients:\n      - id: umbrella\n"
    )
    grants = _grants(_load(_manifest(tmp_path, text)))
    assert grants["globex"].allow_ips == ("203.0.113.0/24", "198.51.100.7/32")
    assert grants["initech"].allow_ips == ("2001:db8::/32",)
    assert grants["hooli"].allow_ips == ()
    assert grants["umbrella"].allow_ips == ("192.0.2.0/28",)
    assert all(g.link == "s3" and g.cloudfront is None for g in grants.values())


def test_one_allow_ips_entry_goes_with_cloudfront(tmp_path: Path) -> None:
    """With link: cloudfront one IPv4 network is what the policy's AWS:SourceIp takes."""
    path = _manifest(
        tmp_path, _text(recipients="      - id: globex\n        allow_ips: ['203.0.113.7']\n")
    )
    grant = _grants(_load(path))["globex"]
    assert (grant.link, grant.allow_ips) == ("cloudfront", ("203.0.113.7/32",))


def test_an_ipv6_network_with_cloudfront_is_a_located_error(tmp_path: Path) -> None:
    """CloudFront's AWS:SourceIp takes IPv4 only: an IPv6 network with link: cloudfront is
    refused where it is written; with link: s3 (a bucket policy takes IPv6) it is kept."""
    path = _manifest(
        tmp_path, _text(recipients="      - id: globex\n        allow_ips: ['2001:db8:0::/48']\n")
    )
    [issue] = _issues(path)
    assert "IPv4 only" in issue.message
    assert "2001:db8::/48" in issue.message
    assert issue.line == 16
    s3 = _manifest(
        tmp_path,
        _text(
            recipients="      - id: globex\n        link: s3\n        expires_in: 7d\n"
            "        allow_ips: ['2001:db8:0::/48']\n"
        ),
    )
    assert _grants(_load(s3))["globex"].allow_ips == ("2001:db8::/48",)


def test_sha1_with_an_ecdsa_key_is_a_located_error(tmp_path: Path) -> None:
    """CloudFront verifies ECDSA signatures over SHA-256 only: hash sha1 with a P-256 key is
    refused at the hash's line; with an RSA key it loads."""
    body = _text(job="    cloudfront:\n      hash: sha1\n")
    [issue] = _issues(_manifest(tmp_path, body, key="p256"))
    assert "needs an RSA key" in issue.message
    assert issue.line == body.splitlines().index("      hash: sha1") + 1
    rsa = _grants(_load(_manifest(tmp_path, body, key="rsa2048")))["globex"]
    assert rsa.cloudfront is not None and rsa.cloudfront.hash == "sha1"


def test_link_s3_is_the_default_and_ignores_a_cloudfront_block(tmp_path: Path) -> None:
    """Nothing set: link s3, no cloudfront settings, no networks. A recipient saying link: s3
    under cloudfront defaults gets no CloudFront settings, and its 7 days still hold."""
    plain = tmp_path / "plain"
    plain.mkdir()
    path = _manifest(
        plain,
        "version: 1\njobs:\n  - name: q3\n    bucket: acme-reports\n"
        "    expires_in: 7d\n    prefixes: [a/]\n    recipients:\n      - id: x\n",
    )
    grant = _grants(_load(path))["x"]
    assert (grant.link, grant.cloudfront, grant.allow_ips) == ("s3", None, ())
    assert "cloudfront" not in grant.model_dump(exclude_defaults=True)
    mixed = _manifest(
        tmp_path,
        _text(recipients="      - id: globex\n      - id: initech\n        link: s3\n"),
    )
    [issue] = _issues(mixed)
    assert (issue.field, issue.line) == ("defaults.expires_in", 4)
    assert "30d is longer than the 7-day limit for presigned URLs (link: s3)" in issue.message
    ok = _manifest(
        tmp_path,
        _text(
            recipients="      - id: globex\n      - id: initech\n        link: s3\n"
            "        expires_in: 7d\n"
        ),
    )
    grants = _grants(_load(ok))
    assert (grants["initech"].link, grants["initech"].cloudfront) == ("s3", None)
    assert grants["globex"].cloudfront is not None


def test_expiry_may_reach_max_expires_in_exactly(tmp_path: Path) -> None:
    """expires_in equal to max_expires_in, and expires_at exactly that far from the run, are
    accepted; one second more is a located error (relative to the run's clock)."""
    assert _grants(
        _load(_manifest(tmp_path, _text().replace("expires_in: 30d", "expires_in: 90d")))
    )
    at = NOW + timedelta(days=90)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    path = _manifest(tmp_path, _text(job=f"    expires_at: {stamp}\n"))
    assert _grants(_load(path))["globex"].expiry.at == at
    [issue] = _issues(path, now=NOW - timedelta(seconds=1))
    assert issue.field == "jobs[0].expires_at"
    assert f"{stamp} is more than 90d after the run" in issue.message


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_others_can_read_is_a_located_error(tmp_path: Path, mode: int) -> None:
    """The manifest names a key file group or others can read: one issue at private_key, with
    the mode and the chmod that fixes it; nothing else is reported."""
    path = _manifest(tmp_path, _text(), key_mode=mode)
    [issue] = _issues(path)
    assert (issue.line, issue.column, issue.field) == (9, 18, "defaults.cloudfront.private_key")
    key = tmp_path / "cf.pem"
    assert issue.message == (
        f"private key file {str(key)!r} is readable by group or others (mode {mode:04o}); a"
        f" signing key must be private to its owner: chmod 600 {key}"
    )
    assert str(issue).startswith(f"{path}:9:18: defaults.cloudfront.private_key: ")


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_key_file_loads(tmp_path: Path, mode: int) -> None:
    """0600 and 0400 are private: the manifest loads."""
    assert _grants(_load(_manifest(tmp_path, _text(), key_mode=mode)))["globex"].cloudfront


@pytest.mark.parametrize(
    ("kind", "named"), [("rsa1024", "a 1024-bit RSA key"), ("p384", "secp384r1")]
)
def test_a_key_file_of_the_wrong_type_is_a_located_error(
    tmp_path: Path, kind: str, named: str
) -> None:
    """A private file holding a key CloudFront cannot verify: one issue naming its type."""
    [issue] = _issues(_manifest(tmp_path, _text(), key=kind))
    assert issue.field == "defaults.cloudfront.private_key"
    assert named in issue.message


def test_a_shared_bad_key_is_reported_once(tmp_path: Path) -> None:
    """Many recipients inheriting one world-readable key: one issue, where it is written."""
    recipients = "".join(f"      - id: r{i}\n" for i in range(20))
    issues = _issues(_manifest(tmp_path, _text(recipients=recipients), key_mode=0o644))
    assert [i.field for i in issues] == ["defaults.cloudfront.private_key"]


def test_the_grant_keeps_where_the_key_is_never_the_key(tmp_path: Path) -> None:
    """The key is loaded to check it, but the grant (dumped and logged in places) holds only
    its source: no PEM line appears in the manifest's dump."""
    data = pem(make_key("p256"))
    text = _text().replace("{file: cf.pem}", "{env: CF_TEST_KEY}")
    path = tmp_path / "manifest.yml"
    path.write_text(text, encoding="utf-8")
    os.environ["CF_TEST_KEY"] = data.decode("ascii")
    try:
        manifest = _load(path)
    finally:
        del os.environ["CF_TEST_KEY"]
    links = _grants(manifest)["globex"].cloudfront
    assert links is not None and links.private_key == KeySource(env="CF_TEST_KEY")
    dumped = json.dumps(manifest.model_dump(mode="json")) + repr(manifest)
    body = [line for line in data.decode("ascii").splitlines() if "-----" not in line]
    assert not [line for line in body if line in dumped]
    assert "PRIVATE KEY" not in dumped


def test_link_ids_apply_to_cloudfront_links_too(tmp_path: Path) -> None:
    """link_ids keeps its default (on) and its override (off) for a cloudfront grant."""
    path = _manifest(
        tmp_path,
        _text(recipients="      - id: globex\n      - id: initech\n        link_ids: false\n"),
    )
    grants = _grants(_load(path))
    assert (grants["globex"].link_ids, grants["initech"].link_ids) == (True, False)


def test_the_schema_describes_the_new_settings() -> None:
    """`sharebatch schema` knows link, allow_ips and the cloudfront block with its fields, and
    keeps allow_ips out of the block."""
    schema = manifest_json_schema()
    settings = schema["$defs"]["Settings"]["properties"]
    assert {"link", "allow_ips", "cloudfront"} <= set(settings)
    assert settings["link"]["anyOf"][0]["enum"] == ["s3", "cloudfront"]
    block = schema["$defs"]["CloudFront"]
    assert set(block["properties"]) == {
        "domain",
        "key_pair_id",
        "private_key",
        "hash",
        "not_before",
        "max_expires_in",
        "distribution_arn",
    }
    assert block["additionalProperties"] is False
    assert set(schema["$defs"]["PrivateKey"]["properties"]) == {"file", "env"}
    assert "365d" in block["properties"]["max_expires_in"]["description"]


def test_a_grant_refuses_settings_that_do_not_match_its_link() -> None:
    """Grant itself holds the rules: cloudfront settings exactly with link: cloudfront, an
    s3 duration within 7 days, a cloudfront one within max_expires_in, one network for it."""
    from pydantic import ValidationError

    from sharebatch.models import Expiry

    links = CloudFrontLinks(DOMAIN, "K2JCJMDEHXQW5F", KeySource(env="K"), 10 * 86_400)
    base = {"job": "q3", "recipient": {"id": "x"}, "bucket": "acme-reports", "prefixes": ("a/",)}
    day = Expiry(seconds=86_400)
    assert Grant.model_validate({**base, "expiry": day, "link": "cloudfront", "cloudfront": links})
    bad: list[dict[str, object]] = [
        {"expiry": day, "link": "cloudfront"},
        {"expiry": day, "cloudfront": links},
        {"expiry": Expiry(seconds=8 * 86_400)},
        {"expiry": Expiry(seconds=11 * 86_400), "link": "cloudfront", "cloudfront": links},
        {
            "expiry": day,
            "link": "cloudfront",
            "cloudfront": links,
            "allow_ips": ("192.0.2.0/24", "198.51.100.0/24"),
        },
    ]
    for fields in bad:
        with pytest.raises(ValidationError):
            Grant.model_validate({**base, **fields})


@pytest.mark.parametrize(
    ("expiry", "end"),
    [
        ("", "2026-12-28T12:00:00Z"),  # expires_in 30d from the run
        ("    expires_at: 2026-12-10T00:00:00Z\n", "2026-12-10T00:00:00Z"),
    ],
)
def test_not_before_at_or_after_the_expiry_is_a_located_error(
    tmp_path: Path, expiry: str, end: str
) -> None:
    """A start at or after the links' end (expires_at, or the run plus expires_in) gives links
    that never work: one issue at not_before, naming both moments; a start before it loads."""
    path = _manifest(tmp_path, _text(defaults=f"    not_before: {end}\n", job=expiry))
    [issue] = _issues(path)
    assert (issue.line, issue.field) == (11, "defaults.cloudfront.not_before")
    assert issue.message.startswith(f"not_before {end} is not before the links expire ({end})")
    path.write_text(path.read_text().replace(f"not_before: {end}", "not_before: 2026-12-09"))
    assert _grants(_load(path))["globex"].cloudfront


def test_each_key_is_loaded_once_however_many_recipients_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fifty recipients sharing one key source: the key is read and checked once."""
    import sharebatch.manifest.cloudfront as cloudfront

    calls: list[KeySource] = []
    real = cloudfront.load_private_key

    def counted(source: KeySource, environ: object = None) -> object:
        calls.append(source)
        return real(source)

    monkeypatch.setattr(cloudfront, "load_private_key", counted)
    recipients = "".join(f"      - id: r{i}\n" for i in range(50))
    manifest = _load(_manifest(tmp_path, _text(recipients=recipients)))
    assert len(_grants(manifest)) == 50
    assert calls == [KeySource(file=str(tmp_path / "cf.pem"))]


@pytest.mark.parametrize(
    ("block", "field", "message"),
    [
        ("{path: cf.pem}", "defaults.cloudfront.private_key.path", "expected one of file, env"),
        ("{fille: cf.pem}", "defaults.cloudfront.private_key.fille", "did you mean 'file'?"),
        ("cf.pem", "defaults.cloudfront.private_key", "expected a mapping of fields"),
        ("{env: 1BAD}", "defaults.cloudfront.private_key.env", "not an environment variable"),
    ],
)
def test_a_misshapen_private_key_setting_is_one_located_issue(
    tmp_path: Path, block: str, field: str, message: str
) -> None:
    """private_key is a mapping of file or env: a misspelt key, a bare path or a bad variable
    name is one issue at that place, with a hint."""
    path = _manifest(tmp_path, _text().replace("{file: cf.pem}", block))
    [issue] = _issues(path)
    assert issue.field == field
    assert message in issue.message


def test_a_misspelt_cloudfront_field_gets_a_suggestion(tmp_path: Path) -> None:
    """An unknown field of the block names the closest real one."""
    path = _manifest(tmp_path, _text(defaults="    max_expire_in: 30d\n"))
    [issue] = _issues(path)
    assert issue.field == "defaults.cloudfront.max_expire_in"
    assert "did you mean 'max_expires_in'?" in issue.message
