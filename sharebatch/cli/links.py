"""``sharebatch inspect``, ``verify`` and ``renew``: links read back, checked and re-signed.

Data goes to stdout, errors to stderr. No full URL is printed unless ``verify --show-urls``
asks for it: links are named by bucket, key and the sha256 the audit log records. Keys, paths
and bundle values are chosen by others: every line of text goes out through ``visible``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from sharebatch.cli.app import (
    FormatOpt,
    LogFormat,
    ProfileOpt,
    QuietOpt,
    VerboseOpt,
    endpoint_option,
    region_option,
    setup_logging,
)
from sharebatch.errors import UsageError
from sharebatch.lifecycle.inspect import inspect as inspect_links
from sharebatch.lifecycle.renew import RenewReport, renew_bundles
from sharebatch.lifecycle.verify import MAX_CONCURRENCY, VerifyReport, verify_bundles
from sharebatch.manifest.periods import parse_duration
from sharebatch.models import MAX_EXPIRES_IN, Connection
from sharebatch.units import counted, human_size
from sharebatch.visible import visible

WithinOpt = Annotated[
    str | None,
    typer.Option(
        "--within",
        metavar="DURATION",
        help="Also flag links (and upload slots) that expire within this time: 48h, 2d, P2D.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


# inspect's window may pass the 7-day SigV4 limit: SigV2 links (and a bundle's fixed end) live
# longer. A year covers any renewal cycle; beyond it a link is not "expiring", and the bound
# keeps now + window far from datetime's end.
INSPECT_WITHIN_MAX = 366 * 86400


def _within(value: str | None, maximum: int = MAX_EXPIRES_IN) -> timedelta:
    if value is None:
        return timedelta(0)
    try:
        return timedelta(seconds=parse_duration(value, maximum))
    except ValueError as exc:
        raise UsageError(f"--within: {exc}") from None


def _span(seconds: int) -> str:
    left, parts = abs(seconds), list[str]()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size and len(parts) < 2:
            parts.append(f"{left // size}{unit}")
            left %= size
    text = " ".join(parts) or f"{left}s"
    return f"{text} left" if seconds > 0 else f"expired {text} ago"


def _render_cloudfront_url(n: int, url: dict[str, Any]) -> list[str]:
    span = "end unreadable" if url["seconds_left"] is None else _span(url["seconds_left"])
    rows = [
        ("status", f"{url['status']} ({span})"),
        ("signature", "CloudFront signed URL"),
        ("host", url["host"]),
        ("key", url["key"] or "?"),
        ("key pair id", url["key_pair_id"] or "?"),
        ("hash", _HASHES.get(url["hash"] or "", "?")),
        ("policy", url["policy"] or "?"),
        ("not before", url["not_before"] or "none (valid from its signing)"),
        ("expires at", url["expires_at"] or "?"),
        ("from IPs", url["source_ip"] or "anywhere"),
        ("link id", url["link_id"] or "none (issued without x-sharebatch-id)"),
    ]
    if url["problem"]:
        rows.append(("problem", url["problem"]))
    lines = [f"URL #{n} (sha256 {url['url_sha256'][:16]})"]
    return lines + [f"  {name:<12} {value}" for name, value in rows]


_HASHES = {"sha256": "SHA-256", "sha1": "SHA-1 (AWS recommends SHA-256)"}


def _cloudfront_line(link: dict[str, Any]) -> str:
    """A CloudFront row's signing facts: never its policy or signature."""
    facts = [
        f"key pair {link['key_pair_id'] or '?'}",
        _HASHES.get(link["hash"] or "", "?"),
        f"{link['policy'] or '?'} policy",
    ]
    if link["source_ip"]:
        facts.append(f"from {link['source_ip']}")
    if link["not_before"]:
        facts.append(f"not before {link['not_before']}")
    return "      cloudfront: " + ", ".join(facts)


def _render_url(n: int, url: dict[str, Any]) -> list[str]:
    if url["link"] == "cloudfront":
        return _render_cloudfront_url(n, url)
    method = url["method"] or "not recorded in the URL (GET unless it was made for another)"
    if url["credential_kind"] == "session":
        kind = "session (temporary credentials: the link dies with them, maybe before its end)"
    else:
        kind = "long-term access key"
    rows = [
        ("status", f"{url['status']} ({_span(url['seconds_left'])})"),
        ("signature", url["signature_version"]),
        ("method", method),
        ("bucket", url["bucket"] or "?"),
        ("key", url["key"] or "?"),
        ("region", url["region"] or "not in the URL"),
        ("access key", f"{url['access_key_id']}, {kind}"),
        ("signed at", url["signed_at"] or "not in the URL (SigV2 carries only its end)"),
        ("expires at", url["expires_at"]),
        ("link id", url["link_id"] or "none (issued without x-sharebatch-id)"),
    ]
    if url["problem"]:
        rows.append(("problem", url["problem"]))
    lines = [f"URL #{n} (sha256 {url['url_sha256'][:16]})"]
    return lines + [f"  {name:<12} {value}" for name, value in rows]


def _render_bundle(bundle: dict[str, Any], within: str) -> list[str]:
    about = [bundle["format"]] + [
        f"{name} {bundle[name]}" for name in ("run_id", "job") if bundle.get(name)
    ]
    if bundle["link"] == "cloudfront":
        about.append("CloudFront links")
    lines = [f"bundle {bundle['path']} ({', '.join(about)})"]
    for group in bundle["recipients"]:
        lines.append(
            f"  recipient {group['recipient']}: {counted(len(group['links']), 'link')},"
            f" {_tally(group, within)}"
        )
        lines.append(f"    {'STATUS':<9} {'EXPIRES AT':<21} {'TIME LEFT':<20} KEY")
        for link in group["links"]:
            lines.append(
                f"    {link['status']:<9} {link['expires_at']:<21} "
                f"{_span(link['seconds_left']):<20} {link['key']}"
            )
            if link["link_id"]:
                lines.append(f"      link id: {link['link_id']}")
            if link.get("link") == "cloudfront":
                lines.append(_cloudfront_line(link))
            if link["problem"]:
                lines.append(f"      problem: {link['problem']}")
    if bundle["uploads_problem"]:
        lines.append(f"  upload slots: problem: {bundle['uploads_problem']}")
    return lines + _render_slots(bundle["uploads"], within)


def _render_slots(slots: list[dict[str, Any]], within: str) -> list[str]:
    """A bundle's upload slots, per recipient: never a URL, form signature or policy."""
    by_recipient: dict[str, list[dict[str, Any]]] = {}
    for slot in slots:
        by_recipient.setdefault(slot["recipient"], []).append(slot)
    lines = []
    for recipient, group in by_recipient.items():
        counts = {s: sum(x["status"] == s.upper() for x in group) for s in _STATUSES}
        lines.append(
            f"  upload slots of {recipient}: {counted(len(group), 'slot')},"
            f" {_tally(counts, within)}"
        )
        lines.append(
            f"    {'STATUS':<9} {'EXPIRES AT':<21} {'TIME LEFT':<20} {'METHOD':<6}"
            f" {'MAX SIZE':<9} KEY"
        )
        for slot in group:
            lines.append(
                f"    {slot['status']:<9} {slot['expires_at']:<21}"
                f" {_span(slot['seconds_left']):<20} {slot['method']:<6}"
                f" {human_size(slot['max_size']):<9} {slot['key']}"
            )
            kind = slot["content_type"] or "any (the uploader chooses)"
            lines.append(f"      content type: {kind}")
            if slot["link_id"]:
                lines.append(f"      link id: {slot['link_id']}")
            if slot["problem"]:
                lines.append(f"      problem: {slot['problem']}")
    return lines


_STATUSES = ("valid", "expiring", "expired", "invalid")


def _tally(counts: dict[str, Any], within: str) -> str:
    return (
        f"{counts['valid']} valid, {counts['expiring']} expiring{within},"
        f" {counts['expired']} expired"
        + (f", {counts['invalid']} invalid" if counts["invalid"] else "")
        # CloudFront links with a start still ahead (upload slots have no such count).
        + (f", {counts['not_yet_valid']} not yet valid" if counts.get("not_yet_valid") else "")
    )


def inspect(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="Presigned URLs, bundle files (CSV or JSON, uploads.csv too) or bundle"
            " folders; - reads URLs from stdin, one a line."
        ),
    ],
    within: WithinOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show when links and upload slots stop working, without contacting S3.

    For a URL: method, bucket, key, signed at, expires at, time left, VALID/EXPIRED, the kind
    of credentials and the signature version (SigV4 or SigV2); INVALID with the reason when S3
    would refuse it anyway. A CloudFront signed URL: its key pair id, hash, canned or custom
    policy, start, end and IP range; NOT_YET_VALID before its start (not counted as a
    problem: it was issued ahead of its period). For a bundle: a table per recipient, then its
    upload slots (a links.json's, an uploads.csv's, a folder's): method, key (a POST form's
    key prefix), max size, content type, link id and end, read from the PUT URL or the POST
    form's signed policy; INVALID when the row claims more than its signature. --within may
    be up to 366d (SigV2 and CloudFront links live longer than 7 days).

    Example: sharebatch inspect bundles/2026-Q3/*/q3/*/links.json --within 48h

    Exit codes: 0 no link or slot expired (or expiring within --within), NOT_YET_VALID
    included; 1 some are (or INVALID); 2 bad input.
    """
    # "-" reads URLs from stdin, so they stay out of `ps` and the shell's history.
    stdin = sys.stdin.buffer if "-" in targets else ()
    window = _within(within, INSPECT_WITHIN_MAX)
    paths = [target for target in targets if target != "-"]
    report = inspect_links(paths, datetime.now(UTC), window, stdin)
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        soon = f" within {within}" if within else ""
        lines: list[str] = []
        for n, url in enumerate(report["urls"], 1):
            lines += _render_url(n, url)
        for bundle in report["bundles"]:
            lines += _render_bundle(bundle, soon)
        total = sum(report[k] for k in (*_STATUSES, "not_yet_valid"))
        summary = f"inspect: {counted(total, 'link')}: {_tally(report, soon)}"
        slots = report["upload_slots"]
        if any(slots.values()):
            summary += f"; {counted(sum(slots.values()), 'upload slot')}: {_tally(slots, soon)}"
        lines.append(summary)
        typer.echo("\n".join(map(visible, lines)))
    raise typer.Exit(0 if report["ok"] else 1)


def _render_verify(report: VerifyReport, show_urls: bool) -> str:
    lines = []
    for v in report.verdicts:
        line = f"{v.outcome.upper():<8} {v.recipient}  {v.bucket}/{v.key}  {v.detail}"
        lines.append(line + (f"  {v.url}" if show_urls else ""))
    counts = report.data()["outcomes"]
    shown = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    checked = f"{report.checked} of {counted(report.total, 'link')} checked"
    lines.append(f"verify: {checked}: {shown or 'none'}")
    return "\n".join(map(visible, lines))


def verify(
    bundles: Annotated[list[Path], typer.Argument(help="Bundle files (CSV or JSON) or folders.")],
    sample: Annotated[
        int | None, typer.Option(help="Check N random links per bundle.", min=1)
    ] = None,
    concurrency: Annotated[
        int, typer.Option(help="Links checked at once.", min=1, max=MAX_CONCURRENCY)
    ] = 16,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.", min=1)] = 15,
    show_urls: Annotated[
        bool, typer.Option("--show-urls", help="Print each link's full URL (a bearer secret).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check that the links of bundles work: the object is there, same size and ETag.

    GET links are tried with a one-byte GET (their signature refuses a HEAD). CloudFront links
    are asked of their distribution the same way; one whose policy starts later is skipped.

    Example: sharebatch verify bundles/2026-Q3/20261001T060000Z-3f9a/q3/globex --sample 50

    Exit codes: 0 every checked link works; 1 some do not; 2 bad input.
    """
    report = verify_bundles(bundles, sample=sample, concurrency=concurrency, timeout=timeout)
    if as_json:
        typer.echo(json.dumps(report.data(show_urls), indent=2, ensure_ascii=False))
    else:
        typer.echo(_render_verify(report, show_urls))
    raise typer.Exit(report.exit_code)


def _render_renew(report: RenewReport) -> None:
    for renewal in report.renewals:
        source = visible(renewal.source)
        for row in renewal.not_renewed:
            typer.echo(
                f"sharebatch: {source}: links[{row.line - 1}]: {visible(row.key)}:"
                f" not renewed: {row.outcome}: {visible(row.detail)}",
                err=True,
            )
        if renewal.error:
            typer.echo(f"sharebatch: {source}: not renewed: {visible(renewal.error)}", err=True)
        elif not renewal.written and not renewal.not_renewed:
            typer.echo(f"sharebatch: {source}: nothing to renew", err=True)
        for path in renewal.written:
            typer.echo(visible(path))


def renew(
    bundles: Annotated[list[Path], typer.Argument(help="Bundle files (CSV or JSON) or folders.")],
    within: WithinOpt = None,
    endpoint_url: Annotated[
        str | None, endpoint_option("S3 endpoint; overrides the bundle's.")
    ] = None,
    profile: ProfileOpt = None,
    region: Annotated[str | None, region_option("Region; overrides the bundle's.")] = None,
    audit_log: Annotated[
        list[Path] | None,
        typer.Option(
            "--audit-log",
            help="The audit.jsonl of the run that wrote a bundle moved out of its run folder;"
            " repeat for several runs.",
        ),
    ] = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    log_format: FormatOpt = LogFormat.auto,
) -> None:
    """Re-sign the links that are expired (or expire within --within), with their policy.

    Writes a complete new bundle next to the old one (links.renewed-<time>-<hex>.json/.csv,
    and upload slots due again) and prints its paths; the old bundle is never changed. Only
    bundles their run's audit log records are renewed; a due link whose object is gone or
    changed keeps its old row and is reported. CloudFront links are re-signed with the key the
    header names (its file or variable), their domain, key pair, hash and IP range, up to
    max_expires_in. --within may be up to 366d (CloudFront links outlive 7 days).

    Example: sharebatch renew bundles/2026-Q3/20261001T060000Z-3f9a/q3/globex --within 48h

    Exit codes: 0 renewed or nothing due; 1 a bundle or a link could not be renewed; 2 bad
    input (a bundle its run did not record); 3 no usable credentials, or credentials too
    short for the bundle's policy (S3 links only: CloudFront's are signed with the key pair).
    """
    setup_logging(verbose, quiet, log_format)
    report = renew_bundles(
        bundles,
        # CloudFront links may live up to a year: renewing them weeks ahead needs a window past
        # SigV4's 7 days (for S3 links such a window makes every link due, as 7 days nearly does).
        within=_within(within, INSPECT_WITHIN_MAX),
        connection=Connection(profile=profile, region=region, endpoint_url=endpoint_url),
        audit_logs=audit_log or (),
    )
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in report.renewals], indent=2, ensure_ascii=False))
    else:
        _render_renew(report)
    raise typer.Exit(report.exit_code)
