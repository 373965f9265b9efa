"""CloudFront signing throughput: our signer with each key kind, beside botocore's.

Run with ``make bench``. Each round signs the same keys with every contender back to back, so
the ratios printed are per-round ratios (median, min and max), which a busy machine disturbs
less than absolute rates. Before timing, the first 200 canned SHA-1 URLs are compared with
botocore's ``CloudFrontSigner`` (the oracle the tests use); any difference exits with status 1.

The public-key operation is nearly all of the cost: RSA 2048 signs a few thousand policies a
second, ECDSA P-256 about ten times more, so the key kind decides how long a big run signs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from botocore.signers import CloudFrontSigner as BotocoreSigner  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402

from sharebatch.cloudfront.sign import CloudFrontSigner  # noqa: E402

DOMAIN = "d111111abcdef8.cloudfront.net"
KEY_PAIR_ID = "K2JCJMDEHXQW5F"
EXPIRES = datetime(2027, 3, 1, tzinfo=UTC)
Sign = Callable[[str], str]


def _keys(count: int) -> list[str]:
    return [f"exports/2026/Q3 summary/report-{i}.pdf" for i in range(count)]


def _ours(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, hash: str) -> Sign:
    signer = CloudFrontSigner(domain=DOMAIN, key_pair_id=KEY_PAIR_ID, key=key, hash=hash)  # type: ignore[arg-type]
    return lambda k: signer.sign(k, EXPIRES)


def _botocore(key: rsa.RSAPrivateKey) -> Sign:
    signer = BotocoreSigner(KEY_PAIR_ID, lambda m: key.sign(m, padding.PKCS1v15(), hashes.SHA1()))  # noqa: S303 - CloudFront's SHA-1 scheme, the oracle
    # botocore takes the URL as given: the key percent-encoded as ours encodes it.
    return lambda k: signer.generate_presigned_url(
        f"https://{DOMAIN}/{k.replace(' ', '%20')}", date_less_than=EXPIRES
    )


def _rate(sign: Sign, keys: Sequence[str]) -> float:
    start = time.perf_counter()
    for k in keys:
        sign(k)
    return len(keys) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=2_000, help="links a round, per contender")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    contenders: dict[str, Sign] = {
        "botocore rsa sha1": _botocore(rsa_key),
        "ours rsa sha1": _ours(rsa_key, "sha1"),
        "ours rsa sha256": _ours(rsa_key, "sha256"),
        "ours ecdsa p256": _ours(ec_key, "sha256"),
    }
    keys = _keys(args.links)
    oracle, ours_sha1 = contenders["botocore rsa sha1"], contenders["ours rsa sha1"]
    differ = sum(oracle(k) != ours_sha1(k) for k in keys[:200])
    if differ:
        print(f"{differ} of 200 canned SHA-1 URLs differ from botocore's", file=sys.stderr)
        return 1
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, sign in contenders.items():
            rates[name].append(_rate(sign, keys))
    base = rates["botocore rsa sha1"]
    print(f"CloudFront signing, {args.links:,} links x {args.rounds} rounds (canned policy)")
    for name, got in rates.items():
        ratios = [g / b for g, b in zip(got, base, strict=True)]
        print(
            f"  {name:<18} {statistics.median(got):>9,.0f} links/s"
            f"   x botocore: median {statistics.median(ratios):.2f}"
            f" (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
