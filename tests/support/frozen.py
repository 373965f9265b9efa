"""A script of tests/support run in its own process under libfaketime's stopped wall clock.

The byte-for-byte tests (the golden run, two synthetic runs compared) start a Python module
under ``faketime -m -f FROZEN_AT`` so that every time sharebatch reads repeats, and so does
every signature. Only the wall clock stops: asyncio schedules by the monotonic one
(``DONT_FAKE_MONOTONIC=1``).

Why a run libfaketime kills runs again: libfaketime wraps the clocks, ``pthread_cond_timedwait``,
``stat`` and more in every thread, and on a loaded CI runner it has crashed the interpreter with
a segmentation fault in a moto server thread (no code of ours runs there), both in the clock
pass (tools/clock_pass.py, which runs such a part again) and in a golden run. The likely cause:
Debian 12's libfaketime 0.9.10 initialises itself through shared variables without
synchronisation, data races that libfaketime's PR #488 ("Fix several data races", 2025, written
while packaging it for Debian 13) fixed; Debian 12's package predates it. A run that faketime
reports dead by a crash signal is run again into an emptied folder, at most ``RERUNS`` times,
saying so on stderr with the crashed run's Python traceback (``PYTHONFAULTHANDLER``); a run that
merely exits non-zero is returned as it is, for its test to judge.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

FROZEN_AT = "2026-11-28 12:00:00"
RERUNS = 2
# faketime's own last words when its child died by a signal; only a crash's signals count (a
# kill from outside, by a person or a timeout, is not run again). The same as the clock pass's.
CRASHED = re.compile(
    r"^Caught (Segmentation fault|Bus error|Aborted|Illegal instruction)$", re.MULTILINE
)


def environment() -> dict[str, str]:
    """This process's environment without libfaketime (under `make test-clock` it runs in one:
    a frozen run starts clean of it), the monotonic clock left running, crashes traced."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FAKETIME") and not (k == "LD_PRELOAD" and "faketime" in v)
    }
    env["DONT_FAKE_MONOTONIC"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def run(
    module: str,
    out: Path,
    *args: str,
    timeout: float,
    faketime: str = "faketime",
) -> subprocess.CompletedProcess[str]:
    """``python -m module out *args`` under the stopped clock, from the repository's root.

    Skips where faketime is missing (fails in CI, which installs it).
    """
    import pytest

    if shutil.which(faketime) is None:
        if os.environ.get("CI") == "true":
            pytest.fail("faketime is required in CI (.ci/run installs it)")
        pytest.skip("a frozen-clock run needs libfaketime: apt-get install faketime")
    command = [
        # -m: the thread-safe libfaketime (the runs serve moto from threads).
        faketime, "-m", "-f", FROZEN_AT, sys.executable, "-m", module, str(out), *args,
    ]  # fmt: skip
    attempt = 0
    while True:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        crash = CRASHED.search(done.stderr)
        if crash is None or attempt == RERUNS:
            return done
        attempt += 1
        print(
            f"libfaketime killed {module} ({crash.group(1)}), not a failure of the run; "
            f"running it again ({attempt} of {RERUNS}). Its last words:\n"
            f"{done.stderr[-4000:]}",
            file=sys.stderr,
        )
        # The crashed run's files would mix with the next run's.
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(mode=0o700)
