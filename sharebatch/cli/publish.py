"""``run --out s3://bucket/prefix/``: the run written to a private work folder, then published.

The run itself is the local one, unchanged (its OUT is a fresh 0700 work folder, locked as any
OUT); when it has ended with a summary, its folder is published under
``s3://bucket/prefix/<run-id>/`` by ``remote/folders.publish_folder`` (``summary.json`` last)
and the work folder is removed with the command's context, whatever happens. The run id is
fixed before the run so that an occupied prefix is refused (exit 2) before anything is done.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from sharebatch.errors import UsageError
from sharebatch.models import Connection
from sharebatch.remote.folders import holds_any, publish_folder
from sharebatch.remote.staging import work_folder
from sharebatch.remote.uri import S3Uri, is_remote, parse_uri
from sharebatch.run.runner import new_run_id
from sharebatch.visible import visible


def remote_out(out: str | None, work_dir: Path | None, *, notify: bool) -> S3Uri | None:
    """The S3 folder ``--out`` names, or None for a local OUT; bad values are exit 2."""
    if not is_remote(out):
        if work_dir is not None:
            raise UsageError("--work-dir is where an s3:// --out run is written first; no s3://")
        return None
    assert out is not None
    uri = parse_uri(out)
    if notify:
        raise UsageError(
            "--notify mails from a local run folder; with an s3:// --out run first, then fetch"
            " the folder and run sharebatch notify on it"
        )
    return uri


def prepare(
    ctx: typer.Context,
    remote: S3Uri,
    run_id: str | None,
    work_dir: Path | None,
    connection: Connection,
) -> tuple[str, Path]:
    """The run id and the local OUT of a run published to ``remote``.

    Refuses (exit 2) a ``remote/<run-id>/`` that already holds objects: run ids name each
    run's folder once. The work folder lives as long as the command's context.
    """
    chosen = run_id or new_run_id(datetime.now(UTC))
    folder = remote.child(chosen)
    if holds_any(folder, connection=connection):
        raise UsageError(
            f"{visible(str(folder))} already holds objects; a run never overwrites another"
            " (choose another --run-id)"
        )
    return chosen, ctx.with_resource(work_folder(work_dir))


def publish_run(run_dir: str, remote: S3Uri, run_id: str, connection: Connection) -> str:
    """Publish the finished run folder; return its S3 URI (what the command prints)."""
    published = publish_folder(Path(run_dir), remote.child(run_id), connection=connection)
    return published.uri
