"""``sharebatch policy``: the bucket policy that makes S3 enforce a manifest's intent."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from sharebatch.guardrails.document import bucket_policy, dumps, read_policy
from sharebatch.manifest.load import load_manifest
from sharebatch.visible import visible


def policy(
    manifest: Annotated[Path, typer.Argument(help="The manifest whose intent S3 should enforce.")],
    bucket: Annotated[
        str | None,
        typer.Option(help="The bucket to write the policy for (required if several)."),
    ] = None,
    existing: Annotated[
        Path | None,
        typer.Option(
            help="The bucket's current policy (JSON, or get-bucket-policy's whole answer):"
            " kept, with our sharebatch-* statements replaced."
        ),
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"],
            help="Run date (period templates) and the moment expires_at lifetimes are counted"
            " from (UTC; default: now).",
        ),
    ] = None,
) -> None:
    """Print the bucket policy (JSON for put-bucket-policy) that makes S3 enforce MANIFEST.

    Example: sharebatch policy manifests/q3.yml --bucket acme-reports --existing current.json

    Statements (Sid sharebatch-*, replaced on each use, every other statement kept in order):
    presigned requests older than the longest lifetime the manifest issues in the bucket
    (links, upload slots, recipient pages; plus 60 s slack) denied; anything but SigV4
    denied; requests without TLS denied; presigned GETs of the prefixes of link: s3
    recipients with allow_ips denied from other networks (a prefix another recipient reads
    from anywhere is left out, and said on stderr); for link: cloudfront, the distribution's
    Origin Access Control may GET its prefixes (needs cloudfront.distribution_arn).

    An expires_at lifetime is its distance from --as-of (default: now): links signed earlier
    live longer, so give --as-of the time of the earliest run still in use. Prefixes are
    rendered for --as-of's period: print the policy again for each new period.

    Exit codes: 0 printed; 2 invalid manifest, options or --existing file (nothing printed).
    """
    if as_of is None:
        moment = datetime.now(UTC)
    elif as_of.tzinfo is None:
        moment = as_of.replace(tzinfo=UTC)
    else:
        moment = as_of.astimezone(UTC)
    loaded = load_manifest(manifest, as_of=moment.date(), now=moment)
    current = read_policy(existing) if existing is not None else None
    result = bucket_policy(loaded, bucket, now=moment, existing=current)
    for note in result.notes:
        typer.echo(f"sharebatch: warning: {visible(note)}", err=True)
    typer.echo(dumps(result.document))
