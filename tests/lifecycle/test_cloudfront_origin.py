"""One signer and one origin for CloudFront links across run, renew, verify and inspect.

A renewal is signed by the run's own ``CloudFrontRouteSigner``: byte for byte what a run
signs for the same object, window, key and link id. A row whose URL claims another domain,
key pair, hash, IP range or a wider Resource than its own object is refused at that row by
renew (exit 2, nothing written), verify (never fetched) and inspect (INVALID). A header or row
whose window a run could not have written is refused by renew. Every forged file is recorded
in its run's audit log, so the refusal shown is the check itself, not the sha256's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sharebatch.cloudfront.policy import custom_policy
from sharebatch.cloudfront.read import read_cloudfront_url, verify_signature
from sharebatch.cloudfront.sign import CloudFrontSigner, base_url, cf_b64, sign_policy
from sharebatch.lifecycle.inspect import inspect_bundle, read_bundle
from sharebatch.lifecycle.verify import verify_bundles
from sharebatch.models import CloudFrontLinks, Expiry, KeySource, LinkProbe, ObjectRef
from sharebatch.run import link_ids
from sharebatch.run.cfsign import CloudFrontRouteSigner
from sharebatch.times import iso, parse_iso
from tests.support.cfbundle import BUCKET, FILES, JOB, CfBundle, sha256_of, write_cf_bundle
from tests.support.cfkeys import KeyPair, public_keys, rsa_pair
from tests.support.cloudfront_edge import cloudfront_edge, fetch
from tests.support.linkkit import invoke
from tests.support.s3 import S3

ORIGIN = "http://127.0.0.1:9"  # nothing listens: a refused row must never be asked anyway


def record(made: CfBundle, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit links.json and record its new sha256 as its run would (a bundle_written)."""
    data = made.data()
    change(data)
    made.json_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    event = {"event": "bundle_written", "sha256": sha256_of(made.json_path)}
    with (made.run_dir / "audit.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(event) + "\n")


def renewals(made: CfBundle) -> list[Path]:
    return list(made.folder.glob("links.renewed-*"))


def test_a_renewal_is_byte_for_byte_what_a_run_signs(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each renewed URL equals the run's signer's URL for the same object, key, window and
    link id under a clock frozen at the renewal's signing second; its signature verifies
    with the public key, and it downloads the object through the edge."""
    s3.bucket(BUCKET, FILES)
    pair = rsa_pair()
    start = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    with cloudfront_edge(s3, BUCKET, public_keys(pair)) as edge:
        made = write_cf_bundle(
            tmp_path,
            s3,
            edge.origin,
            pair,
            expires_in=86400,
            links_end=datetime.now(UTC) + timedelta(minutes=30),
            not_before=start,
            allow_ips=["127.0.0.0/8"],
        )
        result = invoke("renew", str(made.folder), "--within", "2h")
        assert result.exit_code == 0, result.output
        path = next(p for p in renewals(made) if p.suffix == ".json")
        rows = json.loads(path.read_text(encoding="utf-8"))["links"]
        settings = CloudFrontLinks(
            edge.origin,
            pair.key_pair_id,
            KeySource(file=str(made.key_file)),
            90 * 86400,
            "sha256",
            start,
        )
        for row in rows:
            end = parse_iso(row["expires_at"])
            signed_at = end - timedelta(seconds=86400)
            run_signer = CloudFrontRouteSigner(
                CloudFrontSigner(
                    domain=edge.origin, key_pair_id=pair.key_pair_id, key=pair.private
                ),
                job=JOB,
                expiry=Expiry(seconds=86400),
                settings=settings,
                allow_ips=("127.0.0.0/8",),
                download_name="Q3-{basename}",
                clock=lambda at=signed_at: at,
            )
            monkeypatch.setattr(link_ids, "new_link_id", lambda id=row["link_id"]: id)
            obj = ObjectRef(
                BUCKET, row["key"], row["size"], row["etag"], parse_iso(row["last_modified"])
            )
            (link,) = run_signer.sign_get(row["recipient"], [obj])
            assert link.url == row["url"]
            assert verify_signature(read_cloudfront_url(row["url"]), pair.public)
            assert fetch(row["url"]).body == FILES[row["key"]]


def _resigned(made: CfBundle, row: dict[str, Any], signer: CloudFrontSigner, **kw: Any) -> str:
    """The row's own object and query, signed by ``signer`` with ``kw`` (not_before, ...)."""
    query = read_cloudfront_url(row["url"]).query
    end = kw.pop("expires", parse_iso(row["expires_at"]))
    return signer.sign(row["key"], end, query=query, **kw)


def _wildcard(row: dict[str, Any], pair: KeyPair) -> str:
    """The row's URL with a custom policy granting everything under q3/ (a wildcard)."""
    facts = read_cloudfront_url(row["url"])
    resource = base_url(ORIGIN, row["key"], facts.query)
    until = int(parse_iso(row["expires_at"]).timestamp())
    policy = custom_policy(f"{ORIGIN}/q3/*", until, not_before=None, source_ip=None)
    signature = cf_b64(sign_policy(pair.private, policy, "sha256"))
    return (
        f"{resource}&Policy={cf_b64(policy)}&Signature={signature}"
        f"&Key-Pair-Id={pair.key_pair_id}&Hash-Algorithm=SHA256"
    )


TAMPERED: dict[str, tuple[Callable[[CfBundle, dict[str, Any]], str], str]] = {
    "domain": (
        lambda made, row: _resigned(
            made,
            row,
            CloudFrontSigner(
                domain="http://127.0.0.3:9",
                key_pair_id=rsa_pair().key_pair_id,
                key=rsa_pair().private,
            ),
        ),
        "is not the header's domain",
    ),
    "key_pair": (
        lambda made, row: _resigned(
            made,
            row,
            CloudFrontSigner(
                domain=ORIGIN, key_pair_id=rsa_pair(1).key_pair_id, key=rsa_pair(1).private
            ),
        ),
        "Key-Pair-Id",
    ),
    "hash": (
        lambda made, row: _resigned(
            made,
            row,
            CloudFrontSigner(
                domain=ORIGIN,
                key_pair_id=rsa_pair().key_pair_id,
                key=rsa_pair().private,
                hash="sha1",
            ),
        ),
        "its hash sha1 is not the header's sha256",
    ),
    "ip_range": (
        lambda made, row: _resigned(
            made,
            row,
            CloudFrontSigner(
                domain=ORIGIN, key_pair_id=rsa_pair().key_pair_id, key=rsa_pair().private
            ),
            source_ip="127.0.0.0/8",
        ),
        "its IP range 127.0.0.0/8 is not the header's (any)",
    ),
    "wildcard": (lambda made, row: _wildcard(row, rsa_pair()), "policy's Resource"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERED))
def test_a_row_off_its_headers_origin_is_refused_by_renew_verify_and_inspect(
    s3: S3, tmp_path: Path, kind: str
) -> None:
    """links[0] re-signed for another domain, key pair, hash, IP range or a wildcard
    Resource: renew refuses it naming the file and row (exit 2, nothing written), verify
    reports it as an error without requesting it, inspect shows it INVALID with the reason."""
    s3.bucket(BUCKET, FILES)
    made = write_cf_bundle(tmp_path, s3, ORIGIN, rsa_pair(), expires_in=3600)
    forge, reason = TAMPERED[kind]

    def tamper(data: dict[str, Any]) -> None:
        data["links"][0]["url"] = forge(made, data["links"][0])

    record(made, tamper)
    result = invoke("renew", str(made.json_path), "--within", "2h")
    assert result.exit_code == 2, result.output
    assert f"{made.json_path}: links[0]: q3/a.pdf: refused" in result.stderr
    assert reason in result.stderr
    assert "Signature=" not in result.stderr
    assert not renewals(made)

    asked: list[str] = []

    def probe(url: str, method: str) -> LinkProbe:
        asked.append(url)
        return LinkProbe(status=None, error="not-asked", message="recorded only")

    report = verify_bundles([made.json_path], probe=probe)
    first = report.verdicts[0]
    assert (first.line, first.outcome) == (1, "error")
    assert first.detail.startswith("refused: ") and reason in first.detail
    assert first.url not in asked and len(asked) == 2

    now = datetime.now(UTC)
    shown = inspect_bundle(read_bundle(made.json_path), now, timedelta(0))
    links = shown["recipients"][0]["links"]
    assert links[0]["status"] == "INVALID" and reason in links[0]["problem"]
    assert [link["status"] for link in links[1:]] == ["VALID", "VALID"]


def _moment(data: dict[str, Any], **delta: float) -> str:
    return iso(parse_iso(data["header"]["generated_at"]) + timedelta(**delta))


def _header(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        for name, make in fields.items():
            target, _, field = name.rpartition("__")
            where = data["header"][target] if target else data["header"]
            where[field] = make(data)

    return change


def _far_row(data: dict[str, Any]) -> None:
    row = data["links"][0]
    signer = CloudFrontSigner(
        domain=ORIGIN, key_pair_id=rsa_pair().key_pair_id, key=rsa_pair().private
    )
    end = parse_iso(data["header"]["generated_at"]) + timedelta(days=30)
    row["url"] = signer.sign(row["key"], end, query=read_cloudfront_url(row["url"]).query)
    row["expires_at"] = iso(end)


FORGED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "expires_in past max": (
        _header(expiry=lambda d: {"expires_in": 30 * 86400}),
        "expires_in 2592000s is outside 1..86400s",
    ),
    "expires_at past max": (
        _header(expiry=lambda d: {"expires_at": _moment(d, days=30)}),
        "is not within cloudfront.max_expires_in",
    ),
    "expires_at before written": (
        _header(expiry=lambda d: {"expires_at": _moment(d, hours=-1)}),
        "is not within cloudfront.max_expires_in",
    ),
    "start beyond the end": (
        _header(
            cloudfront__not_before=lambda d: _moment(d, days=10),
            cloudfront__policy=lambda d: "custom",
        ),
        "is not before the links' end",
    ),
    "page end past max": (
        _header(page_expires_at=lambda d: _moment(d, days=30)),
        "page_expires_at",
    ),
    "written in the future": (
        _header(
            generated_at=lambda d: _moment(d, days=20),
            expiry=lambda d: {"expires_at": _moment(d, days=20, hours=1)},
        ),
        "is in the future",
    ),
    "row end past max": (_far_row, "links[0]: q3/a.pdf: its end is further"),
}


@pytest.mark.parametrize("kind", sorted(FORGED))
def test_a_forged_window_is_refused_not_renewed_wider(s3: S3, tmp_path: Path, kind: str) -> None:
    """A header or row window no run writes (an end past max_expires_in or before the
    bundle, a start beyond the end, a page end too far, a bundle from the future, a row
    re-signed for longer), recorded by its run or not, is exit 2 naming the field, and no
    renewal is written."""
    s3.bucket(BUCKET, FILES)
    made = write_cf_bundle(tmp_path, s3, ORIGIN, rsa_pair(), expires_in=3600, max_expires_in=86400)
    change, reason = FORGED[kind]
    record(made, change)
    result = invoke("renew", str(made.json_path), "--within", "2h")
    assert result.exit_code == 2, result.output
    assert str(made.json_path) in result.stderr
    assert reason in result.stderr
    assert not renewals(made)
