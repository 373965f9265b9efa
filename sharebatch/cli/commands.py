"""``sharebatch run``, ``validate``, ``schema`` and ``demo``: a manifest run, checked, described.

Data goes to stdout, logs and errors to stderr; nothing else in the package writes to the
terminal. A ``SharebatchError`` is not caught here: the application (``app.py``) maps it to its
exit code. The commands are registered in ``cli/__init__.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sharebatch.cli.app import (
    AsOfOpt,
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
from sharebatch.cli.notify import StrictWebhookOpt, render_notify, webhook_exit
from sharebatch.cli.publish import prepare, publish_run, remote_out
from sharebatch.cli.render import render_plan
from sharebatch.cli.shards import shard_run
from sharebatch.cli.view import RunView
from sharebatch.delivery.approvals import pending
from sharebatch.delivery.notify import notify as notify_run
from sharebatch.delivery.webhook import announce_run
from sharebatch.errors import UsageError
from sharebatch.manifest.load import load_manifest, manifest_json_schema
from sharebatch.models import Connection
from sharebatch.run.plan import build_plan, describe
from sharebatch.run.runner import DEFAULT_CONCURRENCY, MAX_WORKERS, run_manifest
from sharebatch.visible import visible


def run(
    ctx: typer.Context,
    manifest: Annotated[Path, typer.Argument(help="The YAML manifest to run.")],
    out: Annotated[
        str | None,
        typer.Option(
            help="Folder for OUT/<run-id>/ (default: manifest output.dir, or bundles), or"
            " s3://bucket/prefix/: the run folder published there, summary.json last."
        ),
    ] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            help="With an s3:// --out: the private folder the run is written to before it is"
            " published, then removed (default $TMPDIR)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List and count; print the summary; write nothing.")
    ] = False,
    concurrency: Annotated[
        int, typer.Option(help="Listing requests to S3 at once.", min=1, max=256)
    ] = DEFAULT_CONCURRENCY,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes signing and staging links (default: one per core once the run has"
            " listed 20,000 objects; 1 signs in the run's own process).",
            min=1,
            max=MAX_WORKERS,
        ),
    ] = None,
    endpoint_url: Annotated[
        str | None, endpoint_option("S3 endpoint (S3-compatible stores, local tests).")
    ] = None,
    profile: ProfileOpt = None,
    region: Annotated[str | None, region_option("Region; overrides the manifest.")] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Name of the run folder (default: time + random).")
    ] = None,
    as_of: AsOfOpt = None,
    metrics_file: MetricsFileOpt = None,
    split: Annotated[
        bool,
        typer.Option(
            "--split/--no-split",
            help="List a prefix's sub-folders in parallel when it pays (default on).",
        ),
    ] = True,
    notify: Annotated[
        bool,
        typer.Option(
            "--notify",
            help="After a run that exits 0, mail the recipients (as sharebatch notify does).",
        ),
    ] = False,
    strict_webhook: StrictWebhookOpt = False,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="K/N",
            help="Do only shard K (from 0) of N into OUT/<run-id>/shards/ (auto/N: K from"
            " JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX); needs --run-id; then"
            " sharebatch merge OUT/<run-id>.",
        ),
    ] = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    log_format: FormatOpt = LogFormat.auto,
) -> None:
    """Run MANIFEST: list, sign and write one link bundle per recipient.

    Example: sharebatch run manifests/q3.yml --out /srv/bundles

    Example (cron): sharebatch run manifests/q3.yml --metrics-file
    /var/lib/node_exporter/textfile_collector/sharebatch-q3.prom

    Prints the run folder on stdout (the summary JSON with --dry-run).

    On a terminal: live progress per job, then a summary table, on stderr. Under cron: logs.

    OUT/<run-id>/index.html is the run's review page, for a browser (it holds the links).

    Example (cron, mailing the recipients): sharebatch run manifests/q3.yml --notify

    Example (to S3): sharebatch run manifests/q3.yml --out s3://runs-bucket/sharebatch/
    writes the run folder privately under $TMPDIR (or --work-dir), then uploads it to
    s3://runs-bucket/sharebatch/<run-id>/ (private, encrypted as the bucket's default
    says), summary.json last, and removes the local copy; it prints the folder's s3:// URI.

    With --notify and notify.require_approval, nobody is mailed: stderr says approval is
    pending (sharebatch approve, then sharebatch notify); exit 0, nothing failed.

    When the manifest names a notify.webhook, the run's summary is posted to it (counts,
    failures, the run folder; never a link); a failure is logged, exit 1 with --strict-webhook.

    Exit codes: 0 ok; 1 some prefixes failed, or the run crashed (disk full, bug), or (with
    --notify) a recipient's mail failed, or the run failed and nothing was mailed, or (with
    --strict-webhook) the webhook failed, or publishing to an s3:// --out failed (no
    summary.json is uploaded then);
    2 invalid manifest or options; 3 no usable credentials or access denied;
    75 another run holds OUT's lock (or the same shard's); 130 interrupted (SIGINT), 143 (SIGTERM).
    """
    if notify and dry_run:
        raise UsageError("--notify mails the bundles a run writes; --dry-run writes none")
    remote = remote_out(out, work_dir, notify=notify)
    connection = Connection(profile=profile, region=region, endpoint_url=endpoint_url)
    setup_logging(verbose, quiet, log_format)
    local_out = None if out is None or remote is not None else Path(out)
    if shard is not None:
        if dry_run or notify or metrics_file is not None:
            raise UsageError(
                "--shard stages one part of a run: --dry-run, --notify and --metrics-file"
                " belong to the whole run (sharebatch merge takes --metrics-file)"
            )
        shard_run(
            ctx,
            manifest,
            shard,
            run_id=run_id,
            out=local_out,
            remote=remote,
            work_dir=work_dir,
            concurrency=concurrency,
            workers=workers,
            connection=connection,
            as_of=as_of.date() if as_of else None,
            split=split,
        )
    if remote is not None and not dry_run:
        run_id, local_out = prepare(ctx, remote, run_id, work_dir, connection)
    view = RunView(
        manifest=manifest,
        metrics_file=metrics_file,
        dry_run=dry_run,
        verbose=verbose,
        quiet=quiet,
        log_format=log_format,
    )
    with view:
        summary = run_manifest(
            manifest,
            out=local_out,
            dry_run=dry_run,
            concurrency=concurrency,
            connection=connection,
            run_id=run_id,
            as_of=as_of.date() if as_of else None,
            split_folders=split,
            workers=workers,
            on_progress=view.on_progress,
        )
        view.finished(summary)
    if dry_run:
        typer.echo(json.dumps(summary.report, indent=2, ensure_ascii=False))
    elif remote is not None and summary.run_dir is not None:
        typer.echo(publish_run(summary.run_dir, remote, summary.run_id, connection))
    else:
        typer.echo(summary.run_dir)
    hooked = 0
    if summary.run_dir is not None and not dry_run:
        errors = announce_run(Path(summary.run_dir), summary.report)
        hooked = webhook_exit(errors, strict_webhook)
    if notify and summary.run_dir is not None:
        if summary.exit_code != 0:
            typer.echo("sharebatch: the run did not exit 0: nobody was mailed", err=True)
        elif pending(Path(summary.run_dir)):
            # Nothing failed: the run is done and waits for a person (cron exits 0).
            typer.echo(
                f"sharebatch: nobody was mailed: approval pending: sharebatch approve"
                f" {visible(str(summary.run_dir))}, then sharebatch notify"
                f" {visible(str(summary.run_dir))}",
                err=True,
            )
        else:
            report = notify_run(Path(summary.run_dir))
            render_notify(report, Path(summary.run_dir))
            hooked = max(hooked, webhook_exit(report.webhook_errors, strict_webhook))
            raise typer.Exit(max(report.exit_code, hooked))
    raise typer.Exit(max(summary.exit_code, hooked))


def validate(
    manifest: Annotated[Path, typer.Argument(help="The YAML manifest to check.")],
    as_of: AsOfOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Check MANIFEST and print the resolved plan, without touching S3.

    Example: sharebatch validate manifests/q3.yml --as-of 2026-10-01

    Exit codes: 0 valid; 2 invalid (every problem listed as file:line:column: field: message).
    """
    manifest_data = load_manifest(manifest, as_of=as_of.date() if as_of else None)
    plan = describe(build_plan(manifest_data))
    if as_json:
        typer.echo(json.dumps(plan, indent=2, ensure_ascii=False))
    else:
        typer.echo(render_plan(plan))


def schema() -> None:
    """Print the manifest's JSON Schema, for editors with the YAML language server.

    Example: sharebatch schema > sharebatch-manifest.schema.json, then start a manifest with
    # yaml-language-server: $schema=./sharebatch-manifest.schema.json
    """
    typer.echo(json.dumps(manifest_json_schema(), indent=2, ensure_ascii=False))


def demo(
    manifest: Annotated[
        Path | None,
        typer.Option(
            help="A manifest to run instead of the one shipped with sharebatch (it mails nobody)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder that receives the bundles.")] = Path("bundles"),
    verbose: VerboseOpt = False,
    quiet: QuietOpt = True,
    log_format: FormatOpt = LogFormat.auto,
) -> None:
    """Run the demo manifest against an embedded S3 on 127.0.0.1, download one link, mail
    each recipient through an embedded SMTP server and show the mails it captured.

    Example: sharebatch demo --out /tmp/sharebatch-demo

    Needs the demo extra: pip install 'sharebatch\\[demo]'.
    """
    from sharebatch.demo import run_demo

    setup_logging(verbose, quiet, log_format)
    report = run_demo(manifest, out)
    typer.echo("\n".join(report.lines))
    raise typer.Exit(report.summary.exit_code)
