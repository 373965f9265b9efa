"""Two shards and a merge vs one process (issue 18's Speed): ``make bench`` runs this.

The S3 Inventory report of ``bench_inventory.py`` (1,000,000 objects in 10 CSV.gz files, rows
shuffled) is put on moto, in its own process: listing on moto would measure moto's CPU, not
ours. Each round runs, through the real CLI, each command in a fresh process:

- (a) one process: ``sharebatch run M --workers 1``;
- (b) two shards at once, ``run M --shard 0/2 --run-id X --workers 1`` and ``--shard 1/2``,
  then ``sharebatch merge OUT/X``, timed from the shards' start to the merge's end.

The ratio is a / b, end to end wall clock, the two measured side by side in each round (their
order alternates, so neither always runs on the warmer or quieter machine). Target >= 1.5x on
2 cores, median of the rounds with min and max; exit 1 below it, or when the merged bundles do
not hold the one process's rows in its order (so a broken merge cannot pass). Each part's wall
and CPU seconds (the process and the workers it reaped) and the load average before each round
are printed, with a CPU estimate of what two idle cores would give: one process's CPU against
(shard 0 + shard 1) / 2 + merge.

    python bench/bench_shards.py [--links 1000000] [--rounds 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _sealed_env import seal

seal(AWS_ACCESS_KEY_ID="AKIABENCHBENCHBENCH0", AWS_SECRET_ACCESS_KEY="bench-secret")
sys.path.insert(0, str(Path(__file__).parent))

from _servers import moto_process  # noqa: E402
from bench_inventory import DEST, FILES, PREFIXES, put_report  # noqa: E402

TARGET = 1.5
SHARDS = 2


@dataclass(frozen=True)
class Part:
    """One command's wall seconds and CPU seconds (its own and its reaped children's)."""

    wall: float
    cpu: float


def _manifest(folder: Path, uri: str) -> Path:
    # _inventory_run.py's manifest: the same 100 prefixes, one recipient.
    manifest = folder / "m.yml"
    prefixes = "".join(f"      - data/p{i:03d}/\n" for i in range(PREFIXES))
    manifest.write_text(
        "version: 1\njobs:\n  - name: bulk\n    bucket: bench-bucket\n    region: eu-west-1\n"
        f"    source: {{inventory: '{uri}'}}\n"
        f"    expires_in: 7d\n    prefixes:\n{prefixes}    recipients: [{{id: r}}]\n"
    )
    return manifest


def _start(log: Path, *args: str) -> tuple[subprocess.Popen[bytes], float]:
    with log.open("wb") as sink:
        child = subprocess.Popen(
            [sys.executable, "-m", "sharebatch", *args], stdout=sink, stderr=subprocess.STDOUT
        )
    return child, time.perf_counter()


def _wait(child: subprocess.Popen[bytes], started: float, log: Path) -> Part:
    # wait4, not Popen.wait: it gives this child's rusage alone (with the workers it reaped),
    # where RUSAGE_CHILDREN would mix the two shards running at once.
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, child.args))} exited {child.returncode}:\n"  # type: ignore[arg-type]
            + log.read_text(errors="replace")[-2000:]
        )
    return Part(wall, usage.ru_utime + usage.ru_stime)


def _one(work: Path, manifest: Path, endpoint: str) -> tuple[Part, Path]:
    out = work / "one"
    child, started = _start(
        work / "one.log",
        *("run", str(manifest), "--out", str(out), "--run-id", "one", "--workers", "1"),
        *("--endpoint-url", endpoint, "--quiet"),
    )
    return _wait(child, started, work / "one.log"), out / "one"


def _sharded(work: Path, manifest: Path, endpoint: str) -> tuple[list[Part], Part, float, Path]:
    out = work / "sharded"
    children = [
        (
            *_start(
                work / f"shard{k}.log",
                *("run", str(manifest), "--out", str(out), "--run-id", "x", "--workers", "1"),
                *("--shard", f"{k}/{SHARDS}", "--endpoint-url", endpoint, "--quiet"),
            ),
            work / f"shard{k}.log",
        )
        for k in range(SHARDS)
    ]
    began = children[0][1]
    shards = [_wait(child, started, log) for child, started, log in children]
    child, started = _start(work / "merge.log", "merge", str(out / "x"), "--quiet")
    merged = _wait(child, started, work / "merge.log")
    return shards, merged, time.perf_counter() - began, out / "x"


def _rows(run: Path) -> tuple[int, str, dict[str, int]]:
    """Every bundle's links: how many, a digest of them in order, and how many per bundle.

    A link's object fields are compared (recipient, bucket, key, size, ETag, last modified);
    its expiry, id and URL are not, as they name the moment and the run that signed it.
    """
    digest = hashlib.sha256()
    files: dict[str, int] = {}
    for path in sorted(run.glob("*/*/links.*")):
        name = str(path.relative_to(run))
        digest.update(name.encode() + b"\0")
        rows = 0
        with path.open("rb") as lines:
            if path.suffix == ".csv":
                next(lines)  # the header
                for line in lines:
                    digest.update(b",".join(line.split(b",", 6)[:6]) + b"\n")
                    rows += 1
            else:
                for line in lines:
                    if line.startswith(b'    {"recipient": '):
                        digest.update(line.split(b', "method": ', 1)[0] + b"\n")
                        rows += 1
        files[name] = rows
    return sum(files.values()), digest.hexdigest(), files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--links", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--keep", type=Path, help="Leave the last round's folders (or a failed one's) here."
    )
    options = parser.parse_args()
    ratios: list[float] = []
    estimates: list[float] = []
    with (
        moto_process({DEST: [], "bench-bucket": []}) as endpoint,
        tempfile.TemporaryDirectory(prefix="sharebatch-bench-shards-") as tmp,
    ):
        started = time.perf_counter()
        uri = put_report(endpoint, options.links)
        print(
            f"report of {options.links:,} objects in {FILES} CSV.gz files put on moto"
            f" in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        manifest = _manifest(Path(tmp), uri)
        for round_ in range(options.rounds):
            work = Path(tmp) / f"round{round_ + 1}"
            work.mkdir()
            load = os.getloadavg()[0]
            if round_ % 2 == 0:
                one, one_run = _one(work, manifest, endpoint)
                shards, merged, sharded, merged_run = _sharded(work, manifest, endpoint)
            else:
                shards, merged, sharded, merged_run = _sharded(work, manifest, endpoint)
                one, one_run = _one(work, manifest, endpoint)
            expected, got = _rows(one_run), _rows(merged_run)
            last = round_ == options.rounds - 1
            if options.keep is not None and (last or expected != got):
                shutil.copytree(work, options.keep, dirs_exist_ok=True)
            if expected != got or expected[0] < 2 * options.links:
                print(
                    f"round {round_ + 1}: the merged bundles differ from the one process's:"
                    f" {got[0]:,} rows (digest {got[1][:12]}, files {got[2]}) against"
                    f" {expected[0]:,} (digest {expected[1][:12]}, files {expected[2]})"
                )
                return 1
            ratio = one.wall / sharded
            estimate = one.cpu / (sum(s.cpu for s in shards) / SHARDS + merged.cpu)
            ratios.append(ratio)
            estimates.append(estimate)
            parts = ", ".join(
                f"shard {k} {s.wall:.1f} s ({s.cpu:.1f} CPU s)" for k, s in enumerate(shards)
            )
            print(
                f"round {round_ + 1} (load {load:.1f}{', sharded first' if round_ % 2 else ''}):"
                f" one process {one.wall:.1f} s ({one.cpu:.1f} CPU s); {parts},"
                f" merge {merged.wall:.1f} s ({merged.cpu:.1f} CPU s): {sharded:.1f} s;"
                f" {ratio:.2f}x (CPU estimate {estimate:.2f}x);"
                f" {got[0]:,} rows alike in {len(got[2])} bundles",
                flush=True,
            )
            shutil.rmtree(work)  # 1M links: ~5 GB of bundles and parts a round
    median = statistics.median(ratios)
    verdict = "ok" if median >= TARGET else "MISSED"
    print(
        f"{SHARDS} shards + merge vs one process, --workers 1, {options.links:,} links:"
        f" {median:.2f}x [{min(ratios):.2f}..{max(ratios):.2f}] (target >= {TARGET}) {verdict};"
        f" CPU estimate {statistics.median(estimates):.2f}x"
        f" [{min(estimates):.2f}..{max(estimates):.2f}]"
    )
    return 0 if median >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
