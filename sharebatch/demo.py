"""``sharebatch demo``: the real run against an embedded S3, then one real download.

It starts moto's S3 server on 127.0.0.1 (a random free port), seeds a private bucket with
sample quarterly reports, runs the demo manifest (``sharebatch/data/demo.yml``, package data,
so the demo works from any folder) through ``run_manifest`` (the code path of ``sharebatch
run``), and fetches one produced link over HTTP to show it returns the bytes that were
uploaded. The seeding uses boto3 directly: it plays the part of the organisation that
owns the bucket, not of sharebatch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sharebatch.errors import SharebatchError, UsageError
from sharebatch.models import Connection, RunSummary
from sharebatch.run.runner import run_manifest
from sharebatch.units import counted

DEMO_MANIFEST = resources.files("sharebatch") / "data" / "demo.yml"
DEMO_BUCKET = "acme-quarterly-reports"
DEMO_REGION = "eu-west-1"
# Fake keys for the embedded server: it accepts any; real credentials must never go there.
_DEMO_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIADEMODEMODEMODEMO",
    "AWS_SECRET_ACCESS_KEY": "demo-secret-key-for-the-embedded-s3-only",
    "AWS_DEFAULT_REGION": DEMO_REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def sample_files() -> dict[str, bytes]:
    """The seeded objects: a shared quarterly pack and one folder per partner."""
    files: dict[str, bytes] = {}
    for name in ("summary.pdf", "balance-sheet.xlsx", "notes on results.txt"):
        files[f"reports/2026/Q3/{name}"] = f"ACME Q3 2026 {name}\n".encode() * 64
    for partner in ("globex", "initech", "umbrella"):
        for month in ("07", "08", "09"):
            key = f"partners/{partner}/2026-{month}-statement.csv"
            files[key] = (
                f"partner,month,amount\n{partner},2026-{month},{len(partner) * 1000}\n".encode()
            )
    files["reports/2026/Q3/"] = b""  # a console-made "folder" marker, which is never shared
    return files


@contextmanager
def embedded_s3() -> Iterator[str]:
    """Start moto's server on 127.0.0.1 with a random port; yield its endpoint URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise UsageError(
            "the demo needs the embedded S3 server: pip install 'sharebatch[demo]' "
            "(or run `make demo`)"
        ) from None
    # The server's request log would print every presigned URL it serves.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def seed(endpoint: str, files: dict[str, bytes]) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=DEMO_REGION)
    client.create_bucket(
        Bucket=DEMO_BUCKET, CreateBucketConfiguration={"LocationConstraint": DEMO_REGION}
    )
    for key, body in files.items():
        client.put_object(Bucket=DEMO_BUCKET, Key=key, Body=body)


@contextmanager
def _demo_environment() -> Iterator[None]:
    """Fake credentials for the embedded server only, restored afterwards."""
    saved = dict(os.environ)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(_DEMO_ENV)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass(frozen=True)
class DemoReport:
    summary: RunSummary
    lines: list[str]


def run_demo(manifest: Path | None, out: Path) -> DemoReport:
    """Run ``manifest`` (default: the one shipped in the package) on the embedded S3."""
    if manifest is None:
        with resources.as_file(DEMO_MANIFEST) as shipped:
            return run_demo(shipped, out)
    if not manifest.is_file():
        raise UsageError(f"{manifest}: demo manifest not found")
    files = sample_files()
    with _demo_environment(), embedded_s3() as endpoint:
        seed(endpoint, files)
        summary = run_manifest(manifest, out=out, connection=Connection(endpoint_url=endpoint))
        run_dir = Path(summary.run_dir or ".")
        bundles = sorted(run_dir.glob("*/*/links.json"))
        lines = [f"run folder: {run_dir}"]
        lines += [f"bundle: {path.parent}  ({counted(_count(path), 'link')})" for path in bundles]
        lines.append(f"summary: {run_dir / 'summary.json'}   audit log: {run_dir / 'audit.jsonl'}")
        lines.append(f"review page (open in a browser): {run_dir / 'index.html'}")
        lines.append(_check_one_link(bundles[0], files))
    return DemoReport(summary=summary, lines=lines)


def _count(bundle: Path) -> int:
    return len(json.loads(bundle.read_text(encoding="utf-8"))["links"])


def _check_one_link(bundle: Path, files: dict[str, bytes]) -> str:
    link = json.loads(bundle.read_text(encoding="utf-8"))["links"][0]
    with urllib.request.urlopen(link["url"], timeout=10) as response:  # noqa: S310 - our own link
        body = response.read()
    if body != files[link["key"]]:
        raise SharebatchError(f"downloaded {link['key']!r} does not match the uploaded file")
    return (
        f"downloaded {link['key']!r} through its presigned link: {counted(len(body), 'byte')}, "
        f"sha256 {hashlib.sha256(body).hexdigest()[:16]}..., identical to the uploaded file"
    )
