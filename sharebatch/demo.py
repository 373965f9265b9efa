"""``sharebatch demo``: the real run against an embedded S3, the real mailing, real downloads.

It starts moto's S3 server and an aiosmtpd SMTP server on 127.0.0.1 (random free ports),
seeds a private bucket with sample quarterly reports, runs the demo manifest
(``sharebatch/data/demo.yml``, package data, so the demo works from any folder) through
``run_manifest`` (the code path of ``sharebatch run``), and fetches one produced link over
HTTP to show it returns the bytes that were uploaded. Then ``notify`` (the code path of
``sharebatch notify``) mails each recipient their page through the embedded server; the demo
writes each captured message as a ``.eml`` file (0600) under ``<run folder>/demo-mailbox/``,
follows the page link in one of them and one download link on that page, and compares bytes.

The SMTP port is known only once the server listens, so the demo runs a copy of the shipped
manifest with that port, written to ``OUT/demo.yml``. A manifest given with ``--manifest`` is
run as it is and mails nobody: its notify: settings could name a real server.
The seeding uses boto3 directly: it plays the part of the organisation that owns the bucket,
not of sharebatch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sharebatch.delivery.notify import notify
from sharebatch.errors import SharebatchError, UsageError
from sharebatch.files import atomic_writer, private_dir
from sharebatch.models import Connection, RunSummary
from sharebatch.run.runner import run_manifest
from sharebatch.units import counted
from sharebatch.visible import visible

DEMO_MANIFEST = resources.files("sharebatch") / "data" / "demo.yml"
DEMO_BUCKET = "acme-quarterly-reports"
DEMO_REGION = "eu-west-1"
MAILBOX = "demo-mailbox"
_LOOPBACK = "127.0.0.1"
_URL = re.compile(r"https?://\S+")
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._@+-]")
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
        endpoint = f"http://{host}:{port}"
        # moto keeps its buckets process-wide: an earlier demo in this process left its own.
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 - our own server
        yield endpoint
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
class Captured:
    """One message the embedded SMTP server accepted: its envelope's recipients and bytes."""

    rcpt_tos: tuple[str, ...]
    data: bytes = field(repr=False)  # the message holds the page link

    def parsed(self) -> EmailMessage:
        message: EmailMessage = message_from_bytes(self.data, policy=default)
        return message


@dataclass
class DemoMailbox:
    """The embedded server's handler: keeps every message it accepts."""

    port: int = 0
    messages: list[Captured] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.messages.append(
                Captured(tuple(envelope.rcpt_tos), envelope.original_content or b"")
            )
        return "250 2.0.0 Ok: captured by the sharebatch demo"


@contextmanager
def embedded_smtp() -> Iterator[DemoMailbox]:
    """Start aiosmtpd on 127.0.0.1 with a free port; yield its mailbox (``port`` set)."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        raise UsageError(
            "the demo needs the embedded SMTP server: pip install 'sharebatch[demo]' "
            "(or run `make demo`)"
        ) from None
    with socket.socket() as probe:  # the Controller checks its server by connecting to it,
        probe.bind((_LOOPBACK, 0))  # which port 0 would not allow
        port = int(probe.getsockname()[1])
    mailbox = DemoMailbox(port)
    controller = Controller(mailbox, hostname=_LOOPBACK, port=port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


def manifest_for(shipped: Path, out: Path, smtp_port: int) -> Path:
    """``OUT/demo.yml``: the shipped manifest with the embedded SMTP server's port."""
    data = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    data["defaults"]["notify"]["smtp"]["port"] = smtp_port
    path = private_dir(out) / "demo.yml"
    with atomic_writer(path) as copy:
        copy.write(
            f"# {shipped.name} as shipped with sharebatch, with the port of the SMTP server"
            f" `sharebatch demo` started\n{yaml.safe_dump(data, sort_keys=False)}"
        )
    return path


@dataclass(frozen=True)
class DemoReport:
    summary: RunSummary
    lines: list[str]


def run_demo(manifest: Path | None, out: Path) -> DemoReport:
    """Run ``manifest`` (default: the one shipped in the package) on the embedded S3; with
    the shipped one, mail its recipients through the embedded SMTP server."""
    if manifest is None:
        with resources.as_file(DEMO_MANIFEST) as shipped:
            return _run_demo(shipped, out, mail=True)
    if not manifest.is_file():
        raise UsageError(f"{manifest}: demo manifest not found")
    return _run_demo(manifest, out, mail=False)


def _run_demo(manifest: Path, out: Path, *, mail: bool) -> DemoReport:
    files = sample_files()
    with _demo_environment(), embedded_s3() as endpoint, embedded_smtp() as mailbox:
        if mail:
            manifest = manifest_for(manifest, out, mailbox.port)
        seed(endpoint, files)
        summary = run_manifest(manifest, out=out, connection=Connection(endpoint_url=endpoint))
        run_dir = Path(summary.run_dir or ".")
        bundles = sorted(run_dir.glob("*/*/links.json"))
        lines = [f"run folder: {run_dir}"]
        lines += [f"bundle: {path.parent}  ({counted(_count(path), 'link')})" for path in bundles]
        lines.append(f"summary: {run_dir / 'summary.json'}   audit log: {run_dir / 'audit.jsonl'}")
        lines.append(f"review page (open in a browser): {run_dir / 'index.html'}")
        lines.append(_check_one_link(bundles[0], files))
        if mail and summary.exit_code == 0:
            lines += _mail(run_dir, mailbox, bundles, files)
    return DemoReport(summary=summary, lines=lines)


def _mail(
    run_dir: Path, mailbox: DemoMailbox, bundles: list[Path], files: dict[str, bytes]
) -> list[str]:
    """Mail every recipient, keep what the server captured as .eml files, follow one mail's
    page link and one download link on that page."""
    report = notify(run_dir)
    if report.exit_code:
        failed = ", ".join(f"{o.job}/{o.recipient}: {o.reply}" for o in report.failed)
        raise SharebatchError(f"the demo's mails did not all go out: {visible(failed)}")
    folder = private_dir(run_dir / MAILBOX)
    lines = [f"mails captured by the embedded SMTP server on 127.0.0.1:{mailbox.port}:"]
    # Sorted: the messages arrive in whatever order notify's connections finish.
    captured_mails = sorted(mailbox.messages, key=lambda m: m.rcpt_tos)
    for number, captured in enumerate(captured_mails, 1):
        message = captured.parsed()
        path = folder / f"{number:02d}-{_UNSAFE_IN_NAME.sub('_', captured.rcpt_tos[0])}.eml"
        # Ours are 7-bit (quoted-printable bodies, encoded-word headers): ASCII round-trips.
        with atomic_writer(path) as eml:
            eml.write(captured.data.decode("ascii"))
        lines.append(
            f"  mail to {visible(', '.join(captured.rcpt_tos))}:"
            f" {visible(str(message['Subject']))!r}  {path}"
        )
    lines.append(_follow_page(captured_mails[0], bundles, files))
    return lines


class _Downloads(HTMLParser):
    """The download links of a recipient page (``<a class="download">``)."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a" and found.get("class") == "download" and found.get("href"):
            self.hrefs.append(str(found["href"]))


def _follow_page(captured: Captured, bundles: list[Path], files: dict[str, bytes]) -> str:
    text = captured.parsed().get_body(("plain",))
    found = _URL.search(text.get_content() if text is not None else "")
    if found is None:
        raise SharebatchError("the demo's first mail holds no page link")
    page = _fetch(found.group())
    parser = _Downloads()
    parser.feed(page.decode("utf-8"))
    if not parser.hrefs:
        raise SharebatchError("the page the demo's first mail links to lists no download")
    keys = {
        link["url"]: link["key"]
        for bundle in bundles
        for link in json.loads(bundle.read_text(encoding="utf-8"))["links"]
    }
    href = parser.hrefs[0]
    if href not in keys:
        raise SharebatchError("the page's first download link is none of the run's links")
    body = _fetch(href)
    if body != files[keys[href]]:
        raise SharebatchError(f"downloaded {keys[href]!r} does not match the uploaded file")
    return (
        f"followed the page link in the mail to {visible(', '.join(captured.rcpt_tos))}:"
        f" the page lists {counted(len(parser.hrefs), 'file')}; its link to {keys[href]!r}"
        f" gave {counted(len(body), 'byte')}, identical to the uploaded file"
    )


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own link
        body: bytes = response.read()
    return body


def _count(bundle: Path) -> int:
    return len(json.loads(bundle.read_text(encoding="utf-8"))["links"])


def _check_one_link(bundle: Path, files: dict[str, bytes]) -> str:
    link = json.loads(bundle.read_text(encoding="utf-8"))["links"][0]
    body = _fetch(link["url"])
    if body != files[link["key"]]:
        raise SharebatchError(f"downloaded {link['key']!r} does not match the uploaded file")
    return (
        f"downloaded {link['key']!r} through its presigned link: {counted(len(body), 'byte')}, "
        f"sha256 {hashlib.sha256(body).hexdigest()[:16]}..., identical to the uploaded file"
    )
