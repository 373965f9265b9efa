"""The command line surface: entry points, version, help, endpoint from the environment."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sharebatch import __version__
from sharebatch.cli import app
from tests.support.paths import ROOT
from tests.support.s3 import S3, fetch, write_manifest


def test_python_dash_m_reports_the_version() -> None:
    """`python -m sharebatch --version` works, as does the console script."""
    done = subprocess.run(
        [sys.executable, "-m", "sharebatch", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"sharebatch {__version__}\n")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["validate", "{missing}"], id="manifest-error"),
        pytest.param(["doctor", "{missing}", "--region", "no region"], id="option-callback"),
        pytest.param(["inspect", "https:/x"], id="link-error"),
    ],
)
def test_an_error_ends_alike_from_every_entry_point(args: list[str], tmp_path: Path) -> None:
    """The application maps a SharebatchError to its exit code in one place, so CliRunner,
    `python -m sharebatch` and the console script end with the same code and stderr."""
    args = [arg.format(missing=tmp_path / "missing.yml") for arg in args]
    expected = CliRunner().invoke(app, args)
    assert expected.exit_code == 2 and expected.stderr.startswith(
        (str(tmp_path), "sharebatch: error: ")
    )
    script = Path(sys.executable).parent / "sharebatch"
    for command in ([sys.executable, "-m", "sharebatch"], [str(script)]):
        done = subprocess.run([*command, *args], capture_output=True, text=True, check=False)
        assert (done.returncode, done.stderr) == (expected.exit_code, expected.stderr)


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
    from tests.support.s3 import fresh_s3

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


EXAMPLE = ROOT / "manifests" / "q3-partners.yml"


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
    from sharebatch.manifest.load import manifest_json_schema

    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == json.loads(json.dumps(manifest_json_schema()))
    assert schema["title"] == "sharebatch manifest"
    assert {"version", "jobs"} <= set(schema["properties"])


RETURNS = ROOT / "manifests" / "signed-returns.yml"


def _command(command: str, tmp_path: Path) -> list[str]:
    """``command`` on a valid manifest (or bundle folder), writing only under tmp_path/out."""
    out = tmp_path / "out"
    return {
        "validate": ["validate", str(RETURNS)],
        "run": ["run", str(RETURNS), "--out", str(out)],
        "inbox": ["inbox", str(RETURNS), "--csv", str(out / "inbox.csv")],
        "doctor": ["doctor", str(RETURNS)],
        "renew": ["renew", str(out)],
    }[command]


@pytest.mark.parametrize("command", ["validate", "run", "inbox", "doctor"])
@pytest.mark.parametrize("as_of", ["0001-01-01", "0001-12-31"])
def test_as_of_without_a_previous_year_exits_2(tmp_path: Path, command: str, as_of: str) -> None:
    """A run date in year 1 (the year before would be year 0): one line naming --as-of, exit 2."""
    result = CliRunner().invoke(app, [*_command(command, tmp_path), "--as-of", as_of])
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    assert result.stderr.splitlines() == [
        f"sharebatch: error: --as-of {as_of}: the period before it would start before year 1;"
        " use 0002-01-01 or later"
    ]
    assert not (tmp_path / "out").exists()


def test_last_day_of_the_calendar_is_a_valid_as_of(s3: S3, tmp_path: Path) -> None:
    """--as-of 9999-12-31 resolves in validate, run and inbox: the periods before it exist."""
    result = CliRunner().invoke(app, ["validate", str(RETURNS), "--as-of", "9999-12-31", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    prefixes = [p for job in plan["jobs"] for r in job["recipients"] for p in r["prefixes"]]
    assert prefixes[0] == "partners/globex/9999-Q3/"
    s3.bucket("cli-bucket", {"r/9999-Q3/a.txt": b"late", "in/9999-Q3/r/back.pdf": b"%PDF"})
    manifest = write_manifest(
        tmp_path / "m.yml",
        "version: 1\njobs:\n  - name: j\n    bucket: cli-bucket\n    region: eu-west-1\n"
        '    expires_in: 10m\n    prefixes: ["r/{period.label}/"]\n'
        "    upload: {prefix: 'in/{period.label}/{recipient.id}/', max_size: 1MB}\n"
        "    recipients: [{id: r}]\n",
    )
    common = ["--as-of", "9999-12-31", "--endpoint-url", s3.endpoint]
    run = CliRunner().invoke(app, ["run", str(manifest), "--out", str(tmp_path / "o"), *common])
    assert run.exit_code == 0, run.stderr
    [row] = _links(run)
    assert fetch(row["url"]) == b"late"
    inbox = CliRunner().invoke(app, ["inbox", str(manifest), "--json", *common])
    assert inbox.exit_code == 0, inbox.stderr
    [slot] = json.loads(inbox.stdout)["slots"]
    assert [(f["key"], f["status"]) for f in slot["files"]] == [
        ("in/9999-Q3/r/back.pdf", "received")
    ]


BAD_ENDPOINTS = {
    "javascript": ("javascript:alert(1)", "must be an http:// or https:// URL with a host"),
    "ftp": ("ftp://127.0.0.1:9000", "must be an http:// or https:// URL with a host"),
    "no-host": ("http://:9000", "must be an http:// or https:// URL with a host"),
    "credentials": ("http://admin:hunter2@127.0.0.1:9000", "must not contain a user name"),
    "port": ("http://127.0.0.1:99999", "port from 1 to 65535"),
    "port-zero": ("http://127.0.0.1:0", "port from 1 to 65535"),
    "path": ("http://127.0.0.1:9000/bucket", "without a path, query or fragment"),
    "query": ("http://127.0.0.1:9000?x=1", "without a path, query or fragment"),
    "fragment": ("http://127.0.0.1:9000#x", "without a path, query or fragment"),
    "newline": ("http://127.0.0.1:9000\n", "contains control or invisible character U+000A"),
}
BAD_REGIONS = {"short": "x", "word": "Europe", "escape": "eu-west-1\x1b[2J"}


def _option_cases() -> list[Any]:
    cases = [
        pytest.param("--endpoint-url", value, text, id=f"endpoint-{name}")
        for name, (value, text) in BAD_ENDPOINTS.items()
    ]
    cases += [
        pytest.param("--region", value, "is not an AWS region name", id=f"region-{name}")
        for name, value in BAD_REGIONS.items()
    ]
    return cases


@pytest.mark.usefixtures("credentials")
@pytest.mark.parametrize("command", ["run", "doctor", "inbox", "renew"])
@pytest.mark.parametrize(("option", "value", "text"), _option_cases())
def test_bad_endpoint_or_region_option_exits_2_before_anything(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    option: str,
    value: str,
    text: str,
) -> None:
    """--endpoint-url and --region are held to the manifest's own rules: exit 2, one line.

    Nothing is written, and the message is the manifest field's own, by the option's name.
    """
    monkeypatch.setenv("SHAREBATCH_S3_ATTEMPTS", "1")  # the old code went on to S3
    monkeypatch.setenv("SHAREBATCH_S3_CONNECT_TIMEOUT", "1")
    args = _command(command, tmp_path)
    if command == "renew":
        (tmp_path / "out").mkdir()
    result = CliRunner().invoke(app, [*args, option, value])
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"sharebatch: error: {option} ")
    assert text in line
    assert "hunter2" not in line  # an endpoint URL may carry a password: it is never echoed
    assert list(tmp_path.rglob("*")) == ([tmp_path / "out"] if command == "renew" else [])
    if command != "run":
        return
    field = option.removeprefix("--").replace("-", "_")
    manifest = write_manifest(
        tmp_path / "m.yml",
        f"version: 1\ndefaults:\n  {field}: {json.dumps(value)}\n"
        "jobs:\n  - name: j\n    bucket: b-bucket\n    expires_in: 1h\n"
        "    prefixes: [x/]\n    recipients: [{id: r}]\n",
    )
    in_file = CliRunner().invoke(app, ["validate", str(manifest)])
    assert in_file.exit_code == 2
    issue = in_file.stderr.splitlines()[0]
    assert issue.startswith(f"{manifest}:3:")
    assert issue.split(f" defaults.{field}: {field} ", 1)[1] == line.split(f" {option} ", 1)[1]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_fifo_as_manifest_is_refused_at_once(tmp_path: Path, command: str) -> None:
    """A named pipe is refused before it is read (reading would wait for a writer forever)."""
    fifo = tmp_path / "m.yml"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "sharebatch", command, str(fifo), "--out", str(out)]
    # A subprocess with a timeout: the old code blocked in open() and would hang the suite.
    done = subprocess.run(
        args[:5] if command == "validate" else args,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"{fifo}: manifest is a FIFO (named pipe), not a regular file",
        "sharebatch: 1 problem in the manifest; nothing was listed or written",
    ]
    assert not out.exists()


def _special(tmp_path: Path, kind: str) -> Path:
    if kind == "directory":
        (tmp_path / "d.yml").mkdir()
        return tmp_path / "d.yml"
    if kind == "character device":
        return Path("/dev/zero")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.yml"))
    sock.close()  # the socket file stays
    return tmp_path / "s.yml"


@pytest.mark.parametrize("kind", ["directory", "character device", "socket"])
def test_other_non_regular_manifests_are_refused_by_kind(tmp_path: Path, kind: str) -> None:
    """A directory, a device such as /dev/zero, a socket: each named for what it is, exit 2."""
    path = _special(tmp_path, kind)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"{path}: manifest is a {kind}, not a regular file"


def test_relative_output_dir_is_under_the_manifest_folder(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """output.dir is relative to the manifest's folder, not to where cron starts the run."""
    s3.bucket("cli-bucket", {"x/1.txt": b"one"})
    (tmp_path / "conf").mkdir()
    manifest = write_manifest(
        tmp_path / "conf" / "m.yml",
        'version: 1\noutput: {dir: "out/{period.label}"}\njobs:\n  - name: j\n'
        "    bucket: cli-bucket\n    region: eu-west-1\n    expires_in: 10m\n"
        "    prefixes: [x/]\n    recipients: [{id: r}]\n",
    )
    elsewhere = tmp_path / "cron-home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(
        app, ["run", str(manifest), "--as-of", "2026-10-01", "--endpoint-url", s3.endpoint]
    )
    assert result.exit_code == 0, result.stderr
    run_dir = Path(result.stdout.strip())
    assert run_dir.parent == tmp_path / "conf" / "out" / "2026-Q3"
    assert list(elsewhere.iterdir()) == []
    [row] = _links(result)
    assert fetch(row["url"]) == b"one"
    # validate names the same folder, in text and JSON.
    shown = CliRunner().invoke(app, ["validate", str(manifest), "--as-of", "2026-10-01"])
    assert shown.stdout.splitlines()[1].endswith(f"; output {run_dir.parent}")
    plan = json.loads(
        CliRunner()
        .invoke(app, ["validate", str(manifest), "--as-of", "2026-10-01", "--json"])
        .stdout
    )
    assert (plan["output_dir"], plan["output_folder"]) == ("out/2026-Q3", str(run_dir.parent))


README = ROOT / "README.md"


def test_readme_documents_every_run_option_and_header_field(s3: S3, tmp_path: Path) -> None:
    """README's option table names every option of `run`; its Output section every field of a
    links.json header (read from a real bundle with a recipient name, email and upload slot)."""
    readme = README.read_text(encoding="utf-8")
    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    run = command.get_command(typer.Context(command), "run")
    assert run is not None
    for param in run.params:
        names = [*param.opts, *param.secondary_opts]
        if param.param_type_name == "option" and "--help" not in names:
            assert any(f"| `{name}" in readme or f"/ `{name}" in readme for name in names), names
    s3.bucket("cli-bucket", {"x/1.txt": b"one"})
    manifest = write_manifest(
        tmp_path / "m.yml",
        "version: 1\njobs:\n  - name: j\n    bucket: cli-bucket\n    region: eu-west-1\n"
        "    expires_in: 10m\n    prefixes: [x/]\n"
        "    upload: {prefix: 'in/{recipient.id}/', max_size: 1MB}\n"
        "    recipients: [{id: r, name: Globex, email: ops@globex.example}]\n",
    )
    result = CliRunner().invoke(
        app, ["run", str(manifest), "--out", str(tmp_path / "o"), "--endpoint-url", s3.endpoint]
    )
    assert result.exit_code == 0, result.stderr
    header = json.loads((Path(result.stdout.strip()) / "j" / "r" / "links.json").read_text())[
        "header"
    ]
    assert (header["recipient_name"], header["uploads"]) == ("Globex", 1)
    output = readme.split("### Output", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"[a-z_]+", output.split('{"header": {', 1)[1].split("}, ", 1)[0]))
    assert set(header) <= listed
