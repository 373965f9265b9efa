"""Run metrics for monitoring scheduled runs, in Prometheus text format.

``write_metrics`` follows node_exporter's textfile collector convention: the file is written
to a temporary name in the same folder and renamed into place, so the collector never reads
half a file (it only reads ``*.prom``; the temporary name ends in ``.tmp``). Every series
carries a ``manifest`` label, so several manifests can report into one folder.

The file holds counts and times only, never a link, and is world-readable (0644) like every
textfile-collector file, because node_exporter usually runs as another user.

``render_gauges`` and ``write_exposition`` are the format and the writer of any such file:
``usage`` (receipts) writes its own gauges through them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sharebatch.errors import SharebatchError, UsageError
from sharebatch.files import atomic_writer

STATUSES = ("ok", "partial", "failed", "denied", "interrupted", "error")
"""Values of the ``status`` label: a run's status, or ``error`` when it stopped early."""


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """What one run reports; ``earliest_expiry`` is None when no link was issued."""

    manifest: str
    status: str
    exit_code: int
    finished_at: datetime
    duration_seconds: float
    links: int = 0
    bytes: int = 0
    failures: int = 0
    unlinkable: int = 0
    earliest_expiry: datetime | None = None


def check_metrics_path(path: Path) -> None:
    """Refuse, before a run starts, a metrics file whose folder does not exist."""
    try:
        if not path.parent.is_dir():
            raise UsageError(f"--metrics-file {path}: folder {path.parent} does not exist")
        if path.is_dir():
            raise UsageError(f"--metrics-file {path} is a folder")
    except OSError as exc:  # a name too long, say: is_dir raises instead of saying False
        raise UsageError(f"--metrics-file {path}: {exc.strerror or exc}") from None


Gauge = tuple[str, str, Mapping[str, float]]
"""A gauge: its name after ``sharebatch_``, its help text, and its samples by label text."""


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels(**values: str) -> str:
    """The label text of a sample, ``name="value",...``, each value escaped as Prometheus asks."""
    return ",".join(f'{name}="{_label(value)}"' for name, value in values.items())


def render_gauges(gauges: Iterable[Gauge]) -> str:
    """The exposition text of ``gauges``: HELP and TYPE lines, then one line per sample."""
    lines = []
    for name, help_text, samples in gauges:
        lines += [f"# HELP sharebatch_{name} {help_text}", f"# TYPE sharebatch_{name} gauge"]
        lines += [f"sharebatch_{name}{{{key}}} {_number(v)}" for key, v in samples.items()]
    return "\n".join(lines) + "\n"


def render_metrics(run: RunMetrics) -> str:
    """The exposition text: HELP and TYPE lines, then one sample per gauge."""
    own = labels(manifest=run.manifest)
    expiry = run.earliest_expiry.timestamp() if run.earliest_expiry else None
    gauges: list[Gauge] = [
        (
            "last_run_timestamp_seconds",
            "Unix time the last run finished.",
            {own: run.finished_at.timestamp()},
        ),
        (
            "last_run_status",
            "1 for the last run's status (ok, partial, failed, denied, interrupted, error).",
            {f'{own},status="{s}"': float(s == run.status) for s in STATUSES},
        ),
        ("last_run_exit_code", "Exit code of the last run.", {own: run.exit_code}),
        (
            "last_run_duration_seconds",
            "How long the last run took.",
            {own: run.duration_seconds},
        ),
        ("last_run_links_issued", "Links the last run issued.", {own: run.links}),
        ("last_run_bytes_shared", "Bytes the last run's links share.", {own: run.bytes}),
        (
            "last_run_failures",
            "Failures of the last run (prefixes, max_links).",
            {own: run.failures},
        ),
        (
            "last_run_unlinkable_keys",
            "Keys the last run could not link (a . or .. path segment), once per recipient.",
            {own: run.unlinkable},
        ),
    ]
    if expiry is not None:
        gauges.append(
            (
                "last_run_earliest_expiry_timestamp_seconds",
                "Unix time the first link of the last run stops working.",
                {own: expiry},
            )
        )
    return render_gauges(gauges)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_metrics(path: Path, run: RunMetrics) -> None:
    """Write ``render_metrics(run)`` to ``path`` (``write_exposition``)."""
    write_exposition(path, render_metrics(run))


def write_exposition(path: Path, text: str) -> None:
    """Write exposition ``text`` to ``path`` atomically (temporary file, then rename), 0644.

    A disk that refuses it (full, read-only) is a ``SharebatchError`` naming the file: exit 1,
    since monitoring will not see this run.
    """
    try:
        # 0644 whatever the umask: node_exporter runs as another user.
        with atomic_writer(path, mode=0o644) as out:
            out.write(text)
    except OSError as exc:
        raise SharebatchError(
            f"cannot write the metrics file {path}: {exc.strerror or exc}"
        ) from None
