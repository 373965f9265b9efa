"""One timed read of N generated access log lines, in a fresh process, so its peak RSS is its own.

With ``--usage``, the whole of ``usage`` instead: the log joined to a 100,000-link run folder
written beside it (before the clock starts), usage.json and usage.csv written. With
``--python-scan`` as well, ``usage`` reads every line in Python (``accesslog._fast_scan`` off),
as it does where the compiled scan was not built: the "before" of the compiled scan, measured
in the same sitting.

Used by ``bench_usage.py``. The log is written before the clock starts, in files of 10,000
lines as S3 writes many small files; 206s, 403s, HEADs, IPv6 addresses, a user agent with a raw
quote now and then. Two traffic models (``--traffic``):

* ``real`` (the default): what a share bucket's log holds. Link ``n`` belongs to recipient
  ``n // 1000`` (100 recipients), and a recipient fetches from ``--addresses-per-recipient``
  addresses of their own (an office NAT, a home line, a phone: 2 by default), a fifth of them
  IPv6; ``--leaked-share`` of the links (1 %) were forwarded or posted, and each request of
  theirs comes from a new address anywhere; ``--other-share`` of the lines (30 %) carry no id
  of ours: the uploader's PUTs, the run's own listing, HEADs, other clients of the bucket.
* ``worst``: nearly every line a new remote address (a bucket crawled from a botnet), 15 %
  other lines: each link ends up with ~8.5 distinct addresses, 850,000 strings at 1M lines.

In both, a record of ours names its link's own key (before the review of usage's join, the key
came from the line number, which usage now counts as the id used on another object).

What is timed is
``read_logs`` over the folder, every item consumed, in wall-clock seconds and in CPU seconds
of this process (all its threads): on 2 shared cores the second is what one core of its own
would take. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _sealed_env import seal

seal()

from sharebatch.receipts import accesslog  # noqa: E402
from sharebatch.receipts.accesslog import AccessRecord  # noqa: E402
from sharebatch.receipts.sources import parse_source, read_logs  # noqa: E402
from sharebatch.receipts.usage import usage  # noqa: E402

LINKS = 100_000
PER_FILE = 10_000
OWNER = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
HOST_ID = "s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234="
AGENTS = [
    "curl/8.5.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "aws-cli/2.22.0 md/Botocore#1.35.0 ua/2.0 os/linux#6.8 md/arch#x86_64 lang/python#3.12",
    'Dalvik/2.1.0 (Linux; U; Android 5.1; Alba 10" Build/LMY47I)',
]


def link_ids(count: int) -> list[str]:
    rng = random.Random(15)  # noqa: S311 - reproducible bench data, not secrets
    return [f"{rng.getrandbits(64):016x}" for _ in range(count)]


@dataclass(frozen=True)
class Traffic:
    """How the bench's log is made (see the module's docstring)."""

    model: str = "real"
    addresses_per_recipient: int = 2
    leaked_share: float = 0.01
    other_share: float = 0.30


def _address(rng: random.Random, v6: bool) -> str:
    if v6:
        return f"2001:db8:{rng.randrange(4096):x}::{rng.randrange(65536):x}"
    return f"198.51.{rng.randrange(256)}.{rng.randrange(256)}"


def write_log(folder: Path, lines: int, traffic: Traffic) -> None:
    rng = random.Random(20261202)  # noqa: S311 - reproducible bench data, not secrets
    ids = link_ids(LINKS)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    real = traffic.model == "real"
    ours = 1 - traffic.other_share if real else 0.85
    per = LINKS // 100
    # Their own generator: the worst case's addresses stay what they were before the model.
    people = random.Random(1202)  # noqa: S311 - reproducible bench data, not secrets
    homes = [
        [_address(people, people.random() < 0.2) for _ in range(traffic.addresses_per_recipient)]
        for _ in range(100)
    ]
    leaked = set(people.sample(range(LINKS), round(LINKS * traffic.leaked_share)))
    for first in range(0, lines, PER_FILE):
        rows = []
        for n in range(first, min(first + PER_FILE, lines)):
            when = (start + timedelta(seconds=n // 12)).strftime("[%d/%b/%Y:%H:%M:%S +0000]")
            ip = _address(rng, n % 5 == 0)
            pick = rng.random()
            if pick < ours:
                link = rng.randrange(LINKS)
                if real and link not in leaked:
                    ip = rng.choice(homes[link // per])
                # The link's own key: usage counts a record for a link only on its object
                # (the same id on another key is id_misused, no download).
                key = f"exports/2026/q4/report-{link % 5000:05d}.pdf"
                uri = (
                    f"GET /q3-share/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
                    "AKIAEXAMPLE%2F20261201%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date="
                    "20261201T000000Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host"
                    f"&x-sharebatch-id={ids[link]}&X-Amz-Signature="
                    f"{rng.getrandbits(256):064x} HTTP/1.1"
                )
                status, error, sent = rng.choice(
                    (
                        (200, "-", 48213),
                        (200, "-", 48213),
                        (206, "-", 1),
                        (403, "AccessDenied", 243),
                    )
                )
                op, auth = "REST.GET.OBJECT", "QueryString"
            else:
                key = f"assets/img-{n % 977}.png"
                uri = f"HEAD /q3-share/{key} HTTP/1.1"
                status, error, sent, op, auth = 200, "-", "-", "REST.HEAD.OBJECT", "AuthHeader"
            agent = AGENTS[n % 3] if n % 1000 else AGENTS[3]
            rows.append(
                f'{OWNER} q3-share {when} {ip} - {n:016X} {op} {key} "{uri}" {status} {error} '
                f'{sent} 48213 {rng.randrange(5, 90)} {rng.randrange(1, 20)} "-" "{agent}" - '
                f"{HOST_ID} SigV4 ECDHE-RSA-AES128-GCM-SHA256 {auth} "
                "q3-share.s3.eu-west-1.amazonaws.com TLSv1.3 - - eu-west-1\n"
            )
        (folder / f"2026-12-01-{first // PER_FILE:05d}-LOG").write_text("".join(rows))


async def read_all(folder: Path) -> tuple[int, int]:
    """(records, bad lines) of every line under ``folder``."""
    records = bad = 0
    async for item in read_logs(parse_source(str(folder)), None):
        if type(item) is AccessRecord:
            records += 1
        else:
            bad += 1
    return records, bad


def write_run(run_dir: Path) -> None:
    """A run folder of ``LINKS`` links with the log's ids, as a run writes it: a bundle per
    recipient (100 recipients), and a ``link_issued`` event per link in ``audit.jsonl``."""
    ids = link_ids(LINKS)
    issued = "2026-11-30T06:00:00Z"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps({"run_id": run_dir.name}))
    per = LINKS // 100
    with (run_dir / "audit.jsonl").open("w") as audit:
        for r in range(100):
            recipient = f"r{r:03d}"
            rows = []
            for n in range(r * per, (r + 1) * per):
                key = f"exports/2026/q4/report-{n % 5000:05d}.pdf"
                row = {
                    "recipient": recipient,
                    "bucket": "q3-share",
                    "key": key,
                    "size": 48213,
                    "etag": '"9b2cf535f27731c974343645a3985328"',
                    "last_modified": "2026-11-29T00:00:00Z",
                    "method": "GET",
                    "expires_at": "2026-12-07T06:00:00Z",
                    "link_id": ids[n],
                    "url": f"https://q3-share.s3.eu-west-1.amazonaws.com/{key}?X-Amz-Algorithm="
                    + "x" * 420,
                }
                rows.append(row)
                event = {"event": "link_issued", "level": "debug", "timestamp": issued}
                audit.write(json.dumps({**row, "url_sha256": "0" * 64} | event) + "\n")
            header = {
                "run_id": run_dir.name,
                "job": "q4",
                "recipient": recipient,
                "recipient_name": None,
                "recipient_email": None,
                "generated_at": issued,
                "signer_access_key_id": "AKIAEXAMPLE",
                "expires_at": "2026-12-07T06:00:00Z",
                "links": per,
            }
            folder = run_dir / "q4" / recipient
            folder.mkdir(parents=True)
            bundle = {"header": header, "links": rows}
            (folder / "links.json").write_text(json.dumps(bundle, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lines", type=int)
    parser.add_argument("--usage", action="store_true", help="the whole of usage, not read_logs")
    parser.add_argument("--traffic", choices=("real", "worst"), default=Traffic.model)
    parser.add_argument(
        "--addresses-per-recipient", type=int, default=Traffic.addresses_per_recipient
    )
    parser.add_argument("--leaked-share", type=float, default=Traffic.leaked_share)
    parser.add_argument("--other-share", type=float, default=Traffic.other_share)
    parser.add_argument(
        "--python-scan",
        action="store_true",
        help="read every line in Python, without the compiled scan (receipts/_linescan.c)",
    )
    args = parser.parse_args()
    if args.python_scan:
        accesslog._fast_scan = None
    lines, whole = args.lines, args.usage
    traffic = Traffic(
        args.traffic, args.addresses_per_recipient, args.leaked_share, args.other_share
    )
    with tempfile.TemporaryDirectory(prefix="sharebatch-bench-logs-") as tmp:
        folder = Path(tmp) / "logs"
        folder.mkdir()
        write_log(folder, lines, traffic)
        if whole:
            run_dir = Path(tmp) / "20261130T060000Z-bench"
            write_run(run_dir)
        started, cpu = time.perf_counter(), time.process_time()
        if whole:
            report = usage(run_dir, [parse_source(str(folder))]).usage
            records, bad = report["lines"]["total"] - report["lines"]["bad"], report["lines"]["bad"]
        else:
            records, bad = asyncio.run(read_all(folder))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "lines": records + bad,
                "bad": bad,
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu, 3),
                "peak_rss_mb": round(peak, 1),
                "compiled_scan": accesslog._fast_scan is not None,
            }
        )
    )


if __name__ == "__main__":
    main()
