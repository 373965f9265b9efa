"""What a run writes for hostile keys and for what goes out beside the links.

Keys with invisible or reversing characters, keys with ``.``/``..`` segments that a browser
would send elsewhere, upload slots that go out with the bundles, and prefixes merged into
another: each must be visible in the summary, the review page and the run's output. Every run
is against moto on 127.0.0.1; links are fetched and their answers read.
"""

from __future__ import annotations

import json
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sharebatch.visible import HIDDEN, visible
from tests.conftest import S3, fetch, write_manifest
from tests.linkkit import invoke
from tests.test_review import parse

BUCKET = "hostile-keys"


def run(s3: S3, tmp_path: Path, files: dict[str, bytes], body: str, *extra: str) -> Any:
    s3.bucket(BUCKET, files)
    manifest = write_manifest(
        tmp_path / "m.yml",
        f"version: 1\ndefaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}\n{body}",
    )
    return invoke(
        "run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint,
        *extra,
    )  # fmt: skip


def run_dir(result: Any) -> Path:
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip())


def links_of(folder: Path) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = json.loads((folder / "links.json").read_text())["links"]
    return links


def summary_of(folder: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((folder / "summary.json").read_text())
    return summary


def audit_events(folder: Path, event: str) -> list[dict[str, Any]]:
    lines = (folder / "audit.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


def download_names(url: str) -> tuple[str, str | None]:
    """Fetch the link from S3 and read back the file name its Content-Disposition gives:
    the ``filename`` fallback and the decoded ``filename*`` (None when there is none)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        header = response.headers["Content-Disposition"]
    assert header.isascii()
    message = EmailMessage()
    message["Content-Disposition"] = header
    fallback = message.get_param("filename", header="content-disposition")
    assert isinstance(fallback, str)
    extended = [p for p in header.split("; ") if p.startswith("filename*=")]
    if not extended:
        return fallback, None
    charset, _, encoded = extended[0].removeprefix("filename*=").split("'", 2)
    assert charset == "UTF-8"
    return fallback, unquote(encoded, errors="strict")


# --- invisible and reversing characters ---------------------------------------------------

HIDDEN_KEYS = {
    "evil/\u202egnp.exe.pdf": "gnp.exe.pdf",
    "evil/bell\x07esc\x1b[31m.txt": "bellesc[31m.txt",
    "evil/line\u2028sep\u200b.txt": "linesep.txt",
    "evil/\u202e\u2066": "download",  # nothing left of the name
    "evil/..\u200b": "download",  # dots only once the hidden character is gone
    "evil/r\u00e9sum\u00e9 \u202e.pdf": "r\u00e9sum\u00e9 .pdf",
}


def test_download_names_never_carry_hidden_characters(s3: S3, tmp_path: Path) -> None:
    """Each link, fetched from S3, names its file without controls, bidi or separators (in
    both filename= and filename*=); a name with nothing visible left becomes 'download'."""
    files = {key: key.encode() for key in HIDDEN_KEYS}
    folder = run_dir(run(s3, tmp_path, files, JOB_EVIL))
    links = links_of(folder / "share" / "alice")
    assert sorted(link["key"] for link in links) == sorted(HIDDEN_KEYS)
    for link in links:
        assert fetch(link["url"]) == link["key"].encode()
        fallback, extended = download_names(link["url"])
        expected = HIDDEN_KEYS[link["key"]]
        assert (extended if extended is not None else fallback) == expected
        assert HIDDEN.search(fallback) is None and "%" not in fallback
        assert fallback.strip(".") != ""


JOB_EVIL = "jobs:\n  - name: share\n    prefixes: [evil/]\n    recipients: [{id: alice}]\n"


def test_review_page_shows_hidden_characters_escaped(s3: S3, tmp_path: Path) -> None:
    """On the page a key's bidi override, controls and separators are written as escapes
    (the browser test checks what Chromium renders); nothing hidden is left in any cell."""
    files = {key: key.encode() for key in HIDDEN_KEYS}
    folder = run_dir(run(s3, tmp_path, files, JOB_EVIL))
    page = parse(folder / "index.html")
    keys = [row["cells"][2] for row in page.tables["files"]]
    assert sorted(keys) == sorted(visible(key) for key in HIDDEN_KEYS)
    assert "evil/\\u202egnp.exe.pdf" in keys
    for table in page.tables.values():
        for row in table:
            for cell in [*row["cells"], row["search"]]:
                assert HIDDEN.search(cell) is None, cell
