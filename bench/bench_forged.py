"""Forged traffic against ``sharebatch usage``: peak RSS and CPU for 1,000,000 hostile lines.

Each line carries a new id, a new address and a new 160-character user agent: the worst case
for the tallies. ``hex``: every id well formed (16 lowercase hex) and never issued, so the first
1,000 are tallied one by one and the rest together; ``malformed``: every id 300+ characters of
no id at all, all under one tally. Each mode runs in a fresh process, so each peak RSS is its
own. Target (issue 15, review): well under 200 MB.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sharebatch.receipts.sources import parse_source  # noqa: E402
from sharebatch.receipts.usage import usage  # noqa: E402
from tests.support.accesslog import log_line  # noqa: E402
from tests.support.usage_run import BUCKET, usage_run  # noqa: E402

TARGET_MB = 200


def _write(path: Path, mode: str, lines: int, at: datetime) -> None:
    uri = f"GET /{BUCKET}/k?x-sharebatch-id=IDX HTTP/1.1"
    template = log_line(
        bucket=BUCKET, time=at, request_uri=uri, key="k", remote_ip="IPX", user_agent="AGX"
    )
    with path.open("w", encoding="utf-8") as out:
        for i in range(lines):
            link_id = f"{i:016x}" if mode == "hex" else f"{i:x}-" + "z" * 300
            address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            agent = f"agent-{i}-" + "y" * 150
            line = template.replace("IDX", link_id).replace("IPX", address)
            out.write(line.replace("AGX", agent) + "\n")


def one(mode: str, lines: int) -> None:
    """One mode in this process: the log written, usage run, its CPU and peak RSS printed."""
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="sharebatch-forged-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        _write(logs / "log", mode, lines, now - timedelta(days=1))
        run = usage_run(Path(tmp) / "out", now)
        start = time.process_time()
        report = usage(run.run_dir, [parse_source(str(logs))], now=now)
        cpu = time.process_time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    signals = len(report.usage["signals"])
    print(f"{mode:>9}: {lines:,} lines, {signals} signals, {cpu:.1f} s CPU, peak RSS {peak:.0f} MB")
    if peak > TARGET_MB:
        raise SystemExit(f"peak RSS {peak:.0f} MB over {TARGET_MB} MB")


def main() -> int:
    """Both modes, each in a fresh process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--one", choices=("hex", "malformed"))
    args = parser.parse_args()
    if args.one:
        one(args.one, args.lines)
        return 0
    print(f"usage over forged lines (target: peak RSS <= {TARGET_MB} MB)")
    failed = 0
    for mode in ("hex", "malformed"):
        command = [sys.executable, __file__, "--one", mode, "--lines", str(args.lines)]
        failed |= subprocess.run(command, check=False).returncode
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
