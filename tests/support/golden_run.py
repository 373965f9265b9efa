"""The golden run: one fixed manifest on an embedded S3, under a frozen clock.

Run as a script under libfaketime with the wall clock stopped (``faketime -f``), so that every
time sharebatch reads (X-Amz-Date, generated_at, audit timestamps, moto's LastModified) is the
same on every run, and so is every signature. The monotonic clock is left running
(``DONT_FAKE_MONOTONIC=1``): asyncio schedules by it. ``tests/e2e/test_golden.py`` drives it.

    faketime -f '2026-11-28 12:00:00' python -m tests.support.golden_run OUT

With ``--s3`` the same run goes through ``sharebatch run --out s3://golden-runs/out/`` (the
CLI, a private work folder under OUT) onto the embedded S3, and is fetched back into
``OUT/bundles/<run-id>`` (``tests/remote/test_golden_s3.py``).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

from tests.support import frozen

# A loopback address no other test uses, and a fixed port: the endpoint is signed into every
# URL, so it must be the same on every run.
HOST, PORT = "127.0.0.23", 45731
ENDPOINT = f"http://{HOST}:{PORT}"
BUCKET = "golden-reports"
ACCESS_KEY = "AKIAGOLDENGOLDENGOLD"
SECRET_KEY = "golden/secret+key/that-must-never-be-logged"
RUN_ID = "golden-run"
# The fixed port admits one golden run at a time, and the suite runs in parallel (pytest-xdist
# workers, the clock pass's parts two at a time): each run holds this lock while it serves.
PORT_LOCK = Path(tempfile.gettempdir()) / f"sharebatch-golden-{PORT}.lock"

MANIFEST = f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  endpoint_url: {ENDPOINT}
  expires_in: 72h
  period: quarter
jobs:
  - name: q3-partners
    prefixes: ["reports/{{period.label}}/shared/"]
    filters: {{exclude: ["**/*.tmp"]}}
    recipients:
      - id: globex
        name: Globex Corporation
        email: finance@globex.example
        prefixes: ["partners/globex/{{period.label}}/"]
        upload:
          prefix: "inbox/{{period.label}}/globex/"
          keys: [signed-statement.pdf]
          max_size: 20MB
          content_types: [application/pdf]
      - id: initech
        name: Initech
        formats: [json]
        download_name: "initech-{{basename}}"
        prefixes: ["partners/initech/{{period.label}}/"]
  - name: q3-auditors
    expires_at: 2026-11-30T17:00:00Z
    prefixes: [reports/]
    recipients:
      - id: kpmg-audit
        name: External auditors
        formats: [csv]
        upload:
          prefix: "inbox/{{period.label}}/kpmg/"
          max_size: 5MB
          content_types: [application/pdf, text/csv]
"""

OBJECTS = {
    "reports/2026-Q3/shared/summary.pdf": b"%PDF-1.7 summary\n",
    "reports/2026-Q3/shared/figures.csv": b"quarter,revenue\nQ3,100\n",
    "reports/2026-Q3/shared/draft.tmp": b"not shared",
    "reports/2026-Q3/shared/evil/\u202egnp.exe.pdf": b"bidi",
    "reports/2026-Q3/shared/tab\there.txt": b"tab",
    "reports/2026-Q3/shared/a/../escape.pdf": b"dot segments",
    "reports/2026-Q2/old.pdf": b"older quarter",
    "partners/globex/2026-Q3/statement.pdf": b"%PDF globex statement",
    "partners/initech/2026-Q3/statement.pdf": b"%PDF initech statement",
    "partners/initech/2026-Q3/notes =1+1.txt": b"formula-looking name",
}


_DRAWN = [0]


def deterministic_bits(size: int) -> bytes:
    """Stands in for ``link_ids.random_bits``: SHA-256 of a counter, the same every run."""
    out = b""
    while len(out) < size:
        _DRAWN[0] += 1
        out += hashlib.sha256(f"golden link ids {_DRAWN[0]}".encode()).digest()
    return out[:size]


RUNS_BUCKET = "golden-runs"


def _published(out: Path) -> int:
    """The golden run through ``run --out s3://``, fetched back into ``bundles/``."""
    from sharebatch import audit
    from sharebatch.cli import app
    from sharebatch.models import Connection
    from sharebatch.remote.folders import fetch_folder

    work = out / "work"
    work.mkdir(mode=0o700)
    code = 0
    try:
        app(
            ["run", "golden.yml", "--out", f"s3://{RUNS_BUCKET}/out/", "--run-id", RUN_ID,
             "--concurrency", "1", "--no-split", "--work-dir", "work", "-q",
             # The manifest's own endpoint, for the runs bucket too: the same URLs.
             "--endpoint-url", ENDPOINT],
            prog_name="sharebatch",
        )  # fmt: skip
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    audit.reset()
    if code == 0:
        fetch_folder(
            f"s3://{RUNS_BUCKET}/out/{RUN_ID}/",
            Path("bundles") / RUN_ID,
            connection=Connection(endpoint_url=ENDPOINT),
        )
    # The work folder is gone: nothing of the run stays on local disk.
    return code if not any(work.iterdir()) else 99


# What the tests compare a golden run against, and how (`tests/e2e/test_golden.py`,
# `tests/remote/test_golden_s3.py`).
EXPECTED = Path(__file__).resolve().parent.parent / "e2e" / "golden" / RUN_ID
_DURATION = re.compile(r'("(?:duration_)?seconds": )[0-9.e+-]+')


def masked(data: bytes) -> bytes:
    """A produced file as it is committed: its durations (the one thing a frozen clock does
    not fix) read as 0."""
    return _DURATION.sub(r"\g<1>0", data.decode("utf-8")).encode("utf-8")


def files(root: Path) -> dict[str, Path]:
    """Every file under ``root`` by its relative path."""
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def run_frozen(tmp_path: Path, *args: str) -> Path:
    """This script in its own process under libfaketime at ``frozen.FROZEN_AT``; the run folder."""
    process = frozen.run("tests.support.golden_run", tmp_path, *args, timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    return tmp_path / "bundles" / RUN_ID


def main(out: Path, *, s3: bool = False) -> int:
    # A sealed environment: the run sees only the golden credentials, never a profile.
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    import boto3
    from moto.server import ThreadedMotoServer

    import sharebatch
    from sharebatch.run import link_ids

    # Link ids are random like the clock is current: the one source is replaced as
    # libfaketime replaces the clock, so every id, URL and digest repeats.
    link_ids.random_bits = deterministic_bits
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port_lock = os.open(PORT_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(port_lock, fcntl.LOCK_EX)  # released by the kernel when this process ends
    server = ThreadedMotoServer(ip_address=HOST, port=PORT, verbose=False)
    server.start()
    try:
        client = boto3.client("s3", endpoint_url=ENDPOINT, region_name="eu-west-1")
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        for key, body in OBJECTS.items():
            client.put_object(Bucket=BUCKET, Key=key, Body=body)
        if s3:
            client.create_bucket(
                Bucket=RUNS_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
            )
            # The runs bucket has no manifest to name its region.
            os.environ["AWS_DEFAULT_REGION"] = "eu-west-1"
        client.close()
        # Relative paths: the audit log and headers record them, and they must not name the
        # test's temporary folder.
        os.chdir(out)
        Path("golden.yml").write_text(MANIFEST, encoding="utf-8")
        if s3:
            return _published(out)
        summary = sharebatch.run_manifest(
            "golden.yml", out="bundles", run_id=RUN_ID, concurrency=1, split_folders=False
        )
    finally:
        server.stop()
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), s3="--s3" in sys.argv[2:]))
