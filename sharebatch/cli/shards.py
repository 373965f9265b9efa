"""``sharebatch run --shard K/N`` (one shard of a run) and ``sharebatch merge OUT/<run-id>``.

Thin over ``shards/``: the shard's folder, or the merged run's folder, on stdout; the exit
code from what happened (a shard or merged run with a failed prefix: 1).
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from sharebatch.cli.app import (
    FormatOpt,
    LogFormat,
    MetricsFileOpt,
    ProfileOpt,
    QuietOpt,
    VerboseOpt,
    endpoint_option,
    region_option,
    setup_logging,
)
from sharebatch.cli.view import RunView
from sharebatch.errors import UsageError
from sharebatch.models import Connection
from sharebatch.remote.folders import claim, fetch_file, fetch_folder, publish_folder, release
from sharebatch.remote.staging import work_folder
from sharebatch.remote.uri import S3Uri, is_remote, parse_uri
from sharebatch.shards.merge import merge_run
from sharebatch.shards.record import SHARDS, SUMMARY
from sharebatch.shards.run import run_shard
from sharebatch.shards.spec import parse_shard
from sharebatch.times import iso
from sharebatch.visible import visible


def shard_run(
    ctx: typer.Context,
    manifest: Path,
    shard: str,
    *,
    run_id: str | None,
    out: Path | None,
    remote: S3Uri | None,
    work_dir: Path | None,
    concurrency: int,
    workers: int | None,
    connection: Connection,
    as_of: date | None,
    split: bool,
) -> None:
    """``run --shard``: stage this shard, print its folder, exit 1 when a prefix failed.

    With an s3:// OUT the shard is staged in a work folder and published, replacing an earlier
    attempt of the same shard (a scheduler's retry), under ``<run-id>/shards/K-of-N/``.
    """
    spec = parse_shard(shard, os.environ)
    if run_id is None:
        raise UsageError(
            "--shard needs --run-id: every shard of a run names the same one (the job's id)"
        )
    if remote is not None:
        out = ctx.with_resource(work_folder(work_dir))
    summary = run_shard(
        manifest,
        shard=spec,
        run_id=run_id,
        out=out,
        concurrency=concurrency,
        workers=workers,
        connection=connection,
        as_of=as_of,
        split_folders=split,
    )
    if remote is not None:
        published = publish_folder(
            summary.path,
            remote.child(f"{run_id}/{SHARDS}/{spec.name}"),
            connection=connection,
            exclusive=False,
        )
        typer.echo(published.uri)
    else:
        typer.echo(str(summary.path))
    for failure in summary.failures:
        typer.echo(
            f"sharebatch: shard {spec.name}: prefix {failure['prefix']!r} of bucket"
            f" {failure['bucket']!r} failed: {failure['error']}",
            err=True,
        )
    raise typer.Exit(summary.exit_code)


def merge(
    ctx: typer.Context,
    run_dir: Annotated[
        str,
        typer.Argument(
            help="The run folder the shards wrote, OUT/<run-id>, or s3://bucket/prefix/<run-id>/."
        ),
    ],
    manifest: Annotated[
        Path | None,
        typer.Option(help="The manifest (default: the copy each shard keeps)."),
    ] = None,
    endpoint_url: Annotated[
        str | None, endpoint_option("S3 endpoint (S3-compatible stores, local tests).")
    ] = None,
    profile: ProfileOpt = None,
    region: Annotated[str | None, region_option("Region; overrides the manifest.")] = None,
    metrics_file: MetricsFileOpt = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(help="With an s3:// run folder: where the merge works (default $TMPDIR)."),
    ] = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    log_format: FormatOpt = LogFormat.auto,
) -> None:
    """Merge the shards of a run (run --shard K/N --run-id ID) into its bundles.

    Example: sharebatch merge bundles/job-42

    Example (shards on S3): sharebatch merge s3://runs-bucket/sharebatch/job-42/ fetches the
    shards into a private work folder (--work-dir, default $TMPDIR), merges there and publishes
    the merged run beside them (summary.json last), holding <run-id>/.merging meanwhile.

    Checks that every shard finished and that all ran the same manifest, then writes the
    bundles, review page, audit log and summary as one machine would have. Idempotent: a
    merged run is left as it is. Credentials are needed only for upload slots and pages.

    Exit codes: 0 ok; 1 shards missing or unfinished (named), or a prefix failed;
    2 a shard of another run or manifest, or a shard record not as written;
    75 another merge or run holds OUT's lock (on S3: <run-id>/.merging exists).
    """
    setup_logging(verbose, quiet, log_format)
    connection = Connection(profile=profile, region=region, endpoint_url=endpoint_url)
    remote = parse_uri(run_dir, "run folder") if is_remote(run_dir) else None
    if remote is None:
        if work_dir is not None:
            raise UsageError("--work-dir is where an s3:// run folder is merged; no s3://")
        local = Path(run_dir)
        path = local.resolve() if local.name in ("", ".", "..") else local
    else:
        path = _fetched(ctx, remote, work_dir, connection)
    before = _summary_bytes(path)
    view = RunView(
        manifest=manifest or path,
        metrics_file=metrics_file,
        dry_run=False,
        verbose=verbose,
        quiet=quiet,
        log_format=log_format,
    )
    with view:
        summary = merge_run(
            path.parent,
            path.name,
            manifest=manifest,
            connection=connection,
        )
        view.finished(summary)
    if remote is None:
        typer.echo(summary.run_dir)
    else:
        # A merge that found the work done leaves the summary as it was: nothing to publish.
        if _summary_bytes(path) != before:
            publish_folder(
                path, remote, connection=connection, exclusive=False, exclude=(SHARDS, MERGING)
            )
        typer.echo(str(remote))
    raise typer.Exit(summary.exit_code)


MERGING = ".merging"


def _fetched(ctx: typer.Context, remote: S3Uri, work_dir: Path | None, conn: Connection) -> Path:
    """The shards of the run at ``remote`` (and its summary, if merged) in a work folder that
    lives as long as the command, under the run's merge claim (released at the end)."""
    run_id = remote.prefix.rstrip("/").rpartition("/")[2]
    if not run_id:
        raise UsageError(
            f"{visible(str(remote))} names no run folder (s3://bucket/prefix/<run-id>/)"
        )
    work = ctx.with_resource(work_folder(work_dir))
    note = work / MERGING
    note.write_text(
        json.dumps({"merge_started": iso(datetime.now(UTC)), "host": socket.gethostname()}) + "\n"
    )
    etag = claim(remote, MERGING, note, connection=conn)
    ctx.call_on_close(lambda: release(remote, MERGING, etag, connection=conn))
    path = work / run_id
    fetch_folder(remote.child(SHARDS), path / SHARDS, connection=conn)
    fetch_file(remote, SUMMARY, path / SUMMARY, connection=conn)
    return path


def _summary_bytes(run_dir: Path) -> bytes | None:
    try:
        return (run_dir / SUMMARY).read_bytes()
    except FileNotFoundError:
        return None
