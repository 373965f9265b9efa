"""The manifest's notify: setting, resolved into Grant.notify (bad files: tests/bad_manifests)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.errors import ManifestError, ManifestIssue
from sharebatch.manifest.load import Grant, Manifest, load_manifest, manifest_json_schema
from sharebatch.manifest.notify import html_template
from sharebatch.models import NotifySettings, SmtpServer, Webhook
from tests.support.bad_manifests import BAD

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
AS_OF = date(2026, 11, 28)
SENDER = "Acme Reports <reports@acme.example>"


def load(tmp_path: Path, text: str) -> Manifest:
    path = tmp_path / "m.yml"
    path.write_text(text, encoding="utf-8")
    return load_manifest(path, as_of=AS_OF, now=NOW)


def issues(tmp_path: Path, text: str) -> list[ManifestIssue]:
    with pytest.raises(ManifestError) as info:
        load(tmp_path, text)
    return info.value.issues


def grants(manifest: Manifest) -> dict[tuple[str, str], Grant]:
    return {(g.job, g.recipient.id): g for j in manifest.jobs for g in j.grants}


BASE = f"""\
version: 1
defaults:
  bucket: acme-reports
  expires_in: 7d
  notify:
    smtp: {{host: smtp.acme.example, username: reports, timeout: 2m}}
    from: "{SENDER}"
    subject: "{{period.label}} reports for {{recipient.id}}"
"""


def one(tmp_path: Path, notify: str, recipient: str = "{id: globex}") -> Grant:
    """The one grant of a manifest whose defaults say ``notify``."""
    text = (
        "version: 1\ndefaults:\n  bucket: acme-reports\n  expires_in: 7d\n"
        f"  notify: {notify}\n"
        f"jobs:\n  - {{name: q3, prefixes: [r/], recipients: [{recipient}]}}\n"
    )
    [grant] = grants(load(tmp_path, text)).values()
    return grant


def test_notify_fields_inherit_one_by_one_smtp_fields_too(tmp_path: Path) -> None:
    """Each field (each smtp and webhook field too) comes from the most specific level."""
    manifest = load(
        tmp_path,
        BASE
        + """\
jobs:
  - name: q3
    prefixes: [reports/]
    notify:
      smtp: {port: 2525, security: tls}
      reply_to: ops@acme.example
      webhook: {url: "https://hooks.acme.example/run"}
    recipients:
      - id: globex
        name: Globex Corp
        email: finance@globex.example
        notify:
          smtp: {username: globex-relay, password_env: GLOBEX_SMTP_PASSWORD}
          delivery: links
          per_address: true
          webhook: {format: slack}
      - id: initech
        email: ops@initech.example
""",
    )
    found = grants(manifest)
    assert found[("q3", "globex")].notify == NotifySettings(
        smtp=SmtpServer(
            host="smtp.acme.example",
            port=2525,
            security="tls",
            username="globex-relay",
            password_env="GLOBEX_SMTP_PASSWORD",
            timeout=120.0,
        ),
        sender=SENDER,
        subject="2026-Q3 reports for globex",
        reply_to="ops@acme.example",
        delivery="links",
        per_address=True,
        webhook=Webhook("https://hooks.acme.example/run", "slack"),
    )
    assert found[("q3", "initech")].notify == NotifySettings(
        smtp=SmtpServer("smtp.acme.example", 2525, "tls", "reports", timeout=120.0),
        sender=SENDER,
        subject="2026-Q3 reports for initech",
        reply_to="ops@acme.example",
        webhook=Webhook("https://hooks.acme.example/run", "json"),
    )
    assert not any(g.notify_off for g in found.values())


def test_notify_false_leaves_grants_out_on_purpose(tmp_path: Path) -> None:
    """notify: false on a job or recipient: notify None and notify_off True; below a false, a
    level may start again with every required field."""
    manifest = load(
        tmp_path,
        BASE
        + """\
jobs:
  - name: q3
    prefixes: [reports/]
    recipients:
      - {id: globex, email: finance@globex.example}
      - {id: hooli, email: ops@hooli.example, notify: false}
  - name: archive
    prefixes: [archive/]
    notify: false
    recipients:
      - {id: globex, email: finance@globex.example}
      - id: wayne
        email: bruce@wayne.example
        notify: {smtp: {host: 127.0.0.1, security: none}, from: archive@acme.example}
""",
    )
    found = grants(manifest)
    assert {k: (g.notify is None, g.notify_off) for k, g in found.items()} == {
        ("q3", "globex"): (False, False),
        ("q3", "hooli"): (True, True),
        ("archive", "globex"): (True, True),
        ("archive", "wayne"): (False, False),
    }
    wayne = found[("archive", "wayne")].notify
    assert wayne is not None
    # Nothing below the false comes from defaults: port 25 for none, the default subject.
    assert wayne.smtp == SmtpServer("127.0.0.1", 25, "none")
    assert wayne.subject == "Your files for 2026-Q3 (archive)"


def test_without_notify_anywhere_no_grant_is_notified_nor_left_out(tmp_path: Path) -> None:
    """The setting is optional: without it every grant has notify None and notify_off False."""
    text = "version: 1\ndefaults: {bucket: b-1, expires_in: 7d}\n"
    manifest = load(
        tmp_path, text + "jobs:\n  - {name: q3, prefixes: [r/], recipients: [{id: a}]}\n"
    )
    [grant] = grants(manifest).values()
    assert (grant.notify, grant.notify_off) == (None, False)


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_defaults_follow_the_security(tmp_path: Path, security: str, port: int) -> None:
    """The port defaults by security; the other fields take their documented defaults."""
    grant = one(
        tmp_path, f"{{smtp: {{host: localhost, security: {security}}}, from: r@acme.example}}"
    )
    assert grant.notify == NotifySettings(
        smtp=SmtpServer("localhost", port, security),  # type: ignore[arg-type]
        sender="r@acme.example",
        subject="Your files for 2026-Q3 (q3)",
        reply_to=None,
        delivery="page",
        pages_prefix="_sharebatch/pages/",
        template=None,
        per_address=False,
        require_approval=False,
        webhook=None,
    )
    assert grant.notify.smtp.password_env == "SHAREBATCH_SMTP_PASSWORD"
    assert grant.notify.smtp.timeout == 30.0


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.8.7", "::1", "localhost", "LOCALHOST"])
def test_plain_smtp_is_allowed_towards_a_loopback_host(tmp_path: Path, host: str) -> None:
    """security: none is fine for this machine (a local relay, the test server)."""
    grant = one(tmp_path, f'{{smtp: {{host: "{host}", security: none}}, from: r@acme.example}}')
    assert grant.notify is not None
    assert (grant.notify.smtp.host, grant.notify.smtp.security) == (host, "none")


def test_plain_smtp_is_refused_where_the_host_was_overridden(tmp_path: Path) -> None:
    """A loopback host with none in defaults, a remote host on the job: refused at the host."""
    text = (
        "version: 1\ndefaults:\n  bucket: acme-reports\n  expires_in: 7d\n"
        "  notify: {smtp: {host: 127.0.0.1, security: none}, from: r@acme.example}\n"
        "jobs:\n  - name: q3\n    prefixes: [r/]\n"
        "    notify: {smtp: {host: mail.acme.example}}\n"
        "    recipients: [{id: globex}]\n"
    )
    [issue] = issues(tmp_path, text)
    assert (issue.line, issue.field) == (9, "jobs[0].notify.smtp.host")
    assert "not 'mail.acme.example': use starttls or tls" in issue.message


def test_an_email_list_gives_each_address_and_a_display_form(tmp_path: Path) -> None:
    """email: [a, b] fills addresses; email and {recipient.email} show them joined by ', '."""
    grant = one(
        tmp_path,
        '{smtp: {host: smtp.acme.example}, from: r@acme.example, subject: "to {recipient.email}"}',
        "{id: globex, email: [finance@globex.example, audit@globex.example]}",
    )
    assert grant.recipient.addresses == ("finance@globex.example", "audit@globex.example")
    assert grant.recipient.email == "finance@globex.example, audit@globex.example"
    assert grant.notify is not None
    assert grant.notify.subject == "to finance@globex.example, audit@globex.example"


def test_one_email_is_kept_exactly_as_written(tmp_path: Path) -> None:
    """A single address stays the display form as today, and is the one address."""
    grant = one(tmp_path, "false", "{id: globex, email: Finance.Team@Globex.example}")
    assert grant.recipient.email == "Finance.Team@Globex.example"
    assert grant.recipient.addresses == ("Finance.Team@Globex.example",)


def test_the_subject_is_rendered_for_each_grant(tmp_path: Path) -> None:
    """{period.*}, {recipient.*} and {job.name} are filled per grant; a missing name is named."""
    notify = (
        "{smtp: {host: smtp.acme.example}, from: r@acme.example,"
        ' subject: "{period.label} {job.name} for {recipient.name}"}'
    )
    grant = one(tmp_path, notify, "{id: globex, name: Globex Corp}")
    assert grant.notify is not None
    assert grant.notify.subject == "2026-Q3 q3 for Globex Corp"
    text = (
        "version: 1\ndefaults:\n  bucket: acme-reports\n  expires_in: 7d\n"
        f"  notify: {notify}\njobs:\n  - {{name: q3, prefixes: [r/], recipients: [{{id: a}}]}}\n"
    )
    [issue] = issues(tmp_path, text)
    assert issue.field == "defaults.notify.subject"
    assert "recipient 'a' has no name" in issue.message


def test_missing_required_fields_are_reported_at_the_nearest_notify(tmp_path: Path) -> None:
    """A recipient's own notify without smtp.host anywhere: reported at that mapping."""
    text = (
        "version: 1\ndefaults:\n  bucket: acme-reports\n  expires_in: 7d\n"
        "jobs:\n  - name: q3\n    prefixes: [r/]\n    recipients:\n"
        "      - {id: a, notify: {from: r@acme.example}}\n"
    )
    [issue] = issues(tmp_path, text)
    assert (issue.line, issue.field) == (9, "jobs[0].recipients[0].notify")
    assert issue.message.startswith("notify needs smtp.host: name the mail server")


def test_a_webhook_needs_its_url(tmp_path: Path) -> None:
    """webhook: {format: slack} inherited by nothing with a url is refused where written."""
    text = BASE + "    webhook: {format: slack}\n"
    text += "jobs:\n  - {name: q3, prefixes: [r/], recipients: [{id: a}]}\n"
    [issue] = issues(tmp_path, text)
    assert issue.field == "defaults.notify.webhook"
    assert "needs url" in issue.message


def test_a_password_is_refused_and_never_shown(tmp_path: Path) -> None:
    """password: in notify points at the environment, and its value is in no message."""
    secret = "correct-horse-battery-staple"
    text = BASE.replace("timeout: 2m", f"password: {secret}")
    text += f"    webhook: {{url: https://hooks.acme.example/x, smtp_password: {secret}}}\n"
    text += "jobs:\n  - {name: q3, prefixes: [r/], recipients: [{id: a}]}\n"
    with pytest.raises(ManifestError) as info:
        load(tmp_path, text)
    assert [i.field for i in info.value.issues] == [
        "defaults.notify.smtp.password",
        "defaults.notify.webhook.smtp_password",
    ]
    assert all("SHAREBATCH_SMTP_PASSWORD" in i.message for i in info.value.issues)
    assert all("password_env" in i.message for i in info.value.issues)
    assert secret not in str(info.value)


def test_the_cli_refuses_a_password_without_showing_it(tmp_path: Path) -> None:
    """Through `sharebatch run`: exit 2, the located message, not the password, nothing made."""
    out = tmp_path / "out"
    path = BAD / "notify_password.yml"
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path}:6:56: defaults.notify.smtp.password: ")
    assert "hunter2" not in result.stderr + result.stdout
    assert not out.exists()


def test_a_bad_webhook_url_is_never_echoed(tmp_path: Path) -> None:
    """A webhook URL often holds a token: messages about it do not repeat it."""
    token = "T0K3N-abcdef0123456789"
    for url in (f"ftp://hooks.example/{token}", f"https://user:{token}@hooks.example/x"):
        text = BASE + f'    webhook: {{url: "{url}"}}\n'
        text += "jobs:\n  - {name: q3, prefixes: [r/], recipients: [{id: a}]}\n"
        [issue] = issues(tmp_path, text)
        assert issue.field == "defaults.notify.webhook.url"
        assert token not in str(issue)


def test_the_template_is_found_beside_the_manifest(tmp_path: Path) -> None:
    """template: is relative to the manifest's folder, resolved to an absolute path; its .html
    sibling is the HTML part when present."""
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "partner.txt").write_text("Hello {recipient.name}\n", encoding="utf-8")
    (folder / "partner.html").write_text("<p>Hello</p>\n", encoding="utf-8")
    grant = one(
        tmp_path,
        "{smtp: {host: smtp.acme.example}, from: r@acme.example, template: templates/partner.txt}",
    )
    assert grant.notify is not None
    assert grant.notify.template == str(folder / "partner.txt")
    assert html_template(grant.notify.template) == str(folder / "partner.html")
    (folder / "partner.html").unlink()
    assert html_template(grant.notify.template) is None


@pytest.mark.parametrize(
    ("setup", "written", "message"),
    [
        ("html-dir", "t.txt", "the HTML template 't.html' is a directory, not a regular file"),
        ("binary", "t.txt", "template 't.txt' is not UTF-8 text"),
        ("none", "t.html", "is the text template; its HTML alternative is found beside it"),
    ],
)
def test_unusable_template_files_are_refused(
    tmp_path: Path, setup: str, written: str, message: str
) -> None:
    """A template must be UTF-8 text, not the .html part; its .html sibling a regular file."""
    (tmp_path / "t.txt").write_bytes(b"\xff\xfe" if setup == "binary" else b"Hello\n")
    if setup == "html-dir":
        (tmp_path / "t.html").mkdir()
    text = (
        "version: 1\ndefaults:\n  bucket: acme-reports\n  expires_in: 7d\n"
        f"  notify: {{smtp: {{host: h.example}}, from: r@acme.example, template: {written}}}\n"
        "jobs:\n  - {name: q3, prefixes: [r/], recipients: [{id: a}]}\n"
    )
    [issue] = issues(tmp_path, text)
    assert issue.field == "defaults.notify.template"
    assert message in issue.message


def test_pages_stay_apart_from_upload_slots_and_other_stores_do_not_count(tmp_path: Path) -> None:
    """pages_prefix in an upload folder is refused; a shared prefix in another bucket is not
    a conflict, nor is any prefix when delivery is links (no pages are stored)."""
    head = (
        "version: 1\ndefaults:\n  bucket: acme-reports\n  expires_in: 7d\n"
        "  notify: {smtp: {host: h.example}, from: r@acme.example, pages_prefix: inbox/p/}\n"
    )
    slot = "jobs:\n  - name: q3\n    prefixes: [r/]\n    upload: {prefix: inbox/, max_size: 1MB}\n"
    [issue] = issues(tmp_path, head + slot + "    recipients: [{id: a}]\n")
    assert issue.field == "defaults.notify.pages_prefix"
    assert "overlaps the upload prefix 'inbox/' of job 'q3'" in issue.message
    other = "  - {name: z, bucket: other-bucket, notify: false, prefixes: [inbox/]"
    other += ", recipients: [{id: b}]}\n"
    jobs = "jobs:\n  - {name: q3, prefixes: [r/], recipients: [{id: a}]}\n"
    assert load(tmp_path, head + jobs + other).jobs[0].grants[0].notify is not None
    links = head.replace("pages_prefix", "delivery: links, pages_prefix")
    same = other.replace("bucket: other-bucket, notify: false, ", "")
    assert load(tmp_path, links + jobs + same).jobs[1].grants[0].notify is not None


def test_addresses_are_checked_more_closely(tmp_path: Path) -> None:
    """Addresses that a mail server would refuse, or that split a header, fail at load."""
    for email, why in [
        ("a b@globex.example", "' ' is not allowed before '@'"),
        ("a..b@globex.example", "dots before '@' must separate words"),
        ("a@globex..example", "has an empty or overlong part"),
        ("a@-globex.example", "is not a host name"),
        ("a@globex.example, b@globex.example", "write several addresses as a list"),
    ]:
        text = (
            "version: 1\ndefaults: {bucket: acme-reports, expires_in: 7d}\n"
            f'jobs:\n  - {{name: q3, prefixes: [r/], recipients: [{{id: a, email: "{email}"}}]}}\n'
        )
        [issue] = issues(tmp_path, text)
        assert issue.field == "jobs[0].recipients[0].email"
        assert why in issue.message, issue.message


@pytest.mark.parametrize(
    "sender",
    [
        "reports@acme.example",
        "Acme Reports <reports@acme.example>",
        '"Acme, Inc." <reports@acme.example>',
        "<reports@acme.example>",
    ],
)
def test_a_sender_may_carry_a_display_name(tmp_path: Path, sender: str) -> None:
    """from: takes an address, or a name and an address; it is kept as written."""
    grant = one(tmp_path, f"{{smtp: {{host: h.example}}, from: '{sender}'}}")
    assert grant.notify is not None
    assert grant.notify.sender == sender


def test_the_issue_example_loads(tmp_path: Path) -> None:
    """The example of issue 14 is a valid manifest."""
    manifest = load(
        tmp_path,
        """\
version: 1
defaults:
  bucket: acme-reports
  expires_in: 7d
  notify:
    smtp: {host: smtp.example.com, port: 587, security: starttls, username: reports}
    from: "Acme Reports <reports@acme.example>"
    reply_to: ops@acme.example
    subject: "{period.label} reports for {recipient.name}"
    delivery: page
    pages_prefix: "_sharebatch/pages/"
jobs:
  - name: q3
    prefixes: [reports/]
    recipients:
      - id: globex
        name: Globex
        email: [finance@globex.example, audit@globex.example]
""",
    )
    [grant] = grants(manifest).values()
    assert grant.notify is not None
    assert grant.notify.subject == "2026-Q3 reports for Globex"
    assert grant.notify.smtp == SmtpServer("smtp.example.com", 587, "starttls", "reports")


def test_the_schema_describes_notify_and_its_false() -> None:
    """Editors see Notify, Smtp and Webhook with every field described, false as a value of
    notify, 'from' by its YAML name, and email as one address or a list."""
    schema = manifest_json_schema()
    defs = schema["$defs"]
    assert set(defs["Notify"]["properties"]) == {
        "smtp",
        "from",
        "reply_to",
        "subject",
        "delivery",
        "pages_prefix",
        "template",
        "per_address",
        "require_approval",
        "webhook",
    }
    assert set(defs["Smtp"]["properties"]) == {
        "host",
        "port",
        "security",
        "username",
        "password_env",
        "timeout",
    }
    assert set(defs["Webhook"]["properties"]) == {"url", "format"}
    for name in ("Notify", "Smtp", "Webhook"):
        assert defs[name]["additionalProperties"] is False
        assert all(p.get("description") for p in defs[name]["properties"].values())
    options = defs["Settings"]["properties"]["notify"]["anyOf"]
    assert options == [{"$ref": "#/$defs/Notify"}, {"const": False}, {"type": "null"}]
    assert "Your files for {period.label}" in defs["Notify"]["properties"]["subject"]["description"]
    email = defs["Recipient"]["properties"]["email"]
    assert {"type": "string"} in email["anyOf"]
    assert json.dumps(email).count('"array"') == 1


def test_a_shared_prefix_over_the_default_pages_is_refused(tmp_path: Path) -> None:
    """Sharing _sharebatch/ would hand out the default pages folder: refused at the notify
    mapping the default applies through, once however many recipients inherit it."""
    text = (
        "version: 1\ndefaults:\n  bucket: acme-reports\n  expires_in: 7d\n"
        "  notify: {smtp: {host: h.example}, from: r@acme.example}\n"
        "jobs:\n  - {name: q3, prefixes: [_sharebatch/], recipients: [{id: a}, {id: b}]}\n"
    )
    [issue] = issues(tmp_path, text)
    assert (issue.line, issue.field) == (5, "defaults.notify")
    assert "pages_prefix '_sharebatch/pages/' overlaps '_sharebatch/'" in issue.message


@pytest.mark.parametrize(
    ("notify", "field", "hint"),
    [
        ("{smtp: {hots: h.example}}", "defaults.notify.smtp.hots", "did you mean 'host'?"),
        ("{sender: r@acme.example}", "defaults.notify.sender", "expected one of smtp, from,"),
        ("{webhook: {uri: x}}", "defaults.notify.webhook.uri", "did you mean 'url'?"),
        ("{smtp: {password_evn: X}}", "defaults.notify.smtp.password_evn", "'password_env'?"),
    ],
)
def test_unknown_keys_in_notify_name_the_yaml_fields(
    tmp_path: Path, notify: str, field: str, hint: str
) -> None:
    """A misspelt key under notify, smtp or webhook is located and the fields are named as
    written in YAML ('from', not the attribute behind it)."""
    text = (
        "version: 1\ndefaults:\n  bucket: acme-reports\n  expires_in: 7d\n"
        f"  notify: {notify}\n"
        "jobs:\n  - {name: q3, prefixes: [r/], recipients: [{id: a, notify: false}]}\n"
    )
    found = issues(tmp_path, text)
    assert [i.field for i in found] == [field]
    assert hint in found[0].message
