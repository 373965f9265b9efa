"""Delivery end to end, as a partner lives it: the cron line ``sharebatch run m.yml --notify``
on a manifest with ``notify:``, the mail caught by a real SMTP server, its one link opened
over HTTP, a file on that page downloaded and compared with what was put in the bucket."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from typer.testing import CliRunner

from sharebatch.cli import app
from tests.support.s3 import S3, fetch, write_manifest
from tests.support.smtp import Server

BUCKET = "acme-reports"
FILES = {
    "reports/q3/summary.pdf": b"%PDF-1.7 quarterly summary " * 40,
    "partners/globex/ledger.csv": b"account,amount\n4000,12.50\n",
}


class _Links(HTMLParser):
    """Every href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def _manifest(folder: Path, port: int) -> Path:
    return write_manifest(
        folder / "q3.yml",
        f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  expires_in: 72h
  notify:
    smtp: {{host: 127.0.0.1, port: {port}, security: none}}
    from: "Acme Reports <reports@acme.example>"
    subject: "{{period.label}} reports for {{recipient.name}}"
    delivery: page
jobs:
  - name: q3
    prefixes: [reports/q3/]
    recipients:
      - id: globex
        name: Globex Corporation
        email: finance@globex.example
        prefixes: [partners/globex/]
""",
    )


def test_a_partner_gets_a_mail_whose_page_serves_the_files(
    s3: S3, tmp_path: Path, smtp: Server
) -> None:
    """run --notify mails one message; its only link is the recipient page, which HTTP
    serves from moto; every file link on that page downloads the very bytes seeded."""
    s3.bucket(BUCKET, FILES)
    manifest = _manifest(tmp_path, smtp.port)
    args = ["run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint]
    result = CliRunner().invoke(app, [*args, "--notify"])
    assert result.exit_code == 0, result.stderr
    [mail] = smtp.mailbox.messages
    assert mail.rcpt_tos == ("finance@globex.example",)
    message = mail.parsed()
    assert message["Subject"].endswith("reports for Globex Corporation")
    text = message.get_body(("plain",))
    assert text is not None
    [page_url] = re.findall(r"https?://\S+", text.get_content())
    assert "/_sharebatch/pages/" in urlsplit(page_url).path  # the page, not a file
    page = fetch(page_url).decode("utf-8")
    parser = _Links()
    parser.feed(page)
    files = [h for h in parser.hrefs if urlsplit(h).path.startswith(f"/{BUCKET}/")]
    assert len(files) == len(FILES)
    for href in files:
        key = unquote(urlsplit(href).path.split("/", 2)[2])
        assert fetch(href) == FILES[key], key
