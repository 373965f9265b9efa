"""Hostile access-log lines: parsing time grows with the line, not with its square.

Run with ``make bench``. A line full of quotes after the status fields (where the Referer and
User-Agent are split) once took time quadratic in its length (40 s of CPU for 64 KiB).
Each flood shape of ``tests/support/accesslog.QUOTE_FLOODS`` is parsed at 16 KiB and at 64 KiB,
best of five; linear work takes about 4 times as long for 4 times the text, quadratic 16.
The target: at most 6 times, for every shape.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sharebatch.receipts.accesslog import parse_lines
from tests.support.accesslog import QUOTE_FLOODS, log_line

HEAD = (
    log_line(
        bucket="q3-share",
        time=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
        request_uri="GET /q3-share/q3.pdf?x-sharebatch-id=0123456789abcdef HTTP/1.1",
        key="q3.pdf",
    ).split(' "-" "')[0]
    + " "
)


def seconds(text: str) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        parse_lines("f", 1, [text])
        best = min(best, time.process_time() - started)
    return best


def main() -> int:
    missed = 0
    print("quote floods: CPU seconds to parse one line, 16 KiB vs 64 KiB (best of 5)")
    for number, flood in enumerate(QUOTE_FLOODS):
        small, large = HEAD + flood[: len(flood) // 4], HEAD + flood
        ratio = seconds(large) / max(seconds(small), 1e-6)
        verdict = "ok" if ratio <= 6 else "MISSED"
        missed += verdict != "ok"
        print(f"  flood {number}: x{ratio:.1f} for x4 the text   target <= 6   {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
