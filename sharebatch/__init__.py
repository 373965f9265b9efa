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

import importlib as _importlib
import typing as _typing

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
from sharebatch.models import Connection, RunReport, RunSummary
from sharebatch.version import __version__

if _typing.TYPE_CHECKING:
    from sharebatch.delivery.notify import NotifyReport, notify, notify_async
    from sharebatch.manifest.load import Manifest, load_manifest
    from sharebatch.run.runner import run_manifest, run_manifest_async

_LAZY = {
    "Manifest": "sharebatch.manifest.load",
    "NotifyReport": "sharebatch.delivery.notify",
    "load_manifest": "sharebatch.manifest.load",
    "notify": "sharebatch.delivery.notify",
    "notify_async": "sharebatch.delivery.notify",
    "run_manifest": "sharebatch.run.runner",
    "run_manifest_async": "sharebatch.run.runner",
}
"""Exported names imported on first use, from where they live: each brings in much of the
library (boto, pydantic, the mail client), which a command that needs none of it (``merge``,
a signing worker, ``--help``) should not pay for at start-up."""


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sharebatch' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
