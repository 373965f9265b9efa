"""Text renderings of library results for the terminal, and ``counted``, the one way a count
is written with its noun (the CLI's renderings and the library's messages use it)."""

from __future__ import annotations

from typing import Any

from sharebatch.units import counted, human_size


def _expiry(grant: dict[str, Any]) -> str:
    if grant["expires_at"]:
        return f"until {grant['expires_at']}"
    seconds = int(grant["expires_in"])
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit} after signing"
    return f"{seconds}s after signing"


def _size(value: int) -> str:
    exact = counted(value, "byte")
    return f"{exact} ({human_size(value)})" if value >= 1 << 10 else exact


def _filter_value(name: str, value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(value)
    if name in ("min_size", "max_size"):
        return _size(int(value))
    return str(value)


def _upload_rows(slot: dict[str, Any]) -> list[tuple[str, str]]:
    seconds = int(slot["expires_in"])
    rows = [
        ("upload to", slot["prefix"]),
        ("upload expires", _expiry({"expires_at": None, "expires_in": seconds})),
        ("upload max size", _size(int(slot["max_size"]))),
        ("upload types", ", ".join(slot["content_types"]) or "any"),
    ]
    if slot["keys"]:
        rows.append(("upload keys", ", ".join(slot["keys"])))
    return rows


def _scan_text(scan: dict[str, Any]) -> str:
    by = f"clamd at {scan['clamd']}" if scan["engine"] == "clamd" else "GuardDuty's tags"
    where = scan["quarantine_prefix"]
    return by + (f"; infected files moved to {where}" if where else "; infected files stay")


def render_plan(plan: dict[str, Any]) -> str:
    """``sharebatch validate``'s output: one block per recipient, every resolved setting."""
    lines = [
        f"manifest {plan['manifest']} (sha256 {plan['sha256'][:12]}...) is valid",
        f"as of {plan['as_of']}; {counted(plan['list_tasks'], 'prefix listing')}; "
        f"output {plan['output_folder']}",
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
            rows = [("bucket", where)]
            rows += [("prefix", prefix) for prefix in grant["prefixes"]]
            for merged in grant["merged_prefixes"]:
                inner, outer = merged["prefix"], merged["into"]
                rows.append(
                    (
                        "warning",
                        f"prefix {inner} is inside {outer} and merged into it: its objects"
                        f" come with {outer}'s, in key order",
                    )
                )
            rows.append(("expires", _expiry(grant)))
            rows += [(k, _filter_value(k, v)) for k, v in grant["filters"].items()]
            rows.append(("file name", grant["download_name"]))
            if grant["content_type"]:
                rows.append(("content type", grant["content_type"]))
            rows.append(("formats", ", ".join(grant["formats"])))
            if grant.get("upload"):
                rows += _upload_rows(grant["upload"])
            if grant.get("scan"):
                rows.append(("upload scan", _scan_text(grant["scan"])))
            lines += [f"    {name:<16}{value}" for name, value in rows]
    return "\n".join(lines)
