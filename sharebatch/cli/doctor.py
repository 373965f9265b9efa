"""``sharebatch doctor``: the preflight, rendered one line per check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sharebatch.cli.app import AsOfOpt, ProfileOpt, endpoint_option, region_option
from sharebatch.lifecycle.doctor import Diagnosis, diagnose
from sharebatch.models import Connection
from sharebatch.visible import visible


def render_diagnosis(diagnosis: Diagnosis) -> str:
    """``OK    region         acme-reports: eu-west-1, as configured``, then a verdict.

    Subjects name buckets and prefixes, messages quote S3: each line goes out through
    ``visible``.
    """
    lines = []
    for check in diagnosis.checks:
        about = f"{check.subject}: " if check.subject else ""
        lines.append(f"{check.status:<5} {check.name:<14} {about}{check.message}")
    counts = {s: sum(c.status == s for c in diagnosis.checks) for s in ("FAIL", "WARN")}
    verdict = "ready to run" if diagnosis.status != "FAIL" else "not ready to run"
    lines.append(f"doctor: {counts['FAIL']} FAIL, {counts['WARN']} WARN: {verdict}")
    return "\n".join(map(visible, lines))


def doctor(
    manifest: Annotated[
        Path | None, typer.Argument(help="The manifest to check (optional).")
    ] = None,
    endpoint_url: Annotated[
        str | None, endpoint_option("S3 endpoint (S3-compatible stores, local tests).")
    ] = None,
    profile: ProfileOpt = None,
    region: Annotated[str | None, region_option("Region; overrides the manifest.")] = None,
    as_of: AsOfOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Preflight: credentials, clock, and each bucket and prefix of MANIFEST, one line each.

    Example: sharebatch doctor manifests/q3.yml --profile reports

    Example: sharebatch doctor --json | jq -r '.checks[] | select(.status != "OK")'

    Checks who the credentials belong to (STS) and when they expire; the local clock against
    S3's Date header; per bucket its region, Block Public Access, default encryption, server
    access logging (where the logs go: receipts need them), which guardrails of sharebatch
    policy its bucket policy holds, and a one-key listing of every prefix; the manifest's link
    lifetimes against the SigV4 limit; for link: cloudfront, each signing key (loads, fits the
    hash, private file mode; SHA-1 a WARN).
    Nothing is signed or written.

    Exit codes: 0 no FAIL (WARNs allowed); 1 at least one FAIL; 2 invalid manifest or options.
    """
    diagnosis = diagnose(
        manifest,
        as_of=as_of.date() if as_of else None,
        connection=Connection(profile=profile, region=region, endpoint_url=endpoint_url),
    )
    if as_json:
        typer.echo(json.dumps(diagnosis.to_json(), indent=2, ensure_ascii=False))
    else:
        typer.echo(render_diagnosis(diagnosis))
    raise typer.Exit(diagnosis.exit_code)
