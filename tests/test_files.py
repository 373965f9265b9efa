"""Tests for sharebatch.files: files that appear whole or not at all, private by default."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from sharebatch.files import atomic_writer, copy_range, private_dir, read_range, write_json


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o077])
@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_the_file_gets_exactly_the_mode_asked_for(tmp_path: Path, umask: int, mode: int) -> None:
    """The mode is the caller's whatever the umask: 0644 is not narrowed, 0600 not widened."""
    old = os.umask(umask)
    try:
        with atomic_writer(tmp_path / "f.txt", mode=mode) as out:
            out.write("text\n")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "f.txt") == mode
    assert (tmp_path / "f.txt").read_text() == "text\n"


def _write_half_then_fail(dest: Path) -> None:
    with atomic_writer(dest) as out:
        out.write("half")
        raise RuntimeError("disk gone")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    """An error inside the block keeps the previous file whole and removes the temporary."""
    dest = tmp_path / "summary.json"
    dest.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk gone"):
        _write_half_then_fail(dest)
    assert dest.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_without_replace_an_existing_file_is_refused(tmp_path: Path) -> None:
    """replace=False never touches an existing file: FileExistsError, no temporary left."""
    dest = tmp_path / "links.csv"
    dest.write_text("first\n")
    with pytest.raises(FileExistsError), atomic_writer(dest, replace=False) as out:
        out.write("second\n")
    assert dest.read_text() == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["links.csv"]


def test_a_symbolic_link_in_place_is_replaced_not_written_through(tmp_path: Path) -> None:
    """The rename replaces a link planted at the destination; the file it named is untouched."""
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    dest = tmp_path / "summary.json"
    dest.symlink_to(victim)
    write_json(dest, {"ok": True})
    assert victim.read_text() == "mine\n"
    assert not dest.is_symlink() and json.loads(dest.read_text()) == {"ok": True}


def test_write_json_returns_the_digest_of_what_it_wrote(tmp_path: Path) -> None:
    """The sha256 is of the bytes on disk (computed while writing, not by reading back)."""
    dest = tmp_path / "summary.json"
    digest = write_json(dest, {"name": "Zoë"})
    assert digest == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert dest.read_text(encoding="utf-8") == '{\n  "name": "Zoë"\n}\n'


def test_private_dir_makes_every_missing_folder_0700(tmp_path: Path) -> None:
    """Missing parents are made 0700 as well, whatever the umask; existing ones are left."""
    old = os.umask(0)
    try:
        made = private_dir(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert made == tmp_path / "a" / "b"
    assert _mode(tmp_path / "a") == _mode(tmp_path / "a" / "b") == 0o700


def test_private_dir_leaves_an_existing_folder_reached_through_dotdot_alone(
    tmp_path: Path,
) -> None:
    """``new/../out`` names a missing ``new`` and the existing folder above it: only the
    folders actually made become 0700, never the existing one (``--out new/../bundles``)."""
    home = tmp_path / "shared"
    home.mkdir()
    home.chmod(0o755)
    private_dir(home / "new" / ".." / "out")
    assert _mode(home) == 0o755
    assert _mode(home / "new") == _mode(home / "out") == 0o700


@pytest.mark.parametrize("append", [False, True])
def test_copy_range_appends_the_bytes_asked_for(tmp_path: Path, append: bool) -> None:
    """``copy_range`` appends exactly a range of the source after what the destination holds,
    in the kernel or, where it refuses (an ``O_APPEND`` destination), by reading and writing."""
    source = tmp_path / "spool"
    source.write_bytes(b"0123456789" * 1000)
    dest = tmp_path / "part"
    dest.write_bytes(b"head:")
    fd = os.open(source, os.O_RDONLY)
    out = os.open(dest, os.O_WRONLY | (os.O_APPEND if append else 0))
    try:
        os.lseek(out, 0, os.SEEK_END)
        copy_range(fd, 3, out, 9997)
        copy_range(fd, 0, out, 0)
        copy_range(fd, 1, out, 2)
    finally:
        os.close(fd)
        os.close(out)
    assert dest.read_bytes() == b"head:" + (b"0123456789" * 1000)[3:] + b"12"


def test_copy_range_and_read_range_refuse_a_source_shorter_than_said(tmp_path: Path) -> None:
    """A range past the source's end is an ``OSError``, never a short copy or an endless loop."""
    source = tmp_path / "spool"
    source.write_bytes(b"abc")
    fd = os.open(source, os.O_RDONLY)
    out = os.open(tmp_path / "part", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert read_range(fd, 1, 2) == b"bc"
        with pytest.raises(OSError, match="missing"):
            copy_range(fd, 1, out, 5)
        with pytest.raises(OSError, match="missing"):
            read_range(fd, 1, 5)
    finally:
        os.close(fd)
        os.close(out)
