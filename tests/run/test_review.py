"""The review page OUT/<run-id>/index.html, read as HTML (the browser test is separate)."""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.run import review
from sharebatch.visible import visible
from tests.support import tricky
from tests.support.quarterly import BUCKET, MANIFEST, QuarterlyRun
from tests.support.review_page import parse
from tests.support.s3 import S3, fetch, write_manifest

OTHER_JOB = """\
  - name: other
    bucket: missing-bucket
    prefixes: [x/]
    recipients:
      - id: carol
"""

FILES = {
    "reports/q3/summary.pdf": b"%PDF summary",
    "reports/q3/<img src=x onerror=alert(1)>.txt": b"markup in a key",
    "partners/globex/statement.csv": b"globex,1\n" * 40,
}


@pytest.fixture
def run_dir(quarterly: QuarterlyRun) -> Path:
    """The quarterly run with a job on a missing bucket beside it (exit 1)."""
    return quarterly(FILES, OTHER_JOB, exit_code=1)


def bundle(run_dir: Path, job: str, recipient: str) -> list[dict[str, str]]:
    with (run_dir / job / recipient / "links.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_page_lists_every_recipient_file_and_link(run_dir: Path) -> None:
    """Every bundle row is a row of the page, with the same link, which downloads the bytes."""
    page = parse(run_dir / "index.html")
    files = page.tables["files"]
    expected = bundle(run_dir, "q3", "globex") + bundle(run_dir, "q3", "initech")
    assert [(r["cells"][1], r["cells"][2]) for r in files] == [
        (row["recipient"], row["key"]) for row in expected
    ]
    assert [r["links"] for r in files] == [[row["url"]] for row in expected]
    for row in files:
        key = row["cells"][2]
        assert fetch(row["links"][0]) == FILES[key]
    recipients = {r["cells"][1]: r["cells"] for r in page.tables["recipients"]}
    assert recipients["globex"][:5] == [
        "q3",
        "globex",
        "Globex Corporation finance@globex.example",
        "3",
        review.human_size(sum(len(FILES[r["key"]]) for r in bundle(run_dir, "q3", "globex"))),
    ]
    assert recipients["globex"][6] == "q3/globex"
    assert recipients["carol"][3] == "0" and recipients["carol"][6].startswith("no bundle")


def test_page_shows_totals_and_failures(run_dir: Path) -> None:
    """The header has the run's status, totals and each failure with its reason."""
    text = (run_dir / "index.html").read_text(encoding="utf-8")
    assert '<span class="status-partial" id="status">partial</span>' in text
    assert "<dt>Links</dt><dd>5</dd>" in text and "<dt>Failures</dt><dd>1</dd>" in text
    assert "missing-bucket/x/: NoSuchBucket: NoSuchBucket:" in text


def test_page_is_self_contained_private_and_escaped(run_dir: Path) -> None:
    """No external asset, a CSP allowing only its own inline code, mode 0600, markup escaped."""
    path = run_dir / "index.html"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    page = parse(path)
    assert not [t for t, a in page.tags if t in ("link", "img", "iframe", "object", "embed")]
    assert not [a for t, a in page.tags if t == "script" and "src" in a]
    hrefs = [a["href"] for t, a in page.tags if "href" in a]
    assert hrefs == [link for row in page.tables["files"] for link in row["links"]]
    csp = next(
        a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert csp is not None and csp.startswith("default-src 'none'; style-src 'sha256-")
    text = path.read_text(encoding="utf-8")
    script = text.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = hashlib.sha256(script.encode()).digest()
    assert f"script-src 'sha256-{base64.b64encode(digest).decode()}'" in csp
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in text
    assert "<img" not in text


def test_page_says_plainly_when_it_lists_only_part(
    quarterly: QuarterlyRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past max_rows the page lists the first rows and says how many links it left out."""
    monkeypatch.setattr(review, "MAX_ROWS", 5)
    run_dir = quarterly({f"reports/q3/{i:02d}.csv": b"x" for i in range(12)})
    page = parse(run_dir / "index.html")
    assert len(page.tables["files"]) == 5
    text = (run_dir / "index.html").read_text(encoding="utf-8")
    assert "This page lists the first 5 of 24 links; every link is in the bundles." in text


@pytest.mark.usefixtures("credentials")
def test_dry_run_writes_no_page(s3: S3, tmp_path: Path) -> None:
    """A dry run writes nothing, the review page included."""
    s3.bucket(BUCKET, FILES)
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST + OTHER_JOB)
    CliRunner().invoke(
        app,
        ["run", str(manifest), "--dry-run", "--out", str(tmp_path / "out"),
         "--endpoint-url", s3.endpoint],
        catch_exceptions=False,
    )  # fmt: skip
    assert not (tmp_path / "out").exists()


@given(st.one_of(tricky.texts(), tricky.plain(), st.none(), st.integers()))
@settings(max_examples=200, deadline=None)
def test_shown_is_visible_then_html_escaped_for_any_value(value: object) -> None:
    """The page's fast path for plain ASCII gives exactly escape(visible(...)), quotes too."""
    text = "" if value is None else str(value)
    assert review.shown(value) == html.escape(visible(text), quote=True)
