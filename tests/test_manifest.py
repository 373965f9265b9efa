"""Tests for sharebatch.manifest: loading, inheritance, durations, and every rejection.

Bad manifests live as real files in tests/bad_manifests so each can be opened and read next
to the error it must produce; the table below states that error for each file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from sharebatch.errors import EXIT_USAGE, ManifestError, ManifestIssue, UsageError
from sharebatch.manifest import (
    MAX_EXPIRY_SECONDS,
    Job,
    Manifest,
    Recipient,
    load_manifest,
    parse_duration,
)

BAD = Path(__file__).parent / "bad_manifests"

GOOD = """\
version: 1
defaults:
  bucket: acme-reports
  region: eu-west-1
  expires_in: 7d
jobs:
  - name: q3-partners
    prefixes:
      - reports/2026/Q3/
      - reports/2026/summary/
    recipients:
      - id: globex
        name: Globex Corp
        email: ops@globex.example
        prefixes: [partners/globex/, reports/2026/Q3/]
      - id: initech
  - name: archive
    bucket: acme-archive
    region: us-east-1
    endpoint_url: http://127.0.0.1:9000
    addressing_style: path
    expires_in: 72h
    prefixes: []
    recipients:
      - id: "123"
        prefixes: [old/]
"""


def write(tmp_path: Path, text: str, name: str = "manifest.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def issues_of(path: Path | str) -> list[ManifestIssue]:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    return info.value.issues


# --- good manifests -------------------------------------------------------------------------


def test_good_manifest_loads_with_all_fields(tmp_path: Path) -> None:
    """A valid manifest loads into frozen models with every field the YAML gave."""
    manifest = load_manifest(write(tmp_path, GOOD))
    assert isinstance(manifest, Manifest)
    assert manifest.version == 1
    assert [job.name for job in manifest.jobs] == ["q3-partners", "archive"]
    globex = manifest.jobs[0].recipients[0]
    assert globex == Recipient(
        id="globex",
        name="Globex Corp",
        email="ops@globex.example",
        prefixes=("partners/globex/", "reports/2026/Q3/"),
    )
    initech = manifest.jobs[0].recipients[1]
    assert (initech.name, initech.email, initech.prefixes) == (None, None, ())
    assert manifest.jobs[1].recipients[0].id == "123"


def test_defaults_are_inherited_and_job_values_win(tmp_path: Path) -> None:
    """Jobs take unset settings from defaults; a value on the job overrides the default."""
    first, second = load_manifest(write(tmp_path, GOOD)).jobs
    assert (first.bucket, first.region, first.endpoint_url) == ("acme-reports", "eu-west-1", None)
    assert first.addressing_style == "auto"
    assert first.expires_in == 7 * 86_400
    assert (second.bucket, second.region) == ("acme-archive", "us-east-1")
    assert second.endpoint_url == "http://127.0.0.1:9000"
    assert second.addressing_style == "path"
    assert second.expires_in == 72 * 3_600


def test_recipient_prefixes_job_first_then_own_without_duplicates(tmp_path: Path) -> None:
    """recipient_prefixes lists the job's prefixes then the recipient's, each once, in order."""
    job = load_manifest(write(tmp_path, GOOD)).jobs[0]
    globex, initech = job.recipients
    assert job.recipient_prefixes(globex) == (
        "reports/2026/Q3/",
        "reports/2026/summary/",
        "partners/globex/",
    )
    assert job.recipient_prefixes(initech) == ("reports/2026/Q3/", "reports/2026/summary/")


def test_empty_job_prefixes_allowed_when_every_recipient_has_own(tmp_path: Path) -> None:
    """`prefixes: []` on a job is fine when each recipient brings prefixes of its own."""
    job = load_manifest(write(tmp_path, GOOD)).jobs[1]
    assert job.prefixes == ()
    assert job.recipient_prefixes(job.recipients[0]) == ("old/",)


def test_sha256_and_path_identify_the_file(tmp_path: Path) -> None:
    """sha256 is the hex digest of the file's bytes; path is kept as the caller gave it."""
    path = write(tmp_path, GOOD)
    manifest = load_manifest(path)
    assert manifest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest.path == str(path)
    assert load_manifest(str(path)).path == str(path)


def test_models_are_frozen(tmp_path: Path) -> None:
    """Loaded models cannot be changed after validation."""
    manifest = load_manifest(write(tmp_path, GOOD))
    with pytest.raises(ValidationError):
        manifest.jobs[0].name = "other"  # type: ignore[misc]


def test_public_models_validate_their_fields() -> None:
    """Building a Job by hand applies the same rules as loading one."""
    recipient = Recipient(id="globex")
    job = Job(name="q3", bucket="acme-reports", expires_in="1d", recipients=(recipient,))
    assert job.expires_in == 86_400
    with pytest.raises(ValidationError):
        Job(name="../q3", bucket="acme-reports", expires_in=60, recipients=(recipient,))


def test_aliases_may_share_values(tmp_path: Path) -> None:
    """YAML anchors and aliases work for sharing a recipient list between jobs."""
    text = """\
version: 1
defaults: {bucket: acme-reports, expires_in: 1d}
jobs:
  - name: a
    prefixes: [a/]
    recipients: &everyone
      - id: globex
      - id: initech
  - name: b
    prefixes: [b/]
    recipients: *everyone
"""
    jobs = load_manifest(write(tmp_path, text)).jobs
    assert jobs[0].recipients == jobs[1].recipients


def test_yaml_1_1_surprises_stay_text(tmp_path: Path) -> None:
    """`no`, `on` and `0600` stay text (YAML 1.2), so they are usable as ids and durations."""
    text = """\
version: 1
jobs:
  - name: on
    bucket: acme-reports
    expires_in: 0600
    prefixes: [a/]
    recipients: [{id: no}]
"""
    job = load_manifest(write(tmp_path, text)).jobs[0]
    assert (job.name, job.recipients[0].id, job.expires_in) == ("on", "no", 600)


# --- bad manifests --------------------------------------------------------------------------

# (file, line, column, field, substring of the message); line/column None: whole-file problem.
BAD_CASES: list[tuple[str, int | None, int | None, str, str]] = [
    ("yaml_syntax_error.yml", 8, 15, "", "invalid YAML: expected ',' or ']'"),
    ("tab_indentation.yml", 9, 1, "", "tabs"),
    ("duplicate_key.yml", 11, 9, "jobs[0].recipients[0]", "duplicate key 'id' (first at line 9)"),
    ("duplicate_recipient_id.yml", 11, 13, "jobs[0].recipients[2].id", "duplicate recipient id"),
    ("duplicate_job_name.yml", 10, 11, "jobs[1].name", "duplicate job name 'q3-partners'"),
    ("unknown_field_top.yml", 10, 1, "notes", "unknown field"),
    ("unknown_field_defaults.yml", 5, 3, "defaults.prefixes", "unknown field"),
    ("unknown_field_job.yml", 7, 5, "jobs[0].expire_in", "did you mean 'expires_in'?"),
    ("unknown_field_job_recipient.yml", 10, 5, "jobs[0].recipient", "did you mean 'recipients'"),
    ("unknown_field_recipient.yml", 10, 9, "jobs[0].recipients[0].emial", "unknown field"),
    ("prefixes_is_string.yml", 7, 15, "jobs[0].prefixes", "expected a list"),
    ("version_is_string.yml", 1, 10, "version", "unsupported manifest version '1'"),
    ("version_2.yml", 1, 10, "version", "unsupported manifest version 2; this sharebatch reads"),
    ("version_missing.yml", 1, 1, "version", "reads version 1"),
    ("duration_9d.yml", 10, 17, "jobs[0].expires_in", "9d is longer than the 7-day limit"),
    ("duration_zero.yml", 10, 17, "jobs[0].expires_in", "must be positive"),
    ("duration_negative.yml", 10, 17, "jobs[0].expires_in", "must be positive"),
    ("duration_tomorrow.yml", 10, 17, "jobs[0].expires_in", "'tomorrow' is not a duration"),
    ("duration_months.yml", 10, 17, "jobs[0].expires_in", "months or years"),
    ("duration_boolean.yml", 10, 17, "jobs[0].expires_in", "true is not a duration"),
    ("duration_float.yml", 10, 17, "jobs[0].expires_in", "1.5 is not a duration"),
    ("duration_clock.yml", 10, 17, "jobs[0].expires_in", "'1:30' is not a duration"),
    ("missing_bucket.yml", 5, 5, "jobs[0].bucket", "required: set it on the job or in defaults"),
    ("missing_expires_in.yml", 9, 5, "jobs[1].expires_in", "required: set it on the job or in"),
    ("recipient_id_dotdot.yml", 9, 13, "jobs[0].recipients[0].id", "folder"),
    ("recipient_id_slash.yml", 9, 13, "jobs[0].recipients[0].id", "path separator"),
    ("recipient_id_upper.yml", 9, 13, "jobs[0].recipients[0].id", "uppercase"),
    ("recipient_id_empty.yml", 9, 13, "jobs[0].recipients[0].id", "must not be empty"),
    ("recipient_id_number.yml", 9, 13, "jobs[0].recipients[0].id", "quote it"),
    ("job_name_bad.yml", 6, 11, "jobs[0].name", "job name 'Q3 partners' has uppercase"),
    ("prefix_wildcard.yml", 7, 16, "jobs[0].prefixes[0]", "literal key prefixes, not patterns"),
    ("prefix_empty_string.yml", 7, 26, "jobs[0].prefixes[1]", "must not be empty"),
    ("prefix_leading_slash.yml", 8, 9, "jobs[0].prefixes[0]", "S3 keys rarely begin with '/'"),
    ("recipient_receives_nothing.yml", 11, 9, "jobs[0].recipients[1]", "would receive nothing"),
    ("bucket_uppercase.yml", 3, 11, "defaults.bucket", "'My_Bucket' is not valid"),
    ("bucket_too_short.yml", 7, 13, "jobs[0].bucket", "not 3 to 63"),
    ("bucket_ip_address.yml", 7, 13, "jobs[0].bucket", "IP address"),
    ("region_bad.yml", 4, 11, "defaults.region", "'Europe' is not an AWS region"),
    ("endpoint_url_bad.yml", 4, 17, "defaults.endpoint_url", "http:// or https://"),
    ("addressing_style_bad.yml", 7, 23, "jobs[0].addressing_style", "'auto', 'virtual' or"),
    ("email_bad.yml", 10, 16, "jobs[0].recipients[0].email", "one address"),
    ("jobs_empty.yml", 5, 7, "jobs", "at least one job"),
    ("recipients_empty.yml", 8, 17, "jobs[0].recipients", "at least one recipient"),
    ("empty_file.yml", None, None, "", "manifest is empty"),
    ("top_level_list.yml", 1, 1, "", "must be a mapping"),
    ("python_tag.yml", 10, 15, "jobs[0].recipients[0].name", "unsupported YAML tag"),
    ("alias_bomb.yml", None, None, "", "refusing to expand"),
    ("alias_recursive.yml", 2, 11, "", "refers to itself"),
]


@pytest.mark.parametrize(("name", "line", "column", "field", "text"), BAD_CASES)
def test_bad_manifest_is_rejected_with_one_located_issue(
    name: str, line: int | None, column: int | None, field: str, text: str
) -> None:
    """Each bad manifest raises ManifestError with exactly the expected file:line:col issue."""
    path = BAD / name
    issues = issues_of(path)
    assert len(issues) == 1, "\n".join(map(str, issues))
    issue = issues[0]
    assert (issue.line, issue.column, issue.field) == (line, column, field), str(issue)
    assert text in issue.message
    rendered = str(issue)
    assert rendered.startswith(f"{path}:{line}:" if line is not None else f"{path}: ")
    if field:
        assert f" {field}: " in rendered


def test_bad_manifest_table_covers_every_file() -> None:
    """Every file in tests/bad_manifests has an expected outcome, so none is silently unused."""
    listed = {case[0] for case in BAD_CASES} | {"many_errors.yml"}
    assert {p.name for p in BAD.glob("*.yml")} == listed


def test_all_issues_in_a_file_are_reported_in_line_order() -> None:
    """One load reports every problem in the file, sorted by line, not only the first."""
    with pytest.raises(ManifestError) as info:
        load_manifest(BAD / "many_errors.yml")
    got = [(i.line, i.field) for i in info.value.issues]
    assert got == [
        (5, "jobs[0].name"),
        (6, "jobs[0].expires_in"),
        (7, "jobs[0].prefixes[0]"),
        (10, "jobs[0].recipients[1].id"),
        (11, "jobs[0].recipients[1].emial"),
        (12, "jobs[1].expires_in"),
        (14, "jobs[1].recipients[0]"),
    ]
    assert str(info.value).splitlines() == [str(i) for i in info.value.issues]


def test_manifest_error_is_a_usage_error() -> None:
    """The CLI maps ManifestError to exit code 2 through UsageError."""
    with pytest.raises(UsageError) as info:
        load_manifest(BAD / "version_2.yml")
    assert isinstance(info.value, ManifestError)
    assert info.value.exit_code == EXIT_USAGE


def test_missing_file_is_an_issue_without_line(tmp_path: Path) -> None:
    """A file that cannot be opened is reported as a ManifestIssue, not an OSError."""
    path = tmp_path / "nope.yml"
    (issue,) = issues_of(path)
    assert (issue.line, issue.column, issue.field) == (None, None, "")
    assert issue.message == "cannot read manifest: No such file or directory"
    assert str(issue) == f"{path}: cannot read manifest: No such file or directory"


def test_file_over_one_mebibyte_is_refused_before_parsing(tmp_path: Path) -> None:
    """A file over 1 MiB is refused by size alone, even though it is otherwise valid YAML."""
    path = tmp_path / "big.yml"
    path.write_bytes(b"version: 1\n" + b"#" * (1024 * 1024))
    (issue,) = issues_of(path)
    size = path.stat().st_size
    assert issue.message == f"manifest is {size} bytes; the limit is 1 MiB"
    assert issue.line is None


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param(b"version: 1\njobs: \x07\n", 2, "U+0007", id="control-character"),
        pytest.param(b"version: 1\njobs: \xff\n", 2, "not UTF-8", id="not-utf8"),
        pytest.param(b"a: " + b"[" * 3000 + b"]" * 3000, None, "nested too deeply", id="deep"),
        pytest.param(b"version: 1\n---\nversion: 1\n", 2, "single document", id="two-docs"),
        pytest.param(b"version: 1\njobs: *nowhere\n", 2, "undefined alias", id="bad-alias"),
    ],
)
def test_other_unreadable_yaml_is_one_issue(
    tmp_path: Path, text: bytes, line: int | None, message: str
) -> None:
    """Control characters, bad encodings, absurd nesting and stray documents are issues too."""
    path = tmp_path / "m.yml"
    path.write_bytes(text)
    (issue,) = issues_of(path)
    assert issue.line == line
    assert message in issue.message


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90),
        ("30m", 1_800),
        ("72h", 259_200),
        ("7d", 604_800),
        ("1w", 604_800),
        ("1d12h", 129_600),
        ("1h30m15s", 5_415),
        ("3600", 3_600),
        (" 45m ", 2_700),
        (3600, 3_600),
        ("P7D", 604_800),
        ("PT12H", 43_200),
        ("P1DT2H30M", 95_400),
        ("PT90S", 90),
        ("P1W", 604_800),
        ("pt5m", 300),
    ],
)
def test_parse_duration_accepts_supported_forms(value: str | int, seconds: int) -> None:
    """Compact units, plain seconds and ISO 8601 durations all convert to seconds."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9d", "9d is longer than the 7-day limit for presigned URLs"),
        (604_801, "longer than the 7-day limit"),
        ("0", "must be positive"),
        (0, "must be positive"),
        (-5, "must be positive"),
        ("-5m", "must be positive"),
        ("PT0S", "must be positive"),
        ("tomorrow", "'tomorrow' is not a duration; use e.g. 30m, 72h, 7d or P7D"),
        ("", "is not a duration"),
        ("5 m", "is not a duration"),
        ("1h1d", "is not a duration"),
        ("P", "is not a duration"),
        ("PT", "is not a duration"),
        ("P1DT", "is not a duration"),
        ("P1M", "months or years"),
        ("P1Y2D", "months or years"),
        ("P1MT2H", "months or years"),
        ("Python", "is not a duration"),
        ("PT1.5S", "is not a duration"),
        ("1" * 5000, "is not a duration"),
        ("٣s", "is not a duration"),
        (True, "true is not a duration"),
    ],
)
def test_parse_duration_rejects_with_a_human_message(value: str | int, message: str) -> None:
    """Out-of-range and unreadable durations raise ValueError explaining what to write."""
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(value)


@st.composite
def duration_parts(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """Days, hours, minutes, seconds (each unbounded by the others) totalling at most 7 days."""
    days = draw(st.integers(0, 7))
    left = MAX_EXPIRY_SECONDS - days * 86_400
    hours = draw(st.integers(0, left // 3_600))
    left -= hours * 3_600
    minutes = draw(st.integers(0, left // 60))
    left -= minutes * 60
    seconds = draw(st.integers(0, left))
    return days, hours, minutes, seconds


@given(duration_parts())
def test_compact_and_iso_durations_agree(parts: tuple[int, int, int, int]) -> None:
    """For any d, h, m, s totalling 1..604800 s, `XdYhZmWs` and ISO `PXDTYHZMWS` both parse."""
    d, h, m, s = parts
    total = d * 86_400 + h * 3_600 + m * 60 + s
    assume(total > 0)
    compact = "".join(f"{n}{unit}" for n, unit in zip(parts, "dhms", strict=True) if n)
    assert parse_duration(compact) == total
    assert parse_duration(f"P{d}DT{h}H{m}M{s}S") == total
    assert parse_duration(str(total)) == parse_duration(total) == total
