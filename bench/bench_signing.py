"""Presigning throughput: sharebatch's SigV4Presigner against botocore and a bare hash floor.

Run with ``make bench``. Each round measures all contenders back to back, so the ratios
printed are per-round ratios (median, min and max over the rounds), which a busy machine
disturbs less than absolute rates. Before timing, the first 1,000 URLs are compared with
botocore's under a frozen clock; any difference exits with status 1.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final
from unittest import mock

from _sealed_env import seal

seal()

import botocore.auth  # noqa: E402 - after the environment is sealed
import botocore.session  # noqa: E402
from botocore.config import Config  # noqa: E402

from sharebatch.models import Credentials  # noqa: E402
from sharebatch.s3.sigv4 import SigV4Presigner  # noqa: E402

REGION = "eu-west-1"
BUCKET = "sharebatch-bench"
STYLE: Final = "auto"
EXPIRES = 86_400
CREDENTIALS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
FROZEN = datetime(2024, 1, 15, 12, 34, 56, tzinfo=UTC)
WORDS = ["report", "Q3 summary", "données", "日本語", "invoice #42", "a+b=c", "x", "final (2)"]


def make_keys(count: int) -> list[tuple[str, dict[str, str]]]:
    """Keys shaped like real listings, each with the download name sharebatch signs in."""
    rng = random.Random(20240115)  # noqa: S311 - reproducible test data, not secrets
    out = []
    for i in range(count):
        name = f"{rng.choice(WORDS)}-{i}.{rng.choice(['pdf', 'csv', 'tar.gz', 'txt'])}"
        key = f"exports/{rng.randint(2019, 2025)}/{rng.choice(WORDS)}/{name}"
        out.append((key, {"ResponseContentDisposition": f'attachment; filename="{name}"'}))
    return out


def botocore_presign() -> Callable[[str, dict[str, str]], str]:
    """The botocore path of ``Signers.presigner`` (same ``client_config`` settings)."""
    client = botocore.session.Session().create_client(
        "s3",
        region_name=REGION,
        aws_access_key_id=CREDENTIALS.access_key_id,
        aws_secret_access_key=CREDENTIALS.secret_access_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": STYLE},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )

    def presign(key: str, params: dict[str, str]) -> str:
        return str(
            client.generate_presigned_url(
                "get_object",
                Params={"Bucket": BUCKET, "Key": key, **params},
                ExpiresIn=EXPIRES,
                HttpMethod="GET",
            )
        )

    return presign


def ours(clock: Callable[[], datetime] | None = None) -> Callable[[str, dict[str, str]], str]:
    presigner = SigV4Presigner(
        CREDENTIALS,
        region=REGION,
        endpoint_url=None,
        addressing_style=STYLE,
        clock=clock or (lambda: datetime.now(UTC)),
    )
    return lambda key, params: presigner("GET", BUCKET, key, EXPIRES, params)


def verify(keys: Sequence[tuple[str, dict[str, str]]]) -> int:
    """How many of ``keys`` sign differently from botocore at one frozen instant."""
    fast = ours(lambda: FROZEN)
    slow = botocore_presign()
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=FROZEN):
        return sum(fast(k, p) != slow(k, p) for k, p in keys)


def rate(
    presign: Callable[[str, dict[str, str]], str], keys: Sequence[tuple[str, dict[str, str]]]
) -> float:
    start = time.perf_counter()
    for key, params in keys:
        presign(key, params)
    return len(keys) / (time.perf_counter() - start)


def floor_inputs(keys: Sequence[tuple[str, dict[str, str]]]) -> list[tuple[bytes, bytes]]:
    """(canonical request, string-to-sign prefix) per key, the bytes one URL's hashes read."""
    fast = ours(lambda: FROZEN)
    prefix = b"AWS4-HMAC-SHA256\n20240115T123456Z\n20240115/eu-west-1/s3/aws4_request\n"
    out = []
    for key, params in keys:
        url = fast(key, params)
        path, query = url.split("/", 3)[3].split("?")
        canonical = f"GET\n/{path}\n{query.rsplit('&', 1)[0]}\nhost:x\n\nhost\nUNSIGNED-PAYLOAD"
        out.append((canonical.encode(), prefix))
    return out


def floor_hmac_new(inputs: Sequence[tuple[bytes, bytes]]) -> float:
    """SHA-256 of the canonical request, then hmac.new with the cached signing key."""
    key = hashlib.sha256(b"cached signing key").digest()
    sha256 = hashlib.sha256
    start = time.perf_counter()
    for canonical, prefix in inputs:
        hmac.new(key, prefix + sha256(canonical).hexdigest().encode(), sha256).hexdigest()
    return len(inputs) / (time.perf_counter() - start)


def floor_pads(inputs: Sequence[tuple[bytes, bytes]]) -> float:
    """The same two hashes with HMAC's key pads hashed once, as SigV4Presigner does."""
    block = hashlib.sha256(b"cached signing key").digest().ljust(64, b"\0")
    inner0 = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer0 = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    sha256 = hashlib.sha256
    start = time.perf_counter()
    for canonical, prefix in inputs:
        inner = inner0.copy()
        inner.update(prefix + sha256(canonical).hexdigest().encode())
        outer = outer0.copy()
        outer.update(inner.digest())
        outer.hexdigest()
    return len(inputs) / (time.perf_counter() - start)


def spread(values: Sequence[float], fmt: str) -> str:
    med, low, high = statistics.median(values), min(values), max(values)
    return f"{format(med, fmt):>10}  [{format(low, fmt)} .. {format(high, fmt)}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--botocore-keys", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    keys = make_keys(args.keys)
    sample = keys[: args.botocore_keys]
    mismatches = verify(keys[:1000])
    print(f"check: first 1,000 URLs vs botocore at a frozen clock: {1000 - mismatches} identical")
    if mismatches:
        print(f"FAIL: {mismatches} URLs differ from botocore's", file=sys.stderr)
        return 1

    inputs = floor_inputs(keys)
    fast, slow = ours(), botocore_presign()
    rows: dict[str, list[float]] = {"ours": [], "botocore": [], "floor_new": [], "floor_pads": []}
    for _ in range(args.rounds):
        rows["ours"].append(rate(fast, keys))
        rows["botocore"].append(rate(slow, sample))
        rows["floor_new"].append(floor_hmac_new(inputs))
        rows["floor_pads"].append(floor_pads(inputs))

    print(
        f"\nGET URLs with response-content-disposition, {REGION}, addressing {STYLE!r}; "
        f"{args.rounds} rounds, median [min .. max]\n"
    )
    print(f"{'':54}{'URLs/s':>10}")
    labels = {
        "ours": f"(a) sharebatch SigV4Presigner ({len(keys):,} keys/round)",
        "botocore": f"(b) botocore generate_presigned_url ({len(sample):,} keys/round)",
        "floor_new": "(c) hash floor: sha256 + hmac.new, cached key",
        "floor_pads": "(c') hash floor: sha256 + HMAC with cached pads",
    }
    for name, label in labels.items():
        print(f"{label:54}{spread(rows[name], ',.0f')}")
    print(f"\n{'ratio (per round)':54}")
    missed = []
    for label, other, target in [
        ("(a) / (b)   ours vs botocore", "botocore", 40.0),
        ("(a) / (c)   ours vs hash floor (hmac.new)", "floor_new", 0.35),
        ("(a) / (c')  ours vs hash floor (cached pads)", "floor_pads", None),
    ]:
        ratios = [a / b for a, b in zip(rows["ours"], rows[other], strict=True)]
        goal = "" if target is None else f"   target >= {target}"
        print(f"{label:54}{spread(ratios, '.2f')}{goal}")
        if target is not None and statistics.median(ratios) < target:
            missed.append(label)
    print(
        f"\nbotocore is timed on the first {len(sample):,} keys per round (at ~3,000 URLs/s, "
        f"{len(keys):,} would take half a minute each)."
    )
    for label in missed:
        print(f"MISSED: {label}: median below its target", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
