"""``sharebatch run --shard K/N`` (one shard of a run) and ``sharebatch merge OUT/<run-id>``.

Thin over ``shards/``: the shard's folder, or the merged run's folder, on stdout; the exit
code from what happened (a shard or merged run with a failed prefix: 1).
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from sharebatch.cli.app import (
    FormatOpt,
    LogFormat,
    QuietOpt,
    VerboseOpt,
    endpoint_option,
    region_option,
    setup_logging,
)
from sharebatch.cli.view import RunView
from sharebatch.errors import UsageError
from sharebatch.models import Connection
from sharebatch.remote.folders import publish_folder
from sharebatch.remote.staging import work_folder
from sharebatch.remote.uri import S3Uri
from sharebatch.shards.merge import merge_run
from sharebatch.shards.record import SHARDS
from sharebatch.shards.run import run_shard
from sharebatch.shards.spec import parse_shard


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
    run_dir: Annotated[Path, typer.Argument(help="The run folder the shards wrote, OUT/<run-id>.")],
    manifest: Annotated[
        Path | None,
        typer.Option(help="The manifest (default: the copy each shard keeps)."),
    ] = None,
    endpoint_url: Annotated[
        str | None, endpoint_option("S3 endpoint (S3-compatible stores, local tests).")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile for credentials.")] = None,
    region: Annotated[str | None, region_option("Region; overrides the manifest.")] = None,
    metrics_file: Annotated[
        Path | None,
        typer.Option(help="Write Prometheus metrics here (node_exporter textfile collector)."),
    ] = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    log_format: FormatOpt = LogFormat.auto,
) -> None:
    """Merge the shards of a run (run --shard K/N --run-id ID) into its bundles.

    Example: sharebatch merge bundles/job-42

    Checks that every shard finished and that all ran the same manifest, then writes the
    bundles, review page, audit log and summary as one machine would have. Idempotent: a
    merged run is left as it is. Credentials are needed only for upload slots and pages.

    Exit codes: 0 ok; 1 shards missing or unfinished (named), or a prefix failed;
    2 a shard of another run or manifest, or a shard record not as written;
    75 another merge or run holds OUT's lock.
    """
    setup_logging(verbose, quiet, log_format)
    path = run_dir.resolve() if run_dir.name in ("", ".", "..") else run_dir
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
            connection=Connection(profile=profile, region=region, endpoint_url=endpoint_url),
        )
        view.finished(summary)
    typer.echo(summary.run_dir)
    raise typer.Exit(summary.exit_code)
