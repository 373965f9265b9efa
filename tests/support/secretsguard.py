"""The secrets guard: fails any test whose output shows a signature, a URL or a secret.

What is searched, for every test (tests/conftest.py wires it in):

* pytest's captured stdout, stderr and log records (``scan_report``);
* stdout, stderr and traceback of every ``CliRunner.invoke`` and every ``Popen.communicate``
  (subprocesses: ``python -m sharebatch``), recorded by ``Recorder``;
* every ``audit*.jsonl``, ``summary.json`` and ``*.log`` file under the test's ``tmp_path``.

What counts as a leak: an ``X-Amz-Signature``, ``X-Amz-Security-Token`` or SigV2 ``Signature``
with a value; a PEM private key; the secret access key and session token of the test's
environment; and the bare signature of any link found in a bundle under ``tmp_path`` (a
signature printed alone, without its URL, is a leak as well).

Only bundles may hold URLs. A command whose data *is* links on stdout is marked
``@pytest.mark.secrets_on_stdout``: its stdout is exempt, never its stderr, logs or files.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_LEAK_PATTERNS = (
    re.compile(r"(?i)x-amz-signature[\"']?\s*[=:]\s*[\"']?[0-9a-f]{16}"),
    re.compile(r"(?i)x-amz-security-token[\"']?\s*[=:]\s*[\"']?[A-Za-z0-9%+/=]{8}"),
    re.compile(r"(?<![A-Za-z-])Signature=[A-Za-z0-9%+/]{8}"),
    # A PEM private key (the CloudFront signing key, issue 16) in any output or log.
    re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
)
_SIGNATURE = re.compile(r"(?i)x-amz-signature[\"']?\s*[=:]\s*[\"']?([0-9a-f]{64})")
_LOG_FILE = re.compile(r"audit.*\.jsonl|summary\.json|.*\.log")
_MAX_SCAN_BYTES = 20 * 1024 * 1024

# Secrets the test suite itself defines (conftest adds its fake secret key).
KNOWN_SECRETS: set[str] = set()


def environment_secrets() -> set[str]:
    found = {os.environ.get(n) for n in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    # A test's throwaway "secret" (a few letters) would match ordinary words; real ones do not.
    return {s for s in found if s and len(s) >= 16} | KNOWN_SECRETS


def find_leaks(text: str, secrets: Iterable[str] = ()) -> list[str]:
    """What leaked into ``text``, described without repeating the secret."""
    found = [f"pattern {p.pattern!r}" for p in _LEAK_PATTERNS if p.search(text)]
    found += [f"a secret of {len(s)} characters ({s[:4]}...)" for s in secrets if s in text]
    return found


def _read(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(_MAX_SCAN_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""  # a 0000 file or a dangling link that a test made on purpose


def _files(root: Path) -> Iterable[Path]:
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                yield path


def scan_tree(root: Path, secrets: set[str]) -> tuple[list[str], set[str]]:
    """Leaks in the audit logs and summaries under ``root``, and the signatures of the links
    in every other file (bundles), which must not appear anywhere else either."""
    logs, others = [], []
    for path in _files(root):
        (logs if _LOG_FILE.fullmatch(path.name) else others).append(path)
    signatures = {m.group(1) for p in others for m in _SIGNATURE.finditer(_read(p))}
    problems = []
    for path in logs:
        for leak in find_leaks(_read(path), secrets | signatures):
            problems.append(f"{path}: {leak}")
    return problems, signatures


@dataclass
class Recorder:
    """Output of CliRunner invocations and subprocesses, kept for the check at teardown."""

    outputs: list[tuple[str, str]] = field(default_factory=list)
    allow_stdout: bool = False

    def add(self, where: str, text: str | bytes | None, *, stdout: bool = False) -> None:
        if text is None or (stdout and self.allow_stdout):
            return
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self.outputs.append((where, text))

    def add_exception(self, where: str, exc_info: object) -> None:
        if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[1] is not None:
            self.add(where, "".join(traceback.format_exception(exc_info[1])))

    def problems(self, root: Path | None) -> list[str]:
        secrets = environment_secrets()
        found: list[str] = []
        if root is not None:
            found, signatures = scan_tree(root, secrets)
            secrets |= signatures
        for where, text in self.outputs:
            found += [f"{where}: {leak}" for leak in find_leaks(text, secrets)]
        return found


def scan_report(sections: Iterable[tuple[str, str]], allow_stdout: bool) -> list[str]:
    """Leaks in pytest's captured output of one test phase (``report.sections``)."""
    secrets = environment_secrets()
    found = []
    for title, text in sections:
        if allow_stdout and "stdout" in title:
            continue
        found += [f"{title}: {leak}" for leak in find_leaks(text, secrets)]
    return found
