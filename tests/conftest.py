"""Shared fixtures: a real HTTP S3 (moto's server on 127.0.0.1) and a sealed AWS environment."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from sharebatch import audit
from tests.support import secretsguard
from tests.support.chromium import require_chromium
from tests.support.clamd import ClamdServer, clamd_server, require_tools
from tests.support.quarterly import QuarterlyRun
from tests.support.s3 import S3, fresh_s3, seal_aws_env, use_test_credentials
from tests.support.smtp import Server, TlsFiles, make_tls, smtp_server


@pytest.fixture(autouse=True)
def sealed_aws_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test can reach a real account: AWS_* variables gone, config files empty, no IMDS."""
    seal_aws_env(monkeypatch, tmp_path_factory.mktemp("aws-config"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "secrets_on_stdout: the command's data on stdout is links (stderr still guarded)"
    )
    config.addinivalue_line(
        "markers",
        "own_clock: runs sharebatch under a clock of its own (faketime -f), whatever the real "
        "one says; the clock pass (make test-clock) leaves it out",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """The secrets guard, part 1: fail a test whose captured output shows a secret."""
    report = yield
    allow = item.get_closest_marker("secrets_on_stdout") is not None
    # Sections accumulate over setup, call and teardown: each phase checks its own only.
    own = [(title, text) for title, text in report.sections if title.endswith(report.when)]
    leaks = secretsguard.scan_report(own, allow) if report.passed else []
    if leaks:
        report.outcome = "failed"
        report.longrepr = (
            "secret in captured output (see tests/support/secretsguard.py):\n" + "\n".join(leaks)
        )
    return report


@pytest.fixture(autouse=True)
def secrets_guard(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The secrets guard, part 2: CLI and subprocess output, audit logs and summaries."""
    # Asked for now, so that it is torn down after this check, not before.
    root = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    recorder = secretsguard.Recorder(
        allow_stdout=request.node.get_closest_marker("secrets_on_stdout") is not None
    )
    invoke, communicate = CliRunner.invoke, subprocess.Popen.communicate

    def recorded_invoke(self: CliRunner, *args: Any, **kwargs: Any) -> Any:
        result = invoke(self, *args, **kwargs)
        recorder.add("CliRunner stdout", result.stdout, stdout=True)
        recorder.add("CliRunner stderr", result.stderr)
        recorder.add_exception("CliRunner exception", result.exc_info)
        return result

    def recorded_communicate(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> Any:
        out, err = communicate(self, *args, **kwargs)
        recorder.add(f"{self.args} stdout", out, stdout=True)
        recorder.add(f"{self.args} stderr", err)
        return out, err

    monkeypatch.setattr(CliRunner, "invoke", recorded_invoke)
    monkeypatch.setattr(subprocess.Popen, "communicate", recorded_communicate)
    yield
    leaks = recorder.problems(root)
    if leaks:
        pytest.fail("secret leaked (see tests/support/secretsguard.py):\n" + "\n".join(leaks))


@pytest.fixture(autouse=True)
def reset_audit() -> Iterator[None]:
    """Each test starts with no log sinks, whatever the previous one configured."""
    audit.reset()
    yield
    audit.reset()


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Static fake credentials in the environment, as cron would provide real ones."""
    use_test_credentials(monkeypatch)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto S3 server per test session, on a random port of 127.0.0.1."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint: str, credentials: None) -> Iterator[S3]:
    """A freshly reset S3 with the test's credentials."""
    with fresh_s3(moto_endpoint) as handle:
        yield handle


@pytest.fixture
def quarterly(s3: S3, tmp_path: Path) -> QuarterlyRun:
    """The shared quarterly-partners manifest, run on moto with the files a test gives."""
    return QuarterlyRun(s3, tmp_path)


@pytest.fixture
def smtp() -> Iterator[Server]:
    """A plain SMTP server (aiosmtpd) on a random port of 127.0.0.1, keeping what it gets."""
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A private CA and a certificate for 127.0.0.1 it signed, made for this session."""
    return make_tls(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def executable(request: pytest.FixtureRequest) -> str:
    """The Chromium a browser test drives; skipped without one (failed where CI requires it)."""
    return require_chromium(request.node.nodeid)


@pytest.fixture(scope="session")
def clamd() -> Iterator[ClamdServer]:
    """A real clamd for the session, on a database of one EICAR hash signature made here;
    skipped without clamd (failed where CI requires it: SHAREBATCH_REQUIRE_CLAMD=1)."""
    with clamd_server(*require_tools("the tests against a real clamd")) as server:
        yield server
