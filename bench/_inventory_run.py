"""One run of N links through the real runner, its objects read from an S3 Inventory report.

Used by ``bench_inventory.py`` in a fresh process per round, so each peak RSS is that run's
own. The report (manifest.json, its checksum, CSV.gz data files) is on moto, as S3 Inventory
lays it out; the 100 prefixes and keys are those of ``_memory_run.py``'s synthetic lister, so
the two runs issue the same links. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _sealed_env import seal

seal(AWS_ACCESS_KEY_ID="AKIABENCHBENCHBENCH0", AWS_SECRET_ACCESS_KEY="bench-secret")

from sharebatch.models import Connection  # noqa: E402
from sharebatch.run import runner  # noqa: E402

PREFIXES = 100


def main() -> None:
    endpoint, uri = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="sharebatch-bench-") as tmp:
        manifest = Path(tmp) / "m.yml"
        prefixes = "".join(f"      - data/p{i:03d}/\n" for i in range(PREFIXES))
        manifest.write_text(
            "version: 1\njobs:\n  - name: bulk\n    bucket: bench-bucket\n    region: eu-west-1\n"
            f"    source: {{inventory: '{uri}'}}\n"
            f"    expires_in: 7d\n    prefixes:\n{prefixes}    recipients: [{{id: r}}]\n"
        )
        started = time.perf_counter()
        summary = asyncio.run(
            runner.run_manifest_async(
                manifest, out=Path(tmp) / "out", connection=Connection(endpoint_url=endpoint)
            )
        )
        seconds = time.perf_counter() - started
        rows = summary.report["totals"]["links"]
        read = summary.report.get("inventories", [{}])[0]
        # How long the report took to find, check, read and sort, before the first page:
        # its event is near the top of the audit log, which holds every link after it.
        events: dict[str, datetime] = {}
        with (Path(str(summary.run_dir)) / "audit.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                event = json.loads(line)
                events.setdefault(event["event"], datetime.fromisoformat(event["timestamp"]))
                if "inventory_read" in events:
                    break
        reading = (events["inventory_read"] - events["run_started"]).total_seconds()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "links": rows,
                "peak_rss_mb": round(peak, 1),
                "seconds": round(seconds, 2),
                "status": read.get("status"),
                "read_seconds": round(reading, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
