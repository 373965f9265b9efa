"""Tests for sharebatch.manifest: loading, inheritance, templates, sizes, schema, rejections.

Bad manifests live as real files in tests/bad_manifests so each can be opened and read next
to the error it must produce; the table below states that error for each file. Every load
passes a fixed ``now`` and ``as_of``, so no result depends on today's date.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, date, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from sharebatch.errors import EXIT_USAGE, ManifestError, ManifestIssue, UsageError
from sharebatch.manifest.load import (
    Grant,
    Job,
    Manifest,
    Recipient,
    load_manifest,
    manifest_json_schema,
    parse_size,
)
from sharebatch.models import Expiry, Filters
from sharebatch.visible import HIDDEN
from tests.support.bad_manifests import (
    BAD,
    BAD_CASES,
    NOW,
    corpus_keys,
)
from tests.support.paths import ROOT

EXAMPLES = ROOT / "manifests"
DEMO = ROOT / "sharebatch" / "data" / "demo.yml"  # `sharebatch demo`'s
EXAMPLE_FILES = sorted([*EXAMPLES.glob("*.yml"), DEMO])
AS_OF = date(2026, 11, 28)

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


def load(path: Path | str, *, as_of: date = AS_OF, now: datetime = NOW) -> Manifest:
    return load_manifest(path, as_of=as_of, now=now)


def grants(manifest: Manifest) -> dict[tuple[str, str], Grant]:
    return {(g.job, g.recipient.id): g for job in manifest.jobs for g in job.grants}


def issues_of(path: Path | str, *, now: datetime = NOW) -> list[ManifestIssue]:
    with pytest.raises(ManifestError) as info:
        load(path, now=now)
    return info.value.issues


def manifest_text(settings: str = "", job: str = "", recipients: str = "      - id: globex") -> str:
    """A small valid manifest with extra lines for defaults, the job and its recipients."""
    return (
        "version: 1\ndefaults:\n  bucket: acme-reports\n  expires_in: 7d\n"
        + settings
        + "jobs:\n  - name: q3\n    prefixes: [reports/]\n"
        + job
        + "    recipients:\n"
        + recipients
        + "\n"
    )


# --- good manifests -------------------------------------------------------------------------


def test_good_manifest_loads_with_all_fields(tmp_path: Path) -> None:
    """A valid manifest loads into frozen models: one grant per recipient, in written order."""
    manifest = load(write(tmp_path, GOOD))
    assert isinstance(manifest, Manifest)
    assert (manifest.version, manifest.as_of, manifest.output_dir) == (1, AS_OF, None)
    assert [job.name for job in manifest.jobs] == ["q3-partners", "archive"]
    first, second = manifest.jobs[0].grants
    assert first.job == "q3-partners"
    assert first.recipient == Recipient(
        id="globex",
        name="Globex Corp",
        email="ops@globex.example",
        addresses=("ops@globex.example",),
    )
    assert second.recipient == Recipient(id="initech")
    assert manifest.jobs[1].grants[0].recipient.id == "123"


def test_defaults_are_inherited_and_job_values_win(tmp_path: Path) -> None:
    """Grants take unset settings from defaults; a value on the job overrides the default."""
    first = load(write(tmp_path, GOOD)).jobs[0].grants[0]
    second = load(write(tmp_path, GOOD)).jobs[1].grants[0]
    assert (first.bucket, first.region, first.endpoint_url) == ("acme-reports", "eu-west-1", None)
    assert first.addressing_style == "auto"
    assert first.expiry == Expiry(seconds=7 * 86_400)
    assert (second.bucket, second.region) == ("acme-archive", "us-east-1")
    assert second.endpoint_url == "http://127.0.0.1:9000"
    assert second.addressing_style == "path"
    assert second.expiry == Expiry(seconds=72 * 3_600)


def test_unset_settings_take_their_documented_defaults(tmp_path: Path) -> None:
    """No filters, `{basename}`, no content type, both formats, quarter periods by default."""
    grant = load(write(tmp_path, GOOD)).jobs[0].grants[1]
    assert grant.filters == Filters()
    assert (grant.download_name, grant.content_type, grant.formats) == (
        "{basename}",
        None,
        ("csv", "json"),
    )


def test_grant_prefixes_job_first_then_own_without_duplicates(tmp_path: Path) -> None:
    """A grant lists the job's prefixes then the recipient's, each once, in written order."""
    globex, initech = load(write(tmp_path, GOOD)).jobs[0].grants
    assert globex.prefixes == ("reports/2026/Q3/", "reports/2026/summary/", "partners/globex/")
    assert initech.prefixes == ("reports/2026/Q3/", "reports/2026/summary/")


def test_empty_job_prefixes_allowed_when_every_recipient_has_own(tmp_path: Path) -> None:
    """`prefixes: []` on a job is fine when each recipient brings prefixes of its own."""
    grant = load(write(tmp_path, GOOD)).jobs[1].grants[0]
    assert grant.prefixes == ("old/",)


def test_sha256_and_path_identify_the_file(tmp_path: Path) -> None:
    """sha256 is the hex digest of the file's bytes; path is kept as the caller gave it."""
    path = write(tmp_path, GOOD)
    manifest = load(path)
    assert manifest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest.path == str(path)
    assert load(str(path)).path == str(path)


def test_models_are_frozen(tmp_path: Path) -> None:
    """Loaded models cannot be changed after validation."""
    manifest = load(write(tmp_path, GOOD))
    with pytest.raises(ValidationError):
        manifest.jobs[0].name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        manifest.jobs[0].grants[0].bucket = "other"  # type: ignore[misc]


def test_public_models_validate_their_fields() -> None:
    """Building a Grant by hand applies the rules a loaded one passed, on rendered values."""
    fields: dict[str, Any] = {
        "job": "q3",
        "recipient": Recipient(id="globex"),
        "bucket": "acme-reports",
        "expiry": Expiry(seconds=3600),
        "prefixes": ("reports/",),
    }
    grant = Grant(**fields)
    assert Job(name="q3", grants=(grant,)).grants == (grant,)
    for change in (
        {"job": "../q3"},
        {"prefixes": ("reports/*",)},
        {"expiry": Expiry(seconds=3600, at=NOW)},
        {"expiry": Expiry(seconds=700_000)},
        {"download_name": "{period.label}-{basename}"},
        {"download_name": "{key}"},
        {"formats": ()},
        {"content_type": "pdf"},
    ):
        with pytest.raises(ValidationError):
            Grant(**{**fields, **change})


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
    jobs = load(write(tmp_path, text)).jobs
    assert [g.recipient for g in jobs[0].grants] == [g.recipient for g in jobs[1].grants]


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
    job = load(write(tmp_path, text)).jobs[0]
    grant = job.grants[0]
    assert (job.name, grant.recipient.id, grant.expiry.seconds) == ("on", "no", 600)


# --- resolution: inheritance, expiry, periods, templates ------------------------------------

THREE_LEVELS = """\
version: 1
defaults:
  bucket: acme-reports
  region: eu-west-1
  expires_in: 7d
  content_type: application/pdf
  formats: [json]
  filters:
    include: ["**/*.pdf"]
    exclude: ["**/draft-*"]
    max_size: 1GB
    max_links: 100
jobs:
  - name: q3
    region: us-east-1
    prefixes: [reports/]
    filters:
      exclude: ["**/*.tmp"]
      min_size: 1KiB
    recipients:
      - id: globex
        content_type: text/csv
        formats: [json, csv]
        filters:
          include: ["**/*.csv"]
          max_links: 5
      - id: initech
"""


def test_settings_inherit_field_by_field_through_three_levels(tmp_path: Path) -> None:
    """Each setting comes from the recipient, else the job, else defaults, independently."""
    found = grants(load(write(tmp_path, THREE_LEVELS)))
    globex, initech = found["q3", "globex"], found["q3", "initech"]
    assert (globex.bucket, globex.region, globex.content_type) == (
        "acme-reports",
        "us-east-1",
        "text/csv",
    )
    assert globex.formats == ("csv", "json")  # canonical order, whatever was written
    assert (initech.region, initech.content_type, initech.formats) == (
        "us-east-1",
        "application/pdf",
        ("json",),
    )


def test_filters_inherit_field_by_field(tmp_path: Path) -> None:
    """A recipient's include replaces the job's; every other filter field still inherits."""
    found = grants(load(write(tmp_path, THREE_LEVELS)))
    assert found["q3", "globex"].filters == Filters(
        include=("**/*.csv",),
        exclude=("**/*.tmp",),
        min_size=1024,
        max_size=1_000_000_000,
        max_links=5,
    )
    assert found["q3", "initech"].filters == Filters(
        include=("**/*.pdf",), exclude=("**/*.tmp",), min_size=1024, max_size=10**9, max_links=100
    )


EXPIRY_LEVELS = """\
version: 1
defaults:
  bucket: acme-reports
  expires_at: 2026-12-01T17:00:00+01:00
jobs:
  - name: a
    expires_in: 72h
    prefixes: [a/]
    recipients:
      - id: fixed
        expires_at: 2026-12-02T00:00:00Z
      - id: inherits-job
  - name: b
    prefixes: [b/]
    recipients:
      - id: inherits-defaults
      - id: own-duration
        expires_in: 30m
"""


def test_expires_in_and_expires_at_replace_each_other(tmp_path: Path) -> None:
    """The most specific level giving expires_in or expires_at wins; the other is dropped."""
    found = grants(load(write(tmp_path, EXPIRY_LEVELS)))
    assert found["a", "fixed"].expiry == Expiry(at=datetime(2026, 12, 2, tzinfo=UTC))
    assert found["a", "inherits-job"].expiry == Expiry(seconds=72 * 3600)
    inherited = found["b", "inherits-defaults"].expiry
    assert inherited == Expiry(at=datetime(2026, 12, 1, 16, tzinfo=UTC))
    assert inherited.at is not None and inherited.at.tzinfo is UTC
    assert found["b", "own-duration"].expiry == Expiry(seconds=1800)


@pytest.mark.parametrize(
    ("now", "message"),
    [
        (datetime(2026, 12, 3, tzinfo=UTC), "2026-12-01T16:00:00Z is in the past"),
        (datetime(2026, 11, 20, tzinfo=UTC), "2026-12-01T16:00:00Z is more than 7 days after"),
    ],
)
def test_expires_at_is_checked_against_now(tmp_path: Path, now: datetime, message: str) -> None:
    """expires_at must lie in (now, now + 7 days]: the same file is valid only near its date."""
    path = write(tmp_path, EXPIRY_LEVELS)
    by_field = {issue.field: issue.message for issue in issues_of(path, now=now)}
    assert message in by_field["defaults.expires_at"]


def test_recipient_id_in_a_job_prefix_gives_each_recipient_its_own(tmp_path: Path) -> None:
    """`{recipient.id}` in a job prefix renders once per recipient, period variables too."""
    text = manifest_text(
        job='    prefixes: ["reports/{period.year}/Q{period.quarter}/",'
        ' "partners/{recipient.id}/"]\n',
        recipients="      - id: globex\n      - id: initech",
    ).replace("    prefixes: [reports/]\n", "", 1)
    found = grants(load(write(tmp_path, text)))
    assert found["q3", "globex"].prefixes == ("reports/2026/Q3/", "partners/globex/")
    assert found["q3", "initech"].prefixes == ("reports/2026/Q3/", "partners/initech/")


def test_duplicates_after_rendering_are_removed(tmp_path: Path) -> None:
    """A recipient prefix equal to a rendered job prefix is listed once, at its first place."""
    text = manifest_text(
        job='    prefixes: ["partners/{recipient.id}/", "shared/"]\n',
        recipients='      - id: globex\n        prefixes: ["shared/", partners/globex/, own/]',
    ).replace("    prefixes: [reports/]\n", "", 1)
    grant = load(write(tmp_path, text)).jobs[0].grants[0]
    assert grant.prefixes == ("partners/globex/", "shared/", "own/")


def test_the_same_file_serves_every_quarter(tmp_path: Path) -> None:
    """Only as_of changes between runs; prefixes, filters and output follow the period."""
    text = """\
version: 1
output: {dir: "bundles/{period.label}"}
defaults:
  bucket: acme-reports
  expires_in: 7d
  filters: {modified_after: "{period.start}", modified_before: "{period.end}T23:59:59Z"}
jobs:
  - name: q
    prefixes: ["reports/{period.year}/Q{period.quarter}/"]
    recipients: [{id: globex}]
"""
    path = write(tmp_path, text)
    for as_of, label, start, end in [
        (date(2026, 10, 1), "2026-Q3", datetime(2026, 7, 1, tzinfo=UTC), "2026-09-30"),
        (date(2027, 2, 14), "2026-Q4", datetime(2026, 10, 1, tzinfo=UTC), "2026-12-31"),
        (date(2027, 4, 1), "2027-Q1", datetime(2027, 1, 1, tzinfo=UTC), "2027-03-31"),
    ]:
        manifest = load(path, as_of=as_of)
        grant = manifest.jobs[0].grants[0]
        year, quarter = label.split("-")
        assert manifest.output_dir == f"bundles/{label}"
        assert grant.prefixes == (f"reports/{year}/{quarter}/",)
        assert grant.filters.modified_after == start
        assert grant.filters.modified_before == datetime.fromisoformat(f"{end}T23:59:59+00:00")


def test_period_kind_is_a_setting_like_any_other(tmp_path: Path) -> None:
    """A recipient with `period: month` gets last month; the others keep the quarter."""
    text = manifest_text(
        job='    prefixes: ["r/{period.label}/{period.kind}/"]\n',
        recipients="      - id: q\n      - id: m\n        period: month\n"
        "      - id: y\n        period: year",
    ).replace("    prefixes: [reports/]\n", "", 1)
    found = grants(load(write(tmp_path, text)))
    assert [found["q3", r].prefixes[0] for r in "qmy"] == [
        "r/2026-Q3/quarter/",
        "r/2026-10/month/",
        "r/2025/year/",
    ]


def test_download_name_keeps_only_object_variables(tmp_path: Path) -> None:
    """download_name renders everything but {key}/{basename}/{stem}/{ext}; `{{` stays escaped."""
    settings = '  download_name: "{period.label}-{recipient.id}-{{v}}-{stem}{ext}"\n'
    grant = load(write(tmp_path, manifest_text(settings=settings))).jobs[0].grants[0]
    assert grant.download_name == "2026-Q3-globex-{{v}}-{stem}{ext}"


def test_recipient_variables_render_name_and_email(tmp_path: Path) -> None:
    """{recipient.name}, {recipient.email} and {job.name} render where the recipient has them."""
    text = manifest_text(
        settings='  download_name: "{job.name} for {recipient.name}'
        ' ({recipient.email}) {basename}"\n',
        recipients="      - id: globex\n        name: Globex Corp\n"
        "        email: ops@globex.example",
    )
    grant = load(write(tmp_path, text)).jobs[0].grants[0]
    assert grant.download_name == "q3 for Globex Corp (ops@globex.example) {basename}"


def test_a_nameless_recipient_is_reported_for_each_one(tmp_path: Path) -> None:
    """A defaults template using {recipient.name} is an issue there, once per nameless recipient."""
    text = manifest_text(
        settings='  download_name: "{recipient.name}-{basename}"\n',
        recipients="      - id: globex\n      - id: initech\n      - id: named\n        name: N",
    )
    issues = issues_of(write(tmp_path, text))
    assert [(i.line, i.field) for i in issues] == [(5, "defaults.download_name")] * 2
    assert ["'globex'" in issues[0].message, "'initech'" in issues[1].message] == [True, True]


def test_an_inherited_mistake_is_reported_once(tmp_path: Path) -> None:
    """A bad default used by many grants gives one issue, and what depends on it stays quiet."""
    text = manifest_text(
        settings="  period: week\n  filters: {max_size: 1KB}\n",
        job='    filters: {modified_after: "{period.start}", min_size: 2KB}\n',
        recipients="      - id: globex\n      - id: initech\n      - id: hooli",
    ).replace("prefixes: [reports/]", 'prefixes: ["reports/{period.label}/*"]')
    issues = issues_of(write(tmp_path, text))
    assert [i.field for i in issues] == ["defaults.period", "jobs[0].filters.min_size"]


def test_a_bad_value_is_never_replaced_by_an_inherited_one(tmp_path: Path) -> None:
    """A recipient's invalid bucket is one issue: the default bucket is not silently used."""
    text = manifest_text(recipients="      - id: globex\n        bucket: Not_A_Bucket")
    (issue,) = issues_of(write(tmp_path, text))
    assert issue.field == "jobs[0].recipients[0].bucket"


def test_missing_setting_on_some_recipients_is_reported_on_each(tmp_path: Path) -> None:
    """When only some recipients set a required setting, the others are each reported."""
    text = """\
version: 1
jobs:
  - name: q3
    prefixes: [reports/]
    expires_in: 1d
    recipients:
      - id: globex
        bucket: globex-reports
      - id: initech
"""
    (issue,) = issues_of(write(tmp_path, text))
    assert (issue.line, issue.field) == (9, "jobs[0].recipients[1].bucket")
    assert issue.message.startswith("required: set it on this recipient, on its job or in defaults")


def test_prefixes_are_checked_even_without_valid_recipients(tmp_path: Path) -> None:
    """A job whose recipients list is empty still has its literal prefixes checked."""
    text = manifest_text().replace("prefixes: [reports/]", 'prefixes: ["/r/"]')
    text = text.replace("    recipients:\n      - id: globex\n", "    recipients: []\n")
    assert [i.field for i in issues_of(write(tmp_path, text))] == [
        "jobs[0].prefixes[0]",
        "jobs[0].recipients",
    ]


def test_as_of_defaults_to_the_utc_date_of_now(tmp_path: Path) -> None:
    """Without as_of the run date is now's date in UTC, not in now's own zone."""
    text = manifest_text().replace("[reports/]", '[reports/, "r/{as_of.date}/"]')
    path = write(tmp_path, text)
    late = datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    manifest = load_manifest(path, now=late)
    assert manifest.as_of == date(2027, 1, 1)
    assert manifest.jobs[0].grants[0].prefixes == ("reports/", "r/2027-01-01/")
    with pytest.raises(ValueError, match="timezone-aware"):
        load_manifest(path, now=datetime(2026, 11, 28))


def test_output_dir_is_optional_and_rendered(tmp_path: Path) -> None:
    """output.dir renders period and as_of variables with the defaults' period kind."""
    assert load(write(tmp_path, GOOD)).output_dir is None
    text = 'output:\n  dir: "out/{period.label}/{as_of.date}"\n' + manifest_text(
        settings="  period: month\n"
    )
    manifest = load(write(tmp_path, text))
    assert manifest.output_dir == "out/2026-10/2026-11-28"


@pytest.mark.parametrize("kind", ["quarter", "month", "year"])
def test_run_dates_from_year_two_to_the_end_of_the_calendar_resolve(
    tmp_path: Path, kind: str
) -> None:
    """0002-01-01 (the year before it is year 1) and 9999-12-31 resolve for every period kind."""
    text = manifest_text(settings=f"  period: {kind}\n").replace(
        "[reports/]", '["r/{period.label}/{period.next_start}/"]'
    )
    path = write(tmp_path, text)
    first = load(path, as_of=date(2, 1, 1)).jobs[0].grants[0].prefixes
    last = load(path, as_of=date(9999, 12, 31)).jobs[0].grants[0].prefixes
    assert first == (
        {"quarter": "r/0001-Q4/", "month": "r/0001-12/", "year": "r/0001/"}[kind] + "0002-01-01/",
    )
    expected = {"quarter": "r/9999-Q3/9999-10-01/", "month": "r/9999-11/9999-12-01/"}
    assert last == (expected.get(kind, "r/9998/9999-01-01/"),)


@pytest.mark.parametrize("as_of", [date(1, 1, 1), date(1, 12, 31)])
def test_run_date_without_a_previous_year_is_a_usage_error(tmp_path: Path, as_of: date) -> None:
    """In year 1 the last complete year would be year 0: a UsageError naming --as-of."""
    with pytest.raises(UsageError) as info:
        load(write(tmp_path, GOOD), as_of=as_of)
    assert not isinstance(info.value, ManifestError)
    assert str(info.value) == (
        f"--as-of {as_of.isoformat()}: the period before it would start before year 1;"
        " use 0002-01-01 or later"
    )


# json.dumps writes each as an escape, which YAML reads in a double-quoted string; the YAML
# reader refuses most of them written raw, but not escaped.
HIDDEN_SAMPLES = {
    "ESC": "\x1b",
    "BEL": "\x07",
    "CR": "\r",
    "LF": "\n",
    "TAB": "\t",
    "NEL": "\x85",
    "RLO": "\u202e",
    "ZWSP": "\u200b",
    "LSEP": "\u2028",
    "BOM": "\ufeff",
}
FREE_TEXT_FIELDS = {
    "name": ("      - id: globex\n        name: {}", "jobs[0].recipients[0].name", "Glo{}bex"),
    "email": (
        "      - id: globex\n        email: {}",
        "jobs[0].recipients[0].email",
        "o{}@g.example",
    ),
    "prefix": (
        "      - id: globex\n        prefixes: [{}]",
        "jobs[0].recipients[0].prefixes[0]",
        "r{}/",
    ),
    "download_name": ("  download_name: {}\n", "defaults.download_name", "{{stem}}{}{{ext}}"),
    "content_type": ("  content_type: {}\n", "defaults.content_type", 'text/plain; x="{}"'),
    "include": ("  filters:\n    include: [{}]\n", "defaults.filters.include[0]", "**/{}*.pdf"),
    "output.dir": ("output:\n  dir: {}\n", "output.dir", "out/{}x"),
}


def test_a_key_holding_hidden_characters_is_named_escaped(tmp_path: Path) -> None:
    """An unknown field whose name holds ESC and BEL is reported with them written as escapes,
    so the error line cannot drive the terminal it is printed on."""
    line = '      - id: globex\n        "na\\e]0;x\\ame": x'
    [issue] = issues_of(write(tmp_path, manifest_text(recipients=line)))
    assert issue.field == "jobs[0].recipients[0].na\\x1b]0;x\\x07me"
    assert "unknown field" in issue.message
    assert not HIDDEN.search(str(issue))


@pytest.mark.parametrize("field", FREE_TEXT_FIELDS)
@pytest.mark.parametrize("char", HIDDEN_SAMPLES.values(), ids=HIDDEN_SAMPLES.keys())
def test_free_text_refuses_every_hidden_character(tmp_path: Path, field: str, char: str) -> None:
    """Controls, format characters and separators (visible.HIDDEN) are refused in every text."""
    where, path, value = FREE_TEXT_FIELDS[field]
    line = where.format(json.dumps(value.format(char)))
    if field in ("name", "email", "prefix"):
        text = manifest_text(recipients=line)
    elif field == "output.dir":
        text = manifest_text() + line
    else:
        text = manifest_text(settings=line)
    [issue] = issues_of(write(tmp_path, text))
    assert issue.field == path
    assert f"character U+{ord(char):04X}" in issue.message


# --- bad manifests --------------------------------------------------------------------------


# (file, line, column, field, substring of the message); line/column None: whole-file problem.


@pytest.mark.parametrize(("name", "line", "column", "field", "text"), BAD_CASES)
def test_bad_manifest_is_rejected_with_one_located_issue(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    line: int | None,
    column: int | None,
    field: str,
    text: str,
) -> None:
    """Each bad manifest raises ManifestError with exactly the expected file:line:col issue."""
    corpus_keys(monkeypatch)
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
        load(BAD / "many_errors.yml")
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
        load(BAD / "version_2.yml")
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


# --- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (1024, 1024),
        ("1024", 1024),
        ("0", 0),
        ("10B", 10),
        ("1KB", 1000),
        ("1kb", 1000),
        ("1 KB", 1000),
        ("1KiB", 1024),
        ("1kib", 1024),
        ("10MB", 10_000_000),
        ("10MiB", 10 * 2**20),
        ("1.5GiB", 1_610_612_736),
        ("1.5GB", 1_500_000_000),
        ("2TB", 2 * 10**12),
        ("1TiB", 2**40),
        ("0.5KiB", 512),
        ("1.0001KB", 1000),  # rounded down to whole bytes
        ("1.5", 1),
        (" 3MB ", 3_000_000),
    ],
)
def test_parse_size_accepts_supported_forms(value: str | int, size: int) -> None:
    """Bytes, decimal units (10^3) and binary units (2^10), any case, optional space."""
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ten", "'ten' is not a size; use e.g. 10MB, 1.5GiB or a number of bytes"),
        ("-1MB", "'-1MB' is negative; a size is 0 or more bytes"),
        (-1, "-1 is negative"),
        ("5XB", "'5XB' has an unknown unit 'XB'; use B, KB, MB, GB, TB"),
        ("5 M", "unknown unit 'M'"),
        ("", "is not a size"),
        ("MB", "is not a size"),
        ("1.MB", "is not a size"),
        ("1  MB", "is not a size"),
        ("1e6", "is not a size"),
        ("1" * 5000, "is not a size"),
        (True, "true is not a size"),
    ],
)
def test_parse_size_rejects_with_a_human_message(value: str | int, message: str) -> None:
    """Unreadable, negative and unknown-unit sizes raise ValueError saying what to write."""
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_size(value)


SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}


@given(
    st.integers(0, 10**9),
    st.sampled_from(sorted(SIZE_UNITS)),
    st.sampled_from([str, str.lower, str.upper]),
    st.sampled_from(["", " "]),
)
def test_size_with_any_unit_round_trips(number: int, unit: str, case: Any, space: str) -> None:
    """For every unit, `<n><unit>` is n times the unit in bytes, whatever the case and spacing."""
    assert parse_size(f"{number}{space}{case(unit)}") == number * SIZE_UNITS[unit]


@given(st.decimals(0, 10**6, places=3), st.sampled_from(sorted(SIZE_UNITS)))
def test_decimal_sizes_round_down(number: Any, unit: str) -> None:
    """A decimal size is the exact product rounded down to whole bytes."""
    text = f"{number:f}"
    assert parse_size(text + unit) == math.floor(Fraction(text) * SIZE_UNITS[unit])


# --- schema ---------------------------------------------------------------------------------


def _objects(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [schema, *schema["$defs"].values()]


def test_json_schema_describes_the_yaml_as_written() -> None:
    """The schema is draft 2020-12, titled, closed to unknown keys and describes every field."""
    schema = manifest_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "sharebatch manifest"
    assert schema["required"] == ["version", "jobs"]
    assert schema["properties"]["version"]["const"] == 1
    assert {"Settings", "Filters", "Job", "Recipient", "Output"} <= set(schema["$defs"])
    for model in _objects(schema):
        assert model["additionalProperties"] is False
        for name, prop in model["properties"].items():
            assert prop.get("description"), f"{model['title']}.{name} has no description"


def _check_keys(value: object, schema: dict[str, Any], root: dict[str, Any], where: str) -> None:
    """Every mapping key in an example is a property of the schema at that place."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            if option.get("type") != "null" and "const" not in option:  # upload: false
                _check_keys(value, option, root, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            assert key in schema["properties"], f"{where}.{key} is not in the schema"
            _check_keys(item, schema["properties"][key], root, f"{where}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _check_keys(item, schema["items"], root, where)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_schema_knows_every_key_of_the_examples(path: Path) -> None:
    """The example manifests use only keys the schema declares, at the place they declare."""
    import yaml

    schema = manifest_json_schema()
    _check_keys(yaml.safe_load(path.read_text(encoding="utf-8")), schema, schema, "")


# --- the example manifests ------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_manifest_is_valid(path: Path) -> None:
    """Every file in manifests/, and the demo's, loads for a fixed run date, with a grant."""
    assert any(job.grants for job in load(path).jobs)


def test_example_q3_partners() -> None:
    """Per-recipient quarterly prefixes, an inherited filter set and one shorter expiry."""
    manifest = load(EXAMPLES / "q3-partners.yml", as_of=date(2026, 10, 1))
    assert manifest.output_dir == "bundles/2026-Q3"
    found = grants(manifest)
    umbrella = found["partners-quarterly", "umbrella"]
    assert umbrella.prefixes == (
        "reports/2026/Q3/shared/",
        "partners/umbrella/2026-Q3/",
        "contracts/umbrella/amendments/2026/",
    )
    assert umbrella.formats == ("csv",)
    assert umbrella.download_name == "2026-Q3-{basename}"
    assert found["partners-quarterly", "globex"].expiry == Expiry(seconds=7 * 86_400)
    assert found["partners-quarterly", "initech"].expiry == Expiry(seconds=72 * 3_600)
    assert umbrella.filters.max_links == 2000
    assert umbrella.filters.exclude == ("**/draft-*", "**/~$*")


def test_example_auditor_oneoff() -> None:
    """One folder, one auditor, links for 48 hours, internal notes excluded."""
    (grant,) = load(EXAMPLES / "auditor-oneoff.yml").jobs[0].grants
    assert (grant.recipient.id, grant.bucket, grant.region) == (
        "kpmg-audit",
        "acme-finance-archive",
        "eu-central-1",
    )
    assert grant.prefixes == ("audit/fy2025/",)
    assert grant.expiry == Expiry(seconds=48 * 3_600)
    assert grant.filters == Filters(exclude=("**/internal-notes/**",), max_links=500)


def test_example_mixed_filters() -> None:
    """Monthly periods; include replaced per recipient while dates, sizes and excludes inherit."""
    manifest = load(EXAMPLES / "mixed-filters.yml")
    assert manifest.output_dir == "bundles/exports-2026-10"
    found = grants(manifest)
    northwind = found["monthly-exports", "northwind"]
    contoso = found["monthly-exports", "contoso"]
    fabrikam = found["monthly-exports", "fabrikam"]
    assert northwind.prefixes == ("exports/2026/10/",)
    assert northwind.filters == Filters(
        include=("**/*.csv", "**/*.parquet"),
        exclude=("**/tmp/**", "**/*.partial"),
        modified_after=datetime(2026, 10, 1, tzinfo=UTC),
        modified_before=datetime(2026, 11, 28, tzinfo=UTC),
        min_size=1000,
        max_size=2 * 2**30,
        max_links=10_000,
    )
    assert northwind.download_name == "2026-10-{stem}{ext}"
    assert contoso.filters.include == ("**/*.parquet",)
    assert (contoso.filters.min_size, contoso.filters.max_size) == (1000, 5 * 2**30)
    assert (contoso.content_type, contoso.formats) == ("application/octet-stream", ("json",))
    assert fabrikam.prefixes == ("exports/2026/10/", "summaries/2026/10/")
    assert (fabrikam.filters.min_size, fabrikam.filters.max_links) == (0, 50)
    assert fabrikam.filters.exclude == northwind.filters.exclude
    assert fabrikam.download_name == "fabrikam-2026-10-{basename}"
    assert fabrikam.expiry == Expiry(seconds=7 * 86_400)


def test_example_demo() -> None:
    """The demo manifest: two jobs, literal prefixes, job expiry overriding the default."""
    found = grants(load(DEMO))
    assert found["q3-partners", "globex"].prefixes == ("reports/2026/Q3/", "partners/globex/")
    assert found["q3-partners", "globex"].expiry == Expiry(seconds=72 * 3_600)
    assert found["q3-auditors", "kpmg-audit"].expiry == Expiry(seconds=7 * 86_400)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_an_example_with_any_line_removed_fails_cleanly(tmp_path: Path, path: Path) -> None:
    """Removing any one line of an example gives a manifest or located issues, never a crash."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for i in range(len(lines)):
        mutated = write(tmp_path, "".join(lines[:i] + lines[i + 1 :]))
        try:
            load(mutated)
        except ManifestError as exc:
            problems = exc.issues
        else:
            continue
        assert problems, f"line {i + 1} removed: ManifestError without issues"


# --- link ids (issue 15) --------------------------------------------------------------------

LINK_IDS = """\
version: 1
defaults:
  bucket: acme-reports
  expires_in: 7d
  link_ids: {defaults}
jobs:
  - name: plain
    prefixes: [a/]
    recipients: [{{id: one}}, {{id: two, link_ids: true}}]
  - name: refusing-store
    link_ids: {job}
    prefixes: [b/]
    recipients: [{{id: three}}]
"""


def test_link_ids_default_to_on_and_inherit_like_every_setting(tmp_path: Path) -> None:
    """Without the setting every grant signs ids; defaults -> job -> recipient, most specific
    wins; the schema describes it as a boolean."""
    found = grants(load(write(tmp_path, GOOD)))
    assert all(g.link_ids for g in found.values())
    found = grants(load(write(tmp_path, LINK_IDS.format(defaults="false", job="true"))))
    assert {k[1]: g.link_ids for k, g in found.items()} == {
        "one": False,
        "two": True,
        "three": True,
    }
    found = grants(load(write(tmp_path, LINK_IDS.format(defaults="true", job="false"))))
    assert {k[1]: g.link_ids for k, g in found.items()} == {
        "one": True,
        "two": True,
        "three": False,
    }
    prop = manifest_json_schema()["$defs"]["Settings"]["properties"]["link_ids"]
    assert {"type": "boolean"} in prop["anyOf"]
    assert "x-sharebatch-id" in prop["description"]


@pytest.mark.parametrize(
    ("defaults", "job", "where", "message"),
    [
        ("'no'", "true", "defaults.link_ids", "expected true or false, got the text 'no'"),
        ("true", "1", "jobs[1].link_ids", "expected true or false, got the number 1"),
        ("true", "[false]", "jobs[1].link_ids", "expected true or false, got a list"),
    ],
)
def test_link_ids_that_are_not_booleans_are_located_errors(
    tmp_path: Path, defaults: str, job: str, where: str, message: str
) -> None:
    """A non-boolean link_ids is one issue naming line, column and field; exit code 2."""
    path = write(tmp_path, LINK_IDS.format(defaults=defaults, job=job))
    with pytest.raises(ManifestError) as info:
        load(path)
    assert info.value.exit_code == EXIT_USAGE
    [issue] = info.value.issues
    assert (issue.field, issue.message) == (where, message)
    line = 5 if where.startswith("defaults") else 11
    assert issue.line == line
