"""Mailing benchmark: ``make bench`` runs this after bench_run.py.

1,000 recipients, each mailed their page by ``notify`` (the code path of ``sharebatch
notify``), against an aiosmtpd server in a child process whose every reply waits 20 ms
(bench/_smtp_process.py: the greeting, each command, the end of the data), at concurrency 1
and at concurrency 8, side by side in each round. The run folder is made honestly once: a
real run of a generated manifest (``delivery: page``) on moto in a child process, which stores
1,000 pages and writes ``delivery.json``. Each measurement mails a fresh copy of that folder,
so both start from an empty ledger and do the same work: read the plan and the bundles, build
every message, hand each over, and append each outcome to the ledger and the audit log.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _sealed_env import seal

seal(AWS_ACCESS_KEY_ID="AKIABENCHBENCHBENCH0", AWS_SECRET_ACCESS_KEY="bench-secret")
sys.path.insert(0, str(Path(__file__).parent))

from _servers import moto_process  # noqa: E402

from sharebatch import audit, run_manifest  # noqa: E402
from sharebatch.delivery.notify import notify  # noqa: E402
from sharebatch.models import Connection  # noqa: E402

HERE = Path(__file__).parent
BUCKET = "bench-notify"
DELAY = 0.020
TARGET = 6.0


class Mailserver:
    """The delaying SMTP server in its child process; ``accepted()`` asks it how many
    messages it took so far and how many CPU seconds it has used."""

    def __init__(self, child: subprocess.Popen[str], port: int) -> None:
        self.child = child
        self.port = port

    def accepted(self) -> tuple[int, float]:
        assert self.child.stdin is not None
        assert self.child.stdout is not None
        self.child.stdin.write("count\n")
        self.child.stdin.flush()
        count, cpu = self.child.stdout.readline().split()
        return int(count), float(cpu)


@contextmanager
def mailserver(delay: float) -> Iterator[Mailserver]:
    child = subprocess.Popen(
        [sys.executable, str(HERE / "_smtp_process.py"), str(delay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError("the SMTP server did not start")
        yield Mailserver(child, int(line[1]))
    finally:
        assert child.stdin is not None
        child.stdin.close()  # the child exits when its stdin closes
        child.wait(timeout=30)


def _manifest(path: Path, port: int, recipients: int) -> Path:
    people = "".join(
        f"      - {{id: p{n:04d}, name: Partner {n}, email: finance@p{n:04d}.example}}\n"
        for n in range(recipients)
    )
    path.write_text(
        "version: 1\n"
        "defaults:\n"
        f"  bucket: {BUCKET}\n"
        "  region: eu-west-1\n"
        "  expires_in: 7d\n"
        "  notify:\n"
        f"    smtp: {{host: 127.0.0.1, port: {port}, security: none}}\n"
        '    from: "Acme Reports <reports@acme.example>"\n'
        "    reply_to: ops@acme.example\n"
        "    delivery: page\n"
        "jobs:\n"
        "  - name: q3\n"
        "    prefixes: [reports/q3/]\n"
        f"    recipients:\n{people}"
    )
    return path


def _stats(values: list[float], fmt: str = ".2f") -> str:
    middle = format(statistics.median(values), fmt)
    return f"{middle:>8} [{format(min(values), fmt)}..{format(max(values), fmt)}]"


@dataclass(frozen=True)
class Measure:
    """One ``notify``: its wall time, and the CPU seconds of notify's process and the
    server's (where the time went when the ratio falls short)."""

    seconds: float
    client_cpu: float
    server_cpu: float


def _mail(
    run_dir: Path, copy: Path, concurrency: int, server: Mailserver, expected: int
) -> Measure:
    """``notify`` on a fresh copy of ``run_dir``, timed; every message must arrive."""
    shutil.copytree(run_dir, copy)
    before, server_cpu = server.accepted()
    cpu = time.process_time()
    started = time.perf_counter()
    report = notify(copy, concurrency=concurrency)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    after, server_after = server.accepted()
    sent = report.counts().get("sent", 0)
    if sent != expected or after - before != expected:
        raise SystemExit(
            f"concurrency {concurrency}: {sent} sent, {after - before} arrived, {expected} expected"
        )
    shutil.rmtree(copy)
    return Measure(seconds, cpu, server_after - server_cpu)


def bench_notify(rounds: int, recipients: int, delay: float, tmp: Path) -> tuple[list[str], bool]:
    measured: dict[int, list[Measure]] = {1: [], 8: []}
    with moto_process({BUCKET: [("reports/q3/", 3)]}) as endpoint, mailserver(delay) as server:
        manifest = _manifest(tmp / "notify.yml", server.port, recipients)
        started = time.perf_counter()
        summary = run_manifest(
            manifest, out=tmp / "out", connection=Connection(endpoint_url=endpoint)
        )
        run_seconds = time.perf_counter() - started
        audit.reset()
        if summary.exit_code != 0 or summary.run_dir is None:
            raise SystemExit(f"the run to mail exited {summary.exit_code}")
        run_dir = Path(summary.run_dir)
        for n in range(rounds):
            for concurrency in (1, 8):
                copy = tmp / f"mail-{n}-c{concurrency}"
                measured[concurrency].append(_mail(run_dir, copy, concurrency, server, recipients))
    times = {c: [m.seconds for m in values] for c, values in measured.items()}
    cpu = {c: [m.client_cpu for m in values] for c, values in measured.items()}
    server_cpu = {c: [m.server_cpu for m in values] for c, values in measured.items()}
    ratios = [a / b for a, b in zip(times[1], times[8], strict=True)]
    met = statistics.median(ratios) >= TARGET
    rates = {c: [recipients / s for s in values] for c, values in times.items()}
    return [
        f"notify: {recipients:,} recipients, {delay * 1000:.0f} ms per SMTP reply"
        f" (the run that made the folder: {run_seconds:.1f} s, pages stored on moto)",
        f"  concurrency 1 (s)               {_stats(times[1])}   {_stats(rates[1], ',.1f')} msg/s",
        f"  concurrency 8 (s)               {_stats(times[8])}   {_stats(rates[8], ',.1f')} msg/s",
        f"  concurrency 8 / 1               {_stats(ratios)}   target >= {TARGET}",
        f"  CPU s, notify's process, c1/c8  {_stats(cpu[1])}  {_stats(cpu[8])}",
        f"  CPU s, SMTP server, c1/c8       {_stats(server_cpu[1])}  {_stats(server_cpu[8])}",
    ], met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--delay-ms", type=float, default=DELAY * 1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sharebatch-bench-") as name:
        lines, met = bench_notify(args.rounds, args.recipients, args.delay_ms / 1000, Path(name))
    print(f"rounds: {args.rounds}; median [min..max]; machine: {os.cpu_count()} cores")
    print("\n".join(lines), flush=True)
    if not met:
        print("MISSED: notify concurrency 8 / 1: median past its target", file=sys.stderr)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
