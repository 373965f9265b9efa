"""Read a YAML file into plain Python data plus a map from field paths to source positions,
and turn problems found later (pydantic errors, cross-field rules) into located issues.

PyYAML's own constructors lose positions and silently keep the last of two duplicate keys, so
the file is composed into a node tree and converted here. Everything that can go wrong in this
step becomes a located ``ManifestIssue``; fatal problems (unreadable file, bad syntax, alias
bombs) raise ``ManifestError`` at once because there is no document to check further.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import yaml

from sharebatch.errors import ManifestError, ManifestIssue
from sharebatch.visible import visible

MAX_FILE_BYTES = 1024 * 1024
# Aliases may share a list between jobs; they may not multiply the document (billion laughs).
MAX_ALIAS_EXPANSION = 10_000
# A manifest nests about seven levels deep; anything far deeper is not a manifest.
MAX_DEPTH = 32
# About 10,000 recipients. Composing is pure Python (tens of microseconds a node), so a 1 MiB
# file of tiny values (250,000 of them) is refused while it is read, not after.
MAX_NODES = 100_000

PathKey = tuple[str | int, ...]

_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp")
)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema ints and booleans.

    YAML 1.1 reads ``1:30`` as 90, ``0600`` as octal 384 and ``no`` as false; in a manifest
    those silently change meaning (a duration, a recipient id), so they stay strings here.
    """

    composed = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.composed += 1
        if self.composed > MAX_NODES:
            raise _TooManyNodes(self.get_mark())
        return super().compose_node(parent, index)


class _TooManyNodes(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


# A fresh dict, so SafeLoader's own table (shared by every other PyYAML user) stays untouched.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _BOOL_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True)
class Location:
    """A 1-based line and column in the source file."""

    line: int
    column: int


@dataclass
class SourceMap:
    """Where each key and value of the document was written, by path from the root."""

    keys: dict[PathKey, Location] = field(default_factory=dict)
    values: dict[PathKey, Location] = field(default_factory=dict)

    def value(self, path: PathKey) -> Location | None:
        """The value at ``path``, or the nearest enclosing node that exists (for missing keys)."""
        for end in range(len(path), -1, -1):
            found = self.values.get(path[:end])
            if found is not None:
                return found
        return None

    def key(self, path: PathKey) -> Location | None:
        """The key that introduces ``path``, falling back to its value's position."""
        return self.keys.get(path) or self.value(path)


@dataclass(frozen=True)
class YamlDocument:
    """The file's bytes, its data as plain Python objects, and non-fatal issues found so far."""

    raw: bytes
    data: object
    source: SourceMap
    issues: list[ManifestIssue]


def grant_levels(data: Mapping[str, Any], job: int, recipient: int) -> list[tuple[PathKey, object]]:
    """The YAML nodes one grant's settings come from, most specific first: the recipient, its
    job, defaults; each with its path (a missing or malformed node is an empty mapping)."""
    jobs = data.get("jobs")
    job_node = jobs[job] if isinstance(jobs, list) and job < len(jobs) else {}
    recipients = job_node.get("recipients") if isinstance(job_node, dict) else None
    own = (
        recipients[recipient]
        if isinstance(recipients, list) and recipient < len(recipients)
        else {}
    )
    return [
        (("jobs", job, "recipients", recipient), own),
        (("jobs", job), job_node),
        (("defaults",), data.get("defaults")),
    ]


def format_path(path: PathKey) -> str:
    """``("jobs", 0, "name")`` -> ``jobs[0].name``, the form people see in messages.

    A key is written by whoever wrote the file: hidden characters in it are shown escaped.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{visible(part)}" if out else visible(part)
    return out


def load_yaml_file(path: str | os.PathLike[str]) -> YamlDocument:
    """Read and convert ``path``; raises ``ManifestError`` if there is no usable document."""
    display = os.fspath(path)
    raw = _read_limited(path, display)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _fatal(display, line, column, "manifest is not UTF-8 text") from None
    root = _compose(text, display)
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag.endswith(":null")):
        raise _fatal(display, None, None, "manifest is empty; it must start with 'version: 1'")
    _check_expansion(root, display)
    builder = _Builder(display)
    data = builder.build(root, ())
    return YamlDocument(raw=raw, data=data, source=builder.source, issues=builder.issues)


def _fatal(file: str, line: int | None, column: int | None, message: str) -> ManifestError:
    return ManifestError([ManifestIssue(file, line, column, "", message)])


def _read_limited(path: str | os.PathLike[str], display: str) -> bytes:
    try:
        # Non-blocking, so that a FIFO opens at once instead of waiting for a writer; the
        # kind is then read from the open descriptor, which nothing can swap in between.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _fatal(display, None, None, _unreadable(path, exc)) from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            kind = _KINDS.get(stat.S_IFMT(status.st_mode), "special file")
            raise _fatal(display, None, None, f"manifest is a {kind}, not a regular file")
        if status.st_size > MAX_FILE_BYTES:
            message = f"manifest is {status.st_size} bytes; the limit is 1 MiB"
            raise _fatal(display, None, None, message)
        with open(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)  # bounded as well: it may grow after fstat
    except OSError as exc:
        raise _fatal(display, None, None, _unreadable(path, exc)) from None
    finally:
        os.close(fd)
    if len(raw) > MAX_FILE_BYTES:
        raise _fatal(display, None, None, "manifest is more than 1 MiB; the limit is 1 MiB")
    return raw


_KINDS = {
    stat.S_IFDIR: "directory",
    stat.S_IFIFO: "FIFO (named pipe)",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def _unreadable(path: str | os.PathLike[str], exc: OSError) -> str:
    if exc.errno == errno.ENXIO:  # what opening a socket gives
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        kind = _KINDS.get(stat.S_IFMT(mode))
        if kind is not None:
            return f"manifest is a {kind}, not a regular file"
    return f"cannot read manifest: {exc.strerror or exc}"


def _compose(text: str, display: str) -> yaml.Node | None:
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        # Raised for control characters before any token exists, so there is no mark.
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = f"character U+{exc.character:04X} is not allowed in YAML"
        raise _fatal(display, line, column, message) from None
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, display) from None
    except RecursionError:
        raise _fatal(display, None, None, "manifest is nested too deeply") from None
    except _TooManyNodes as exc:
        message = f"manifest has more than {MAX_NODES:,} values; refusing to read further"
        raise _fatal(display, exc.mark.line + 1, exc.mark.column + 1, message) from None
    finally:
        loader.dispose()


def _syntax_error(exc: yaml.MarkedYAMLError, display: str) -> ManifestError:
    mark = exc.problem_mark or exc.context_mark
    message = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        where = ""
        if exc.context_mark is not None and exc.context_mark != exc.problem_mark:
            where = f" at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
        # PyYAML words some problems as the second half of a sentence ("but found ...").
        if exc.problem.startswith("but "):
            message = f"{exc.context}{where}, {exc.problem}"
        else:
            message = f"{exc.problem} ({exc.context}{where})"
    if "'\\t'" in message:
        message += "; YAML does not allow tabs for indentation, use spaces"
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    return _fatal(display, line, column, f"invalid YAML: {message}")


def _check_expansion(root: yaml.Node, display: str) -> None:
    """Refuse alias bombs and recursive aliases without expanding anything.

    Sizes are memoised per node, so a document whose aliases would expand to billions of nodes
    is measured in time proportional to what is actually written.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def measure(node: yaml.Node, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in active:
            mark = node.start_mark
            raise _fatal(display, mark.line + 1, mark.column + 1, "an alias refers to itself")
        if depth > MAX_DEPTH:
            mark = node.start_mark
            raise _fatal(display, mark.line + 1, mark.column + 1, "manifest is nested too deeply")
        active.add(id(node))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(measure(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                total += measure(key, depth + 1) + measure(value, depth + 1)
        active.discard(id(node))
        sizes[id(node)] = total
        return total

    expanded = measure(root, 0)
    if expanded - len(sizes) > MAX_ALIAS_EXPANSION:
        raise _fatal(
            display,
            None,
            None,
            f"aliases expand this manifest by more than {MAX_ALIAS_EXPANSION:,} nodes;"
            " refusing to expand them",
        )


def _location(node: yaml.Node) -> Location:
    return Location(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Turns composed nodes into dicts, lists and scalars while recording positions."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.source = SourceMap()
        self.issues: list[ManifestIssue] = []
        self._constructor = yaml.SafeLoader("")

    def _issue(self, node: yaml.Node, path: PathKey, message: str) -> None:
        where = _location(node)
        self.issues.append(
            ManifestIssue(self.display, where.line, where.column, format_path(path), message)
        )

    def build(self, node: yaml.Node, path: PathKey) -> object:
        self.source.values[path] = _location(node)
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                self._issue(node, path, f"unsupported YAML tag {node.tag!r} on a mapping")
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                self._issue(node, path, f"unsupported YAML tag {node.tag!r} on a list")
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        if node.tag not in _SCALAR_TAGS:
            self._issue(node, path, f"unsupported YAML tag {node.tag!r}")
            return None
        try:
            return self._constructor.construct_object(node, deep=True)
        # PyYAML reports a malformed explicitly tagged scalar (`!!int x`, `!!timestamp x`)
        # with whichever builtin exception its converter happens to raise.
        except (yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:
            reason = getattr(exc, "problem", None) or str(exc)
            self._issue(node, path, f"cannot read this value: {reason}")
            return None

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, object]:
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._issue(key_node, path, "a key must be a plain name, not a list or mapping")
                continue
            if key_node.tag == _MERGE_TAG:
                self._issue(
                    key_node, path, "YAML merge keys (<<) are not supported; use 'defaults'"
                )
                continue
            # The key as written: field names are text even when YAML would read `1:` as int.
            key = str(key_node.value)
            key_path = (*path, key)
            first = self.source.keys.get(key_path)
            if first is not None:
                self._issue(key_node, path, f"duplicate key {key!r} (first at line {first.line})")
                continue
            self.source.keys[key_path] = _location(key_node)
            result[key] = self.build(value_node, key_path)
        return result


def show(value: str, limit: int = 60) -> str:
    """Quote a user value for a message without letting a huge value drown the message."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def describe(value: object) -> str:
    """What a YAML value turned out to be, in words for someone who wrote it."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {show(value)}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class IssueCollector:
    """Collects issues for one file, locating each by its field path through the source map."""

    def __init__(
        self, display: str, source: SourceMap, unknown_field: Callable[[PathKey], str]
    ) -> None:
        self.display = display
        self.source = source
        self.unknown_field = unknown_field
        self.items: list[ManifestIssue] = []
        self._seen: set[ManifestIssue] = set()
        self._synced = 0

    def at(self, path: PathKey, message: str, *, key: bool = False) -> None:
        """Record ``message`` at ``path``'s value (or its key), or the nearest enclosing node.

        An issue identical to one already recorded is not recorded again.
        """
        where = self.source.key(path) if key else self.source.value(path)
        line, column = (where.line, where.column) if where else (None, None)
        issue = ManifestIssue(self.display, line, column, format_path(path), message)
        # A value inherited by many recipients is checked once per recipient: report it once.
        # (A set, not a scan of the list: a file of 100,000 bad values must not take hours.)
        self._seen.update(self.items[self._synced :])
        if issue not in self._seen:
            self.items.append(issue)
            self._seen.add(issue)
        self._synced = len(self.items)

    def from_pydantic(self, err: Any) -> None:
        """Record one pydantic error, reworded: its stock texts speak of Python, not YAML."""
        path: PathKey = tuple(err["loc"])
        kind: str = err["type"]
        value: object = err.get("input")
        if kind == "extra_forbidden":
            # Pointing at the key: the value of a misspelt `recipient:` may be lines below.
            self.at(path, self.unknown_field(path), key=True)
            return
        if kind == "value_error":
            message = str(err["ctx"]["error"])
        elif kind == "missing":
            message = "required"
        elif kind == "too_short":
            message = f"must list at least one {str(path[-1]).removesuffix('s')}"
        elif kind == "string_type":
            message = f"expected text, got {describe(value)}"
            if isinstance(value, int | float | date):
                message += " (quote it if you mean text)"
        elif kind == "list_type":
            message = f"expected a list, got {describe(value)}"
            if isinstance(value, str) and len(value) <= 60:
                message += f"; write it as a list: [{value}]"
            elif value is None:
                message += "; write [] for none"
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            message = f"expected a mapping of fields, got {describe(value)}"
        elif kind == "bool_type":
            message = f"expected true or false, got {describe(value)}"
        elif kind == "literal_error":
            message = f"must be {err['ctx']['expected']}, got {describe(value)}"
        else:
            message = str(err["msg"])
        self.at(path, message)
