"""The one exception tree of sharebatch.

Every error the library raises on purpose is a ``SharebatchError``; each class carries the
process exit code the CLI maps it to, so the CLI catches the base class once, in one place
(``cli/app.py``)::

    SharebatchError            exit 1    something failed; the message says what
    ├── UsageError             exit 2    the command line or the manifest is invalid
    │   ├── ManifestError      exit 2    one or more problems, each with file:line:col and field
    │   ├── TemplateError      exit 2    internal: a template's braces or variable names are wrong
    │   ├── LinkError          exit 2    a URL, bundle or run file that cannot be read
    │   └── ShardMismatch      exit 2    internal: a shard of another run, or not as written
    ├── CredentialsError       exit 3    no usable credentials, or S3 refused them
    ├── SigningError           exit 1    a link could not be signed within SigV4's rules
    ├── S3ListingError         exit 1    internal: listing one prefix failed
    ├── S3ReadError            exit 1    internal: reading one object failed
    ├── S3WriteError           exit 1    a run folder could not be published to S3
    ├── InventoryError         exit 1    internal: an S3 Inventory report could not be used
    ├── RunLocked              exit 75   another run is writing to the same output folder
    ├── ShardsIncomplete       exit 1    internal: a merge found shards missing or unfinished
    ├── RunCrashed             exit 1    the run broke off (a full disk, an I/O error, a bug)
    ├── DeliveryError          exit 1    internal: a mail or webhook could not be handed over
    └── Interrupted            exit 130  SIGINT (or 143 for SIGTERM) stopped the run

``sharebatch`` exports the classes its public functions can raise. Those marked internal never
leave them: a ``TemplateError`` becomes a located manifest issue (``ManifestError``), an
``S3ListingError`` a failed prefix in the run's summary (or an unreadable log source in
``usage``'s), an ``S3ReadError`` an access log file's bad line, an ``InventoryError`` a failed
prefix of every job reading that report, and a ``DeliveryError`` a failed recipient (a page
not stored: the run's summary; a mail refused: ``notify``'s report) or a webhook's entry in
``NotifyReport.webhook_errors``; import them from here. ``ShardMismatch`` and
``ShardsIncomplete`` come from ``merge`` (``shards/merge``), not yet a public function.
A ``LinkError`` comes from ``notify``
(a run folder or bundle it cannot read) and from ``inspect``,
``verify`` and ``renew``.

A run that finishes with some prefixes failed is not an exception: ``run_manifest`` returns a
``RunSummary`` whose ``exit_code`` is 1, because everything that could be done was done.

Messages never contain presigned URLs, signatures, secret keys or session tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CREDENTIALS = 3
# sysexits' EX_TEMPFAIL: nothing was done and a later try may succeed (cron can retry).
EXIT_LOCKED = 75
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class SharebatchError(Exception):
    """Base class: anything sharebatch refuses or fails to do."""

    exit_code: int = EXIT_FAILED


class UsageError(SharebatchError):
    """The command line asks for something impossible (a bad option, an existing run id)."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class ManifestIssue:
    """One problem in a manifest, located so a person can go straight to it."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ManifestError(UsageError):
    """The manifest cannot be used; ``issues`` lists every problem found, in file order."""

    def __init__(self, issues: list[ManifestIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.line or 0, i.column or 0, i.field))
        super().__init__("\n".join(str(i) for i in self.issues))


class TemplateError(UsageError):
    """A template that cannot be read or rendered; the message is meant for the user.

    Not a ``ValueError``: the manifest's validators turn it into one at their boundary
    (``manifest/fields.py``), adding which template it was, so pydantic locates the issue.
    """


class LinkError(UsageError):
    """A URL or bundle that cannot be read; the message says which file, line and field."""


class CredentialsError(SharebatchError):
    """No credentials were found, or S3 rejected them before any link was issued."""

    exit_code = EXIT_CREDENTIALS


class SigningError(SharebatchError):
    """A link could not be signed within the rules; never carries the URL."""


class S3ListingError(SharebatchError):
    """Listing one prefix failed; the pipeline records it and the other prefixes go on."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class S3ReadError(SharebatchError):
    """Reading one object failed (refused, gone, or the connection dropped mid-way); the
    reader reports the object and reads on."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class S3WriteError(SharebatchError):
    """Uploading one object failed (refused, or the connection dropped after botocore's
    retries): the folder being published is left without its ``summary.json``, so it never
    reads as complete. The message names the key, never a signature."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class InventoryError(SharebatchError):
    """An S3 Inventory report could not be used: none found, too old, a bad checksum, a
    data file missing, cut short or unreadable. Every job reading it fails (its prefixes are
    recorded as failed); the others go on. The message names the report or data file."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class ShardMismatch(UsageError):
    """A shard folder that cannot join this merge: another run id, manifest or shard count,
    or a record that does not match what its shard wrote. The message names the shard."""


class ShardsIncomplete(SharebatchError):
    """A merge found shards missing or not finished; it wrote nothing. The message names
    them (re-run those shards, then merge again)."""


class RunLocked(SharebatchError):
    """Another run holds the output folder's lock; this one did nothing and wrote nothing."""

    exit_code = EXIT_LOCKED


class RunCrashed(SharebatchError):
    """Something no check foresaw stopped the run: a full disk, an I/O error, a bug.

    The run is recorded as ``failed`` like any other and keeps no bundle; the original
    exception is the ``__cause__`` (its traceback is for a bug report, not for the operator).
    """


class DeliveryError(SharebatchError):
    """A mail server or a webhook did not take what was handed to it.

    The message names the server and its reply, never a password, a link or a message body.
    """


class Interrupted(SharebatchError):
    """A signal stopped the run; nothing half-written was left behind."""

    exit_code = EXIT_SIGINT

    def __init__(self, signal_name: str = "SIGINT") -> None:
        self.signal_name = signal_name
        self.exit_code = EXIT_SIGTERM if signal_name == "SIGTERM" else EXIT_SIGINT
        super().__init__(f"interrupted by {signal_name}")
