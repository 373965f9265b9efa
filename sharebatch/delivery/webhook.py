"""The ops webhook (``notify.webhook``): a run's or a notify's summary, posted as JSON.

Two formats: ``json`` posts the summary object itself; ``slack`` posts ``{"text": ...}``, one
readable message (Slack's incoming webhooks, and the many chat tools that accept the same).
A summary holds counts, failures and the run folder's path, never a link: whoever reads the
channel must not be able to download a partner's files. Text that came from outside (error
messages, names) has any URL in it cut down to its host.

A webhook URL is itself a secret (Slack's carries its token in the path), so errors and log
lines name only ``scheme://host:port``. The request is made with urllib in a worker thread:
one small POST needs no client library, and only ``s3/`` may use aiohttp. Redirects are not
followed (a POST redirected becomes a GET, and the summary would go where nobody configured).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sharebatch.audit import get_logger, scrubbed
from sharebatch.blocking import blocking
from sharebatch.errors import DeliveryError
from sharebatch.models import RunReport, Webhook
from sharebatch.run.delivery_plan import read_plan
from sharebatch.units import counted, human_size
from sharebatch.version import __version__
from sharebatch.visible import visible

log = get_logger()

FAILURES_SHOWN = 20  # a chat message, not a report: the rest are in summary.json
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


@dataclass(frozen=True, slots=True)
class NotifyOutcome:
    """What a ``notify`` did, as the webhook reports it.

    ``failed_recipients`` and ``held`` name bundles as ``job/recipient``: failed ones were
    refused or unreachable; held ones were not sent for want of an approval.
    """

    run_id: str
    run_dir: Path
    sent: int
    failed: int
    left_out: int
    failed_recipients: tuple[str, ...] = ()
    held: tuple[str, ...] = ()


def endpoint(url: str) -> str:
    """``scheme://host:port`` of ``url``: what may be shown of a webhook's address."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def _host_only(match: re.Match[str]) -> str:
    return urlsplit(match.group()).hostname or "[url]"


def clean(text: str) -> str:
    """Outside text fit for a summary: each URL cut to its host, a signature redacted."""
    return scrubbed(_URL.sub(_host_only, text))


def run_summary(report: RunReport, run_dir: Path) -> dict[str, Any]:
    """The summary a run posts: status, counts, each failure and the run folder; no link."""
    totals = report["totals"]
    failures = []
    for failure in report["failures"]:
        if failure["kind"] == "prefix":
            where = f"{failure['bucket']}/{failure['prefix']}"
        else:  # max_links and page failures are a recipient's
            where = f"{failure['job']}/{failure['recipient']}"
        failures.append(
            {
                "kind": failure["kind"],
                "where": clean(where),
                "error": clean(failure["error"]),
                "message": clean(failure["message"]),
            }
        )
    return {
        "source": "sharebatch",
        "event": "run",
        "run_id": report["run_id"],
        "status": report["status"],
        "run_folder": str(run_dir),
        "counts": {
            "jobs": totals["jobs"],
            "recipients": totals["recipients"],
            "bundles": totals["bundles"],
            "links": totals["links"],
            "bytes": totals["bytes"],
            "upload_slots": totals["upload_slots"],
            "failures": totals["failures"],
        },
        "earliest_expiry": totals["earliest_expiry"],
        "failures": failures,
    }


def _notify_status(outcome: NotifyOutcome) -> str:
    """ok: nothing failed or held; partial: some sent despite that; failed: none sent."""
    if not outcome.failed and not outcome.held:
        return "ok"
    return "partial" if outcome.sent else "failed"


def notify_summary(outcome: NotifyOutcome) -> dict[str, Any]:
    """The summary a notify posts: how many were sent, failed, left out, held; who failed."""
    return {
        "source": "sharebatch",
        "event": "notify",
        "run_id": outcome.run_id,
        "status": _notify_status(outcome),
        "run_folder": str(outcome.run_dir),
        "counts": {
            "sent": outcome.sent,
            "failed": outcome.failed,
            "left_out": outcome.left_out,
            "held": len(outcome.held),
        },
        "failed_recipients": [clean(name) for name in outcome.failed_recipients],
        "held_recipients": [clean(name) for name in outcome.held],
    }


def _slack_escape(text: object) -> str:
    # Slack reads <...> as links and mentions and & as entities: shown as text instead.
    shown = visible(str(text))
    return shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _listed(names: Sequence[Any]) -> str:
    shown = ", ".join(_slack_escape(n) for n in names[:FAILURES_SHOWN])
    more = len(names) - FAILURES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def slack_text(summary: Mapping[str, Any]) -> str:
    """One readable message for a summary ``run_summary`` or ``notify_summary`` made."""
    counts = summary.get("counts", {})
    event = summary.get("event", "run")
    lines = [
        f"sharebatch {_slack_escape(event)} {_slack_escape(summary.get('run_id', '?'))}:"
        f" {_slack_escape(summary.get('status', '?'))}"
    ]
    if event == "notify":
        lines.append(
            f"{counts.get('sent', 0)} sent, {counts.get('failed', 0)} failed,"
            f" {counts.get('left_out', 0)} left out, {counts.get('held', 0)} held for approval"
        )
        if summary.get("failed_recipients"):
            lines.append(f"Failed: {_listed(summary['failed_recipients'])}")
        if summary.get("held_recipients"):
            lines.append(f"Held for approval: {_listed(summary['held_recipients'])}")
    else:
        lines.append(
            f"{counted(counts.get('jobs', 0), 'job')},"
            f" {counted(counts.get('recipients', 0), 'recipient')},"
            f" {counted(counts.get('bundles', 0), 'bundle')},"
            f" {counted(counts.get('links', 0), 'link')} ({human_size(counts.get('bytes', 0))}),"
            f" {counted(counts.get('failures', 0), 'failure')}"
        )
        failures = summary.get("failures", [])
        for failure in failures[:FAILURES_SHOWN]:
            lines.append(
                f"- {_slack_escape(failure['where'])}: {_slack_escape(failure['error'])}:"
                f" {_slack_escape(failure['message'])}"
            )
        if len(failures) > FAILURES_SHOWN:
            lines.append(f"- and {len(failures) - FAILURES_SHOWN} more (see summary.json)")
    lines.append(f"Run folder: {_slack_escape(summary.get('run_folder', '?'))}")
    return "\n".join(lines)


def _body(webhook: Webhook, summary: Mapping[str, Any]) -> bytes:
    data = {"text": slack_text(summary)} if webhook.format == "slack" else dict(summary)
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError: a refusal


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(  # noqa: S310 (the manifest checked http/https)
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"sharebatch/{__version__}",
        },
    )
    with _OPENER.open(request, timeout=timeout) as response:
        response.read()
        return int(response.status)


async def post_summary(
    webhook: Webhook,
    summary: Mapping[str, Any],
    *,
    # A parameter, not the caller's asyncio.timeout: the worker thread's socket needs it too.
    timeout: float = 10.0,  # noqa: ASYNC109
) -> None:
    """POST ``summary`` to ``webhook`` in its format; ``DeliveryError`` unless a 2xx came back.

    The error names the webhook as ``scheme://host:port`` and the status or the reason (no
    answer within ``timeout`` seconds, a refused connection), never its path or query.
    """
    where = endpoint(webhook.url)
    body = _body(webhook, summary)
    problem: str | None = None
    try:
        async with asyncio.timeout(timeout):
            status = await asyncio.to_thread(_post, webhook.url, body, timeout)
    except urllib.error.HTTPError as exc:
        problem = f"answered HTTP {exc.code}"
    except TimeoutError:
        problem = f"no answer within {timeout:g} s"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            problem = f"no answer within {timeout:g} s"
        else:
            problem = f"cannot connect: {clean(str(reason))} ({type(reason).__name__})"
    except (OSError, http.client.HTTPException) as exc:
        problem = f"connection failed: {clean(str(exc))} ({type(exc).__name__})"
    else:
        if not 200 <= status < 300:
            problem = f"answered HTTP {status}"
    if problem is not None:
        raise DeliveryError(f"webhook {visible(where)}: {visible(problem)}") from None
    log.info("webhook_posted", endpoint=where, format=webhook.format, about=summary.get("event"))


async def announce(
    webhooks: Sequence[Webhook],
    summary: Mapping[str, Any],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 (passed on to post_summary)
) -> tuple[str, ...]:
    """Post ``summary`` to every webhook at once; each failure logged, its message returned.

    A failing webhook never stops the others nor the command: the caller decides what the
    failures mean for its exit code (``--strict-webhook``).
    """
    results = await asyncio.gather(
        *(post_summary(hook, summary, timeout=timeout) for hook in webhooks),
        return_exceptions=True,
    )
    errors = []
    for hook, result in zip(webhooks, results, strict=True):
        if isinstance(result, DeliveryError):
            log.warning("webhook_failed", endpoint=endpoint(hook.url), error=str(result))
            errors.append(str(result))
        elif isinstance(result, BaseException):
            raise result
    return tuple(errors)


async def announce_run_async(run_dir: Path, report: RunReport) -> tuple[str, ...]:
    """Post a finished run's summary to every webhook its ``delivery.json`` names (none
    without one); each failure logged, the messages returned, as ``announce`` does."""
    plan = read_plan(run_dir)
    webhooks = () if plan is None else plan.webhooks()
    if not webhooks:
        return ()
    return await announce(webhooks, run_summary(report, run_dir))


announce_run = blocking(announce_run_async)
