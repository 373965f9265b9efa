"""sharebatch: scheduled, reviewable sharing of private S3 files through presigned URLs.

The public API is what this module exports; everything else is internal and may change::

    import sharebatch
    summary = sharebatch.run_manifest("manifests/q3.yml", out="bundles")
    print(summary.status, summary.run_dir)

The exceptions exported are those its functions raise; ``sharebatch.errors`` draws the tree.

A ``Connection`` says how to reach S3 where the AWS chain and the manifest do not (the
command line's ``--profile``, ``--region`` and ``--endpoint-url``)::

    minio = sharebatch.Connection(endpoint_url="http://127.0.0.1:9000")
    summary = sharebatch.run_manifest("manifests/q3.yml", connection=minio)

After a run whose manifest has ``notify:`` settings, ``notify`` mails each recipient their
bundle, as ``sharebatch notify`` does (idempotent; held back by the review gate)::

    report = sharebatch.notify(summary.run_dir)
    print(report.counts(), report.held, report.exit_code)

Every entry point has a blocking face and an ``_async`` twin with the same parameters.
"""

from sharebatch.delivery.notify import NotifyReport, notify, notify_async
from sharebatch.errors import (
    CredentialsError,
    Interrupted,
    LinkError,
    ManifestError,
    ManifestIssue,
    RunCrashed,
    RunLocked,
    S3WriteError,
    SharebatchError,
    SigningError,
    UsageError,
)
from sharebatch.manifest.load import Manifest, load_manifest
from sharebatch.models import Connection, RunReport, RunSummary
from sharebatch.run.runner import run_manifest, run_manifest_async
from sharebatch.version import __version__

__all__ = [
    "Connection",
    "CredentialsError",
    "Interrupted",
    "LinkError",
    "Manifest",
    "ManifestError",
    "ManifestIssue",
    "NotifyReport",
    "RunCrashed",
    "RunLocked",
    "RunReport",
    "RunSummary",
    "S3WriteError",
    "SharebatchError",
    "SigningError",
    "UsageError",
    "__version__",
    "load_manifest",
    "notify",
    "notify_async",
    "run_manifest",
    "run_manifest_async",
]
