"""Hostile input: names, links already in OUT, object keys and YAML built to do harm.

Every case asserts what was written: nothing at all outside OUT (a snapshot of the test's whole
temporary folder before and after), and nothing at all when the input is refused.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.errors import SharebatchError
from sharebatch.run.bundles import csv_cell
from sharebatch.run.folder import LOCK_NAME, RunFolder
from tests.support.s3 import S3, fetch, write_manifest


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple[str, int, str]]:
    """Every path under ``root`` (not following links) with its kind, mode and content."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if skip is not None and (path == skip or skip in path.parents):
                continue
            info = path.lstat()
            if path.is_symlink():
                found[str(path)] = ("link", info.st_mode, os.readlink(path))
            elif path.is_dir():
                found[str(path)] = ("dir", info.st_mode, "")
            else:
                found[str(path)] = ("file", info.st_mode, path.read_bytes().hex())
    return found


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


MANIFEST = """\
version: 1
defaults: {{bucket: any-bucket, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: {job}
    prefixes: [reports/]
    download_name: {download_name}
    recipients: [{{id: {recipient}}}]
"""


@pytest.mark.parametrize(
    ("job", "recipient", "download_name"),
    [
        ("share", '"../../escape"', "x"),
        ("share", '"/tmp/absolute"', "x"),
        ("share", '".."', "x"),
        ("share", '"a/../../b"', "x"),
        ("share", '"c:\\\\evil"', "x"),
        ('"../jobs"', "alice", "x"),
        ('"/etc/cron.d"', "alice", "x"),
        ("share", "alice", '"../../{basename}"'),
        ("share", "alice", '"/etc/{basename}"'),
    ],
)
def test_names_that_would_leave_out_are_refused_and_nothing_is_written(
    tmp_path: Path, job: str, recipient: str, download_name: str
) -> None:
    """Traversal or absolute job names, recipient ids and download names: exit 2, a located
    message, and not one file or folder written anywhere."""
    manifest = write_manifest(
        tmp_path / "m.yml",
        MANIFEST.format(job=job, recipient=recipient, download_name=download_name),
    )
    before = snapshot(tmp_path)
    result = invoke("run", str(manifest), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{manifest}:")
    assert snapshot(tmp_path) == before


def test_a_symlink_in_place_of_the_run_folder_is_not_followed(s3: S3, tmp_path: Path) -> None:
    """OUT/<run-id> already a link to elsewhere: refused (exit 2), the target stays empty."""
    s3.bucket("any-bucket", {"reports/a.txt": b"a"})
    manifest = write_manifest(
        tmp_path / "m.yml", MANIFEST.format(job="share", recipient="alice", download_name="x")
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "fixed").symlink_to(outside)
    before = snapshot(tmp_path, skip=tmp_path / "out" / LOCK_NAME)
    result = invoke(
        "run",
        str(manifest),
        "--out",
        str(tmp_path / "out"),
        "--run-id",
        "fixed",
        "--endpoint-url",
        s3.endpoint,
    )
    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert snapshot(tmp_path, skip=tmp_path / "out" / LOCK_NAME) == before
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("victim_exists", [True, False])
def test_a_symlink_in_place_of_the_lock_file_is_not_followed(
    s3: S3, tmp_path: Path, victim_exists: bool
) -> None:
    """OUT/.sharebatch.lock a link to another file: refused (exit 2); that file is neither
    created, truncated nor written, and no run folder is made."""
    s3.bucket("any-bucket", {"reports/a.txt": b"a"})
    manifest = write_manifest(
        tmp_path / "m.yml", MANIFEST.format(job="share", recipient="alice", download_name="x")
    )
    victim = tmp_path / "victim.txt"
    if victim_exists:
        victim.write_text("precious\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LOCK_NAME).symlink_to(victim)
    before = snapshot(tmp_path)
    result = invoke(
        "run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint
    )
    assert result.exit_code == 2
    assert "symbolic link" in result.stderr
    assert snapshot(tmp_path) == before


def test_a_symlink_planted_in_a_run_folder_is_not_written_through(tmp_path: Path) -> None:
    """A link appearing inside the run folder (a race) is refused before any bundle file is
    opened: nothing is written where it points."""
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = RunFolder.create(tmp_path / "out", "run-1")
    (folder.path / "share").symlink_to(outside)
    with pytest.raises(SharebatchError, match="symbolic link"):
        folder.bundle_dir("share", "alice")
    for job, recipient in (("..", "x"), ("ok", "../../x"), ("/abs", "x"), ("ok", "")):
        with pytest.raises(SharebatchError, match="cannot name a folder"):
            folder.bundle_dir(job, recipient)
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in folder.path.iterdir()) == [".staging", "share"]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1+1", "'+1+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "\\x09=1"),
        ("\r=1", "\\x0d=1"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("a\u0085b", "a\\x85b"),
        ("plain/ké y=1.pdf", "plain/ké y=1.pdf"),
        (42, 42),
    ],
)
def test_csv_cells_cannot_be_formulas_or_controls(value: object, cell: object) -> None:
    """A cell starting with = + - @ gets a leading ', control characters are shown as \\xNN."""
    assert csv_cell(value) == cell


def test_hostile_keys_are_neutralised_in_csv_and_exact_in_json(s3: S3, tmp_path: Path) -> None:
    """Keys that a spreadsheet would run as formulas, or that carry terminal escapes, are
    inert in links.csv and on a console log, exact in links.json, and each link still
    downloads its own object."""
    keys = [
        '=HYPERLINK("http://evil.example","click")',
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1:A9)",
        "ctl/bell\x07",
        "ctl/esc\x1b[31mred",
        "ctl/tab\t=1",
        "ctl/cr\r=1",
    ]
    s3.bucket("any-bucket", {key: key.encode() for key in keys})
    manifest = write_manifest(
        tmp_path / "m.yml",
        "version: 1\ndefaults: {bucket: any-bucket, region: eu-west-1, expires_in: 1h}\n"
        "jobs:\n  - name: share\n    prefixes: ['=', '+', '-', '@', 'ctl/']\n"
        "    recipients: [{id: alice}]\n",
    )
    out = tmp_path / "out"
    before = snapshot(tmp_path, skip=out)
    result = invoke(
        "run", str(manifest), "--out", str(out), "--endpoint-url", s3.endpoint,
        "-v", "--log-format", "console",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert snapshot(tmp_path, skip=out) == before
    # Every key is on stderr (link_issued), escaped: no escape sequence reaches the terminal.
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "esc\\x1b[31mred" in result.stderr
    bundle = Path(result.stdout.strip()) / "share" / "alice"
    rows = list(csv.DictReader(io.StringIO((bundle / "links.csv").read_bytes().decode())))
    links = json.loads((bundle / "links.json").read_text())["links"]
    assert sorted(link["key"] for link in links) == sorted(keys)
    assert [row["key"] for row in rows] == [csv_cell(link["key"]) for link in links]
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
            assert value.isprintable(), value
    assert [fetch(link["url"]) for link in links] == [link["key"].encode() for link in links]


def billion_laughs() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "version: 1\n" + "\n".join(lines) + "\njobs: *a9\n"


BOMBS = {
    "billion-laughs": (billion_laughs(), "refusing to expand them"),
    "deep-flow": ("version: 1\njobs: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
    "deep-block": (
        "version: 1\njobs:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(900)),
        "nested too deeply",
    ),
    "too-many-values": ("version: 1\njobs:\n" + "- 1\n" * 200_000, "more than 100,000 values"),
    "too-big": ("version: 1\n# " + "x" * (1024 * 1024) + "\n", "the limit is 1 MiB"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_yaml_bombs_are_refused_with_exit_2(tmp_path: Path, name: str) -> None:
    """Alias bombs, deep nesting, too many values or bytes: exit 2, said plainly, nothing
    written. (Each is refused before it is expanded or fully read; see the report for times.)"""
    text, message = BOMBS[name]
    manifest = write_manifest(tmp_path / "bomb.yml", text)
    before = snapshot(tmp_path)
    result = invoke("run", str(manifest), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.endswith("nothing was listed or written\n")
    assert snapshot(tmp_path) == before
