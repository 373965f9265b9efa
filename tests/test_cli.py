"""The command line surface: entry points, version, help, endpoint from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch import __version__
from sharebatch.cli import app
from tests.conftest import S3, fetch, write_manifest


def test_python_dash_m_reports_the_version() -> None:
    """`python -m sharebatch --version` works, as does the console script."""
    done = subprocess.run(
        [sys.executable, "-m", "sharebatch", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"sharebatch {__version__}\n")


def test_run_help_documents_exit_codes() -> None:
    """`sharebatch run --help` names every exit code."""
    result = CliRunner().invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    for code in ("0 ok", "1 some prefixes failed", "2 invalid", "3 no usable credentials", "130"):
        assert code in " ".join(result.stdout.split())


def test_endpoint_from_the_standard_environment(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_ENDPOINT_URL_S3 (the standard chain) points the run at an S3-compatible endpoint."""
    s3.bucket("env-bucket", {"x/1.txt": b"one"})
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
    manifest = write_manifest(
        tmp_path / "m.yml",
        "version: 1\njobs:\n  - name: j\n    bucket: env-bucket\n    region: eu-west-1\n"
        "    expires_in: 10m\n    prefixes: [x/]\n    recipients: [{id: r}]\n",
    )
    result = CliRunner().invoke(app, ["run", str(manifest), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.stderr
    bundle = json.loads((Path(result.stdout.strip()) / "j" / "r" / "links.json").read_text())
    assert [fetch(row["url"]) for row in bundle["links"]] == [b"one"]
    assert bundle["links"][0]["url"].startswith(f"{s3.endpoint}/env-bucket/x/1.txt?")


def test_us_east_1_links_are_sigv4(s3: S3, tmp_path: Path) -> None:
    """Even where botocore would default to SigV2 (us-east-1), links are SigV4."""
    s3.bucket("east-bucket", {"k.txt": b"east"}, region="us-east-1")
    manifest = write_manifest(
        tmp_path / "m.yml",
        "version: 1\njobs:\n  - name: j\n    bucket: east-bucket\n    region: us-east-1\n"
        "    expires_in: 10m\n    prefixes: [k]\n    recipients: [{id: r}]\n",
    )
    result = CliRunner().invoke(
        app, ["run", str(manifest), "--out", str(tmp_path / "o"), "--endpoint-url", s3.endpoint]
    )
    assert result.exit_code == 0, result.stderr
    [row] = json.loads((Path(result.stdout.strip()) / "j" / "r" / "links.json").read_text())[
        "links"
    ]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in row["url"] and "AWSAccessKeyId" not in row["url"]
    assert fetch(row["url"]) == b"east"


def _one_object_manifest(tmp_path: Path, region: str = "eu-west-1") -> Path:
    return write_manifest(
        tmp_path / "m.yml",
        f"version: 1\njobs:\n  - name: j\n    bucket: cli-bucket\n    region: {region}\n"
        "    expires_in: 10m\n    prefixes: [x/]\n    recipients: [{id: r}]\n",
    )


def _links(result: object) -> list[dict[str, str]]:
    run_dir = Path(result.stdout.strip())  # type: ignore[attr-defined]
    links: list[dict[str, str]] = json.loads((run_dir / "j" / "r" / "links.json").read_text())[
        "links"
    ]
    return links


def test_profile_selects_credentials(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--profile reads that profile's keys from the shared credentials file."""
    from tests.conftest import fresh_s3

    with fresh_s3(moto_endpoint) as s3:
        s3.bucket("cli-bucket", {"x/1.txt": b"one"})
    Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        "[partner]\naws_access_key_id = AKIAPROFILEPROFILE00\naws_secret_access_key = s\n"
    )
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(_one_object_manifest(tmp_path)),
            "--out",
            str(tmp_path / "o"),
            "--endpoint-url",
            moto_endpoint,
            "--profile",
            "partner",
        ],
    )
    assert result.exit_code == 0, result.stderr
    [row] = _links(result)
    assert "X-Amz-Credential=AKIAPROFILEPROFILE00%2F" in row["url"]
    assert fetch(row["url"]) == b"one"


def test_unknown_profile_exits_3(tmp_path: Path, moto_endpoint: str) -> None:
    """A profile that does not exist is a credentials error (exit 3) naming the profile."""
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(_one_object_manifest(tmp_path)),
            "--out",
            str(tmp_path / "o"),
            "--endpoint-url",
            moto_endpoint,
            "--profile",
            "nobody",
        ],
    )
    assert result.exit_code == 3
    assert "nobody" in result.stderr
    assert not (tmp_path / "o").exists()


def test_region_option_overrides_the_manifest(s3: S3, tmp_path: Path) -> None:
    """--region replaces the manifest's region in the signature's credential scope."""
    s3.bucket("cli-bucket", {"x/1.txt": b"one"})
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(_one_object_manifest(tmp_path)),
            "--out",
            str(tmp_path / "o"),
            "--endpoint-url",
            s3.endpoint,
            "--region",
            "us-west-2",
        ],
    )
    assert result.exit_code == 0, result.stderr
    [row] = _links(result)
    assert "%2Fus-west-2%2Fs3%2Faws4_request" in row["url"]


EXAMPLE = Path(__file__).parent.parent / "manifests" / "q3-partners.yml"


def test_validate_prints_the_resolved_plan_without_s3(tmp_path: Path) -> None:
    """validate resolves templates for --as-of and prints every recipient; no credentials needed."""
    result = CliRunner().invoke(app, ["validate", str(EXAMPLE), "--as-of", "2026-11-28"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"manifest {EXAMPLE} (sha256 ")
    assert "reports/2026/Q3/shared/" in result.stdout
    assert "{period" not in result.stdout.replace("{basename}", "")
    as_json = CliRunner().invoke(app, ["validate", str(EXAMPLE), "--as-of", "2026-01-15", "--json"])
    plan = json.loads(as_json.stdout)
    assert plan["as_of"] == "2026-01-15"
    prefixes = [p for job in plan["jobs"] for r in job["recipients"] for p in r["prefixes"]]
    assert "reports/2025/Q4/shared/" in prefixes  # the quarter before 2026-01-15 wraps the year


def test_validate_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    """An invalid manifest: one located line per problem on stderr, nothing on stdout, exit 2."""
    bad = write_manifest(
        tmp_path / "bad.yml",
        "version: 1\njobs:\n  - name: x\n    bucket: Bad_Bucket\n    expires_in: 9d\n"
        '    prefixes: ["a/{period.quater}/"]\n    recipients: [{id: "../x"}]\n',
    )
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert [line.split(": ", 2)[:2] for line in lines[:-1]] == [
        [f"{bad}:4:13", "jobs[0].bucket"],
        [f"{bad}:5:17", "jobs[0].expires_in"],
        [f"{bad}:6:16", "jobs[0].prefixes[0]"],
        [f"{bad}:7:23", "jobs[0].recipients[0].id"],
    ]
    assert lines[-1] == "sharebatch: 4 problems in the manifest; nothing was listed or written"


def test_bad_as_of_is_a_usage_error(tmp_path: Path) -> None:
    """--as-of takes YYYY-MM-DD; anything else is exit 2."""
    result = CliRunner().invoke(app, ["validate", str(EXAMPLE), "--as-of", "28/11/2026"])
    assert result.exit_code == 2


def test_schema_is_the_manifest_json_schema() -> None:
    """`sharebatch schema` prints the JSON Schema that editors use to check manifests."""
    from sharebatch.manifest import manifest_json_schema

    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == json.loads(json.dumps(manifest_json_schema()))
    assert schema["title"] == "sharebatch manifest"
    assert {"version", "jobs"} <= set(schema["properties"])
