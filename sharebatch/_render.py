"""Text renderings of library results for the terminal (used by the CLI only)."""

from __future__ import annotations

from typing import Any


def _expiry(grant: dict[str, Any]) -> str:
    if grant["expires_at"]:
        return f"until {grant['expires_at']}"
    seconds = int(grant["expires_in"])
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit} after signing"
    return f"{seconds}s after signing"


def render_plan(plan: dict[str, Any]) -> str:
    """``sharebatch validate``'s output: one block per recipient, every resolved setting."""
    lines = [
        f"manifest {plan['manifest']} (sha256 {plan['sha256'][:12]}...) is valid",
        f"as of {plan['as_of']}; {plan['list_tasks']} prefix listings; "
        f"output {plan['output_dir'] or 'bundles'}",
    ]
    for job in plan["jobs"]:
        lines.append(f"job {job['name']}")
        for grant in job["recipients"]:
            who = " ".join(
                part
                for part in (grant["name"], f"<{grant['email']}>" if grant["email"] else None)
                if part
            )
            lines.append(f"  recipient {grant['recipient']}" + (f" ({who})" if who else ""))
            where = grant["bucket"] + (f" in {grant['region']}" if grant["region"] else "")
            if grant["endpoint_url"]:
                where += f" at {grant['endpoint_url']}"
            lines.append(f"    bucket     {where}")
            for prefix in grant["prefixes"]:
                lines.append(f"    prefix     {prefix}")
            lines.append(f"    expires    {_expiry(grant)}")
            for name, value in grant["filters"].items():
                shown = ", ".join(value) if isinstance(value, list | tuple) else value
                lines.append(f"    {name:<10} {shown}")
            lines.append(f"    file name  {grant['download_name']}")
            if grant["content_type"]:
                lines.append(f"    type       {grant['content_type']}")
            lines.append(f"    formats    {', '.join(grant['formats'])}")
    return "\n".join(lines)
