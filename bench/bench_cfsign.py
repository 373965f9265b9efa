"""CloudFront link signing in the run: cost per link by key kind, against the S3 fast signer.

Run with ``.venv/bin/python bench/bench_cfsign.py``. Each round signs the same keys through
``run/cfsign.CloudFrontRouteSigner`` (RSA 2048 with SHA-256, with SHA-1, ECDSA P-256) and
through ``run/sign.Signer`` over the fast SigV4 presigner, the way staging calls them
(``sign_get`` on one chunk after another), and reports microseconds per link and the pause
one chunk holds the event loop (``chunk`` links signed between two yields; the median
chunk). The CloudFront keys are made here; nothing is read from disk or the network.

botocore's ``CloudFrontSigner`` (RSA, SHA-1: the only scheme it has) runs beside them as the
reference, after the first 200 canned SHA-1 URLs of our signer were compared with its own byte
for byte (any difference exits with status 1).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from _sealed_env import seal

seal()

from botocore.signers import CloudFrontSigner as BotocoreSigner  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402

from sharebatch.cloudfront.sign import CloudFrontSigner  # noqa: E402
from sharebatch.models import (  # noqa: E402
    CloudFrontHash,
    CloudFrontLinks,
    Credentials,
    Expiry,
    KeySource,
    ObjectRef,
)
from sharebatch.run.cfsign import CloudFrontRouteSigner  # noqa: E402
from sharebatch.run.sign import RouteSigner, Signer  # noqa: E402
from sharebatch.s3.sigv4 import SigV4Presigner  # noqa: E402

CREDENTIALS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
STAMP = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def objects(count: int) -> list[ObjectRef]:
    return [
        ObjectRef("sharebatch-bench", f"exports/2026/q3/report {i:06d}.pdf", 1, "e", STAMP)
        for i in range(count)
    ]


DOMAIN = "d111111abcdef8.cloudfront.net"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def cloudfront(kind: str, digest: CloudFrontHash) -> CloudFrontRouteSigner:
    key = RSA_KEY if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    settings = CloudFrontLinks(
        domain=DOMAIN,
        key_pair_id="K2JCJMDEHXQW5F",
        private_key=KeySource(env="UNUSED"),
        max_expires_in=90 * 86_400,
        hash=digest,
    )
    signer = CloudFrontSigner(
        domain=settings.domain, key_pair_id=settings.key_pair_id, key=key, hash=digest
    )
    return CloudFrontRouteSigner(
        signer, job="bench", expiry=Expiry(seconds=30 * 86_400), settings=settings
    )


def s3() -> Signer:
    presign = SigV4Presigner(
        CREDENTIALS, region="eu-west-1", endpoint_url=None, addressing_style="auto"
    )
    return Signer(presign, job="bench", expiry=Expiry(seconds=86_400))


def _botocore() -> BotocoreSigner:
    # S303: CloudFront's SHA-1 scheme is what botocore implements; it is the reference here.
    return BotocoreSigner(
        "K2JCJMDEHXQW5F",
        lambda message: RSA_KEY.sign(message, padding.PKCS1v15(), hashes.SHA1()),  # noqa: S303
    )


def differ_from_botocore(items: Sequence[ObjectRef]) -> int:
    """How many canned SHA-1 URLs of ``items`` our signer writes differently from botocore."""
    ours = CloudFrontSigner(domain=DOMAIN, key_pair_id="K2JCJMDEHXQW5F", key=RSA_KEY, hash="sha1")
    theirs, expires = _botocore(), STAMP + timedelta(days=30)
    return sum(
        ours.sign(item.key, expires)
        != theirs.generate_presigned_url(
            f"https://{DOMAIN}/{item.key.replace(' ', '%20')}", date_less_than=expires
        )
        for item in items
    )


def botocore_cost(items: Sequence[ObjectRef]) -> float:
    """Microseconds a link for botocore's signer alone (no download name, no link id)."""
    signer, expires = _botocore(), STAMP + timedelta(days=30)
    started = time.perf_counter()
    for item in items:
        signer.generate_presigned_url(f"https://{DOMAIN}/{item.key}", date_less_than=expires)
    return (time.perf_counter() - started) / len(items) * 1e6


def measure(signer: RouteSigner, items: Sequence[ObjectRef]) -> tuple[float, float]:
    """(microseconds a link, the median chunk's milliseconds) over ``items``: the median,
    since a shared machine's scheduler puts its own pauses into the longest."""
    chunk = signer.chunk
    pauses = []
    started = time.perf_counter()
    for start in range(0, len(items), chunk):
        before = time.perf_counter()
        signer.sign_get("bench", items[start : start + chunk])
        pauses.append(time.perf_counter() - before)
    total = time.perf_counter() - started
    return total / len(items) * 1e6, statistics.median(pauses) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    items = objects(args.links)
    differ = differ_from_botocore(items[:200])
    if differ:
        print(f"{differ} of 200 canned SHA-1 URLs differ from botocore's", file=sys.stderr)
        return 1
    signers: dict[str, RouteSigner] = {
        "S3 SigV4 (fast signer)": s3(),
        "CloudFront RSA-2048 SHA-256": cloudfront("rsa", "sha256"),
        "CloudFront RSA-2048 SHA-1": cloudfront("rsa", "sha1"),
        "CloudFront ECDSA P-256": cloudfront("ec", "sha256"),
    }
    print(f"{args.links:,} links a round, {args.rounds} rounds; median [min .. max]\n")
    print(f"{'':32}{'us/link':>24}{'chunk':>8}{'chunk pause, ms':>26}")
    for name, signer in signers.items():
        per_link, pauses = [], []
        for _ in range(args.rounds):
            cost, pause = measure(signer, items)
            per_link.append(cost)
            pauses.append(pause)
        print(
            f"{name:32}{_spread(per_link):>24}{signer.chunk:>8}{_spread(pauses):>26}",
        )
    reference = [botocore_cost(items) for _ in range(args.rounds)]
    print(f"{'botocore CloudFrontSigner (RSA)':32}{_spread(reference):>24}{'-':>8}{'-':>26}")
    return 0


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f} .. {max(values):.1f}]"


if __name__ == "__main__":
    sys.exit(main())
