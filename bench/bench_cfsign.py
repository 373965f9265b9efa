"""CloudFront link signing in the run: cost per link by key kind, against the S3 fast signer.

Run with ``.venv/bin/python bench/bench_cfsign.py``. Each round signs the same keys through
``run/cfsign.CloudFrontRouteSigner`` (RSA 2048 with SHA-256, with SHA-1, ECDSA P-256) and
through ``run/sign.Signer`` over the fast SigV4 presigner, the way staging calls them
(``sign_get`` on one chunk after another), and reports microseconds per link and the pause
one chunk holds the event loop (``chunk`` links signed between two yields; the median
chunk). The CloudFront keys are made here; nothing is read from disk or the network.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from _sealed_env import seal

seal()

from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402

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


def cloudfront(kind: str, digest: CloudFrontHash) -> CloudFrontRouteSigner:
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    settings = CloudFrontLinks(
        domain="d111111abcdef8.cloudfront.net",
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
    return 0


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f} .. {max(values):.1f}]"


if __name__ == "__main__":
    sys.exit(main())
