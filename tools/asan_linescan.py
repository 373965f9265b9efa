"""The compiled line scanner's fuzz under AddressSanitizer and UBSan (`make fuzz-linescan`).

``sharebatch/receipts/_linescan.c`` reads access log lines an outsider can write. The test
suite holds its answers to the Python's (tests/receipts/test_linescan.py); this runs the same
differential tests, with many more examples, and the scan's other tests, against a build of the
scanner instrumented to abort on any read out of bounds or undefined behaviour, then the whole
``usage`` of the benchmark's worst-case log. Not part of ``make test``: an instrumented build
and a long fuzz take minutes CI does not have.

    python tools/asan_linescan.py [.venv/bin/python] [examples]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "sharebatch/receipts/_linescan.c"
TESTS = [
    "tests/receipts/test_linescan.py",
    "tests/receipts/test_scan.py",
    "tests/receipts/test_accesslog.py",
]


def _library(name: str) -> str:
    found = subprocess.run(
        ["gcc", f"-print-file-name={name}"], check=True, capture_output=True, text=True
    ).stdout.strip()
    if not os.path.isabs(found):
        raise SystemExit(f"gcc has no {name}: install libasan/libubsan (Debian: gcc)")
    return found


def main() -> int:
    # Absolute, not resolved: the tests run from a copy, and the venv's python is a symlink.
    python = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ROOT / ".venv/bin/python")
    examples = sys.argv[2] if len(sys.argv) > 2 else "20000"
    asked = (
        "import sysconfig as s; print(s.get_paths()['include']);"
        " print(s.get_config_var('EXT_SUFFIX'))"
    )
    include, suffix = subprocess.run(
        [python, "-c", asked], check=True, capture_output=True, text=True
    ).stdout.split()
    with tempfile.TemporaryDirectory(prefix="sharebatch-asan-") as tmp:
        copy = Path(tmp)
        for name in ("sharebatch", "tests", "bench"):
            shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("*.so"))
        shutil.copy(ROOT / "pyproject.toml", copy)
        built = copy / "sharebatch/receipts" / f"_linescan{suffix}"
        subprocess.run(
            [
                "gcc",
                "-shared",
                "-fPIC",
                "-O1",
                "-g",
                "-fsanitize=address,undefined",
                "-fno-sanitize-recover=all",
                "-fno-omit-frame-pointer",
                f"-I{include}",
                "-o",
                str(built),
                str(SOURCE),
            ],
            check=True,
        )
        env = {
            **os.environ,
            "LD_PRELOAD": f"{_library('libasan.so')}:{_library('libubsan.so')}",
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
            "PYTHONPATH": str(copy),
            "SHAREBATCH_REQUIRE_LINESCAN": "1",
            "SHAREBATCH_FUZZ_EXAMPLES": examples,
        }
        # The instrumented copy, not the editable install's build, must be what is imported.
        where = subprocess.run(
            [python, "-c", "from sharebatch.receipts import _linescan; print(_linescan.__file__)"],
            cwd=copy,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if Path(where) != built:
            raise SystemExit(f"imported {where}, not the instrumented {built}")
        pytest = [python, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider"]
        done = subprocess.run([*pytest, *TESTS], cwd=copy, env=env, check=False)
        if done.returncode != 0:
            return done.returncode
        bench = [python, "bench/_usage_run.py", "100000", "--usage", "--traffic", "worst"]
        return subprocess.run(bench, cwd=copy, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
