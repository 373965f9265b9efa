"""Run the whole test suite on a shifted clock, under libfaketime, in parts (`make test-clock`).

Why parts, and why a part that libfaketime kills is run again: libfaketime wraps
`pthread_cond_timedwait`, `getrandom`, `getpid`, `stat` and the clocks of every thread, and
reads the environment inside those wrappers. On a CI runner it once crashed the interpreter
with a segmentation fault in a moto server thread that was only closing a socket (no code of
ours runs there), and one crash threw away the whole pass. A part that dies by a signal is run
again, at most twice, saying so; a part whose *tests* fail is never run again.

The clock does not restart with each part: each part starts at CLOCK plus the real time the
pass has taken so far, so the parts together see the clock one continuous run would see and
the pass crosses the new year while the parts run.

Parts run two at a time (``LANES``), each its own pytest under its own faketime: most of a
test's time is one core waiting on a subprocess, a server thread or a browser, and CI must stay
within 25 minutes. A part's output is printed whole when it ends, so two parts never interleave.
Not pytest-xdist here: a worker libfaketime crashed would be reported as a failed test, not as a
crash this driver can run again.

    python tools/clock_pass.py '2027-12-31 23:57:00' .venv/bin/pytest [pytest args...]
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RERUNS = 2
LANES = 2
# Real seconds a part may take; the longest takes about 2 minutes on 2 busy cores.
PART_LIMIT = 15 * 60
OVERDUE = 124  # timeout(1)'s exit code for a command it stopped
# faketime's own last words when its child died by a signal; only a crash's signals count
# (a kill from outside, by a person, CI's timeout or the OOM killer, is not run again).
_PRINTING = threading.Lock()
_KILLED = re.compile(r"^Caught (Segmentation fault|Bus error|Aborted|Illegal instruction)$")


def parts() -> list[str]:
    """Each test folder, and the ground-floor tests together: parts of a few hundred tests."""
    tests = ROOT / "tests"
    folders = sorted(
        p.name
        for p in tests.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name != "support"
    )
    ground = sorted(p.name for p in tests.glob("test_*.py"))
    found = [f"tests/{name}" for name in folders] + [" ".join(f"tests/{n}" for n in ground)]
    # Biggest first (bytes of test code, a rough measure of time), so that two lanes end
    # together rather than one waiting on a big part started last.
    return sorted(found, key=lambda part: -sum(_bytes(ROOT / p) for p in part.split()))


def _bytes(path: Path) -> int:
    files = [path] if path.is_file() else list(path.rglob("test_*.py"))
    return sum(f.stat().st_size for f in files)


def run_part(
    clock: datetime,
    pytest: list[str],
    part: str,
    faketime: str,
    limit: float = PART_LIMIT,
    whole: bool = False,
) -> tuple[int, str | None]:
    """One part under faketime: its exit code, and the signal that killed it, if one did.

    A part still running after ``limit`` seconds of real time is stopped (its whole process
    group) and fails the pass: under libfaketime a thread's timed wait may never time out, so
    a test that should fail could otherwise hang CI instead.

    ``whole``: the part's output (stdout and stderr together) is held and printed in one piece
    when it ends, so that parts running side by side never interleave.
    """
    stamp = clock.strftime("%Y-%m-%d %H:%M:%S")
    command = [faketime, "-m", stamp, *pytest, *part.split()]
    held: list[str] = [f"\n=== {part} from {stamp} (faked clock)\n"]
    if not whole:
        print(held.pop(), end="", flush=True)
    killed_by = None
    with subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE if whole else None,
        stderr=subprocess.STDOUT if whole else subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        overdue = threading.Event()

        def stop() -> None:
            overdue.set()
            os.killpg(process.pid, signal.SIGKILL)

        watchdog = threading.Timer(limit, stop)
        watchdog.start()
        try:
            lines = process.stdout if whole else process.stderr
            assert lines is not None
            for line in lines:
                if whole:
                    held.append(line)
                else:
                    sys.stderr.write(line)
                found = _KILLED.match(line.strip())
                if found:
                    killed_by = found.group(1)
            process.wait()
        finally:
            watchdog.cancel()
    if held:
        with _PRINTING:
            sys.stdout.write("".join(held))
            sys.stdout.flush()
    if overdue.is_set():
        print(f"=== {part}: still running after {limit:.0f} s, stopped", file=sys.stderr)
        return OVERDUE, None
    return process.returncode, killed_by


def run_pass(
    start: datetime,
    pytest: list[str],
    parts: list[str],
    faketime: str = "faketime",
    clock: Callable[[], float] = time.monotonic,
    limit: float = PART_LIMIT,
    lanes: int = 1,
) -> int:
    """Every part on one continuous faked clock, ``lanes`` at a time, in the order given;
    the first failing part's exit code. After a failure no part starts (those running end)."""
    began = clock()
    waiting = list(reversed(parts))
    failed: list[int] = []
    taking = threading.Lock()

    def lane() -> None:
        while True:
            with taking:
                if failed or not waiting:
                    return
                part = waiting.pop()
            code = _one_part(start, began, clock, pytest, part, faketime, limit, lanes > 1)
            if code != 0:
                with taking:
                    failed.append(code)

    if lanes == 1:
        lane()
    else:
        threads = [threading.Thread(target=lane) for _ in range(lanes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failed:
        return failed[0]
    print(f"\n=== every part passed on the faked clock from {start}")
    return 0


def _one_part(
    start: datetime,
    began: float,
    clock: Callable[[], float],
    pytest: list[str],
    part: str,
    faketime: str,
    limit: float,
    whole: bool,
) -> int:
    """One part, run again when libfaketime killed it (at most ``RERUNS`` times)."""
    for attempt in range(RERUNS + 1):
        now = start + timedelta(seconds=round(clock() - began))
        code, killed_by = run_part(now, pytest, part, faketime, limit, whole)
        if code == 0:
            return 0
        if killed_by is None:
            print(f"=== {part}: tests failed on the faked clock (exit {code})", file=sys.stderr)
            return code
        if attempt == RERUNS:
            print(
                f"=== {part}: libfaketime killed pytest ({killed_by}) {RERUNS + 1} times",
                file=sys.stderr,
            )
            return 1
        print(
            f"=== {part}: libfaketime killed pytest ({killed_by}), not a test failure; "
            f"running this part again ({attempt + 1} of {RERUNS})",
            file=sys.stderr,
        )
    return 1


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    start = datetime.strptime(argv[0], "%Y-%m-%d %H:%M:%S")
    return run_pass(start, argv[1:], parts(), lanes=LANES)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
