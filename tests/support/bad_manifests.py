"""The bad-manifest corpus (tests/manifest/bad_manifests): each file and its one located issue.

``NOW`` is the fixed moment the corpus is judged at: no outcome depends on the real clock.
Files with ``link: cloudfront`` read their private key from the environment (a key file in
git cannot keep the private mode the loader demands): ``corpus_keys`` sets the variables they
name, a usable P-256 key and an Ed25519 one that must be refused.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.cloudfront_keys import CF_KEY_ENV, make_key, pem
from tests.support.paths import TESTS

BAD = TESTS / "manifest" / "bad_manifests"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
UNKNOWN_QUATER = "unknown template variable {period.quater}; known: {period.year}, "
NO_NAME = "{recipient.name} is used here but recipient 'initech' has no name"
RENDERED_WILDCARD = "prefix 'partners/Globex [EU]/' contains '['"
MIN_OVER_MAX = (
    "min_size 2000000 bytes (jobs[0].filters.min_size) is more than max_size 1000000 bytes"
    " (defaults.filters.max_size)"
)
AFTER_BEFORE = (
    "modified_after 2026-07-01T00:00:00Z (defaults.filters.modified_after) is not before"
    " modified_before 2026-06-30T00:00:00Z"
)
UPLOADS = "overlaps the upload prefix 'inbox/globex/' of recipient 'globex'"
TOO_FAR = "2099-12-30T00:00:00Z is more than 7 days after the run (2026-11-28T12:00:00Z)"
SMTP_PASSWORD = "never written in the manifest: put it in the environment variable SHAREBATCH_SMTP"
CLEAR_TEXT = "only towards this machine (localhost, 127.0.0.1, ::1), not 'smtp.acme.example'"
PAGES_SHARED = "overlaps 'reports/2026/Q3/', shared for download in job 'q3-partners' of"
IDN = "write the domain in its ASCII (punycode) form: 'xn--glbex-kua.example'"
PAGE_NEEDS_JSON = "no links.json, where delivery: page keeps the link to the recipient page"
SCAN_FIELD = "jobs[0].upload.scan.quarantine"
QUARANTINE = "jobs[0].upload.scan.quarantine_prefix"
CF_CAP = "is longer than the cloudfront max_expires_in 90d (defaults.cloudfront.max_expires_in)"
CF_AT = "2027-03-08T12:00:00Z is more than 90d after the run (2026-11-28T12:00:00Z)"
S3_AT = "2026-12-06T12:00:00Z is more than 7 days after the run (2026-11-28T12:00:00Z)"
CF_BESIDE = "allow_ips is not a cloudfront field: put it beside link:"
CF_ONE_IP = "a CloudFront policy's AWS:SourceIp takes exactly one"
CF_NO_BLOCK = "link: cloudfront needs a cloudfront: block with domain (e.g. d111111abcdef8"


def corpus_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the corpus's cloudfront files name their keys in."""
    monkeypatch.setenv(CF_KEY_ENV, pem(make_key("p256")).decode("ascii"))
    monkeypatch.setenv(CF_KEY_ENV + "_ED25519", pem(make_key("ed25519")).decode("ascii"))
    monkeypatch.delenv(CF_KEY_ENV + "_UNSET", raising=False)


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
    ("prefix_only_slash.yml", 8, 9, "jobs[0].prefixes[0]", "name the folder to share, e.g."),
    ("recipient_receives_nothing.yml", 11, 9, "jobs[0].recipients[1]", "would receive nothing"),
    ("bucket_uppercase.yml", 3, 11, "defaults.bucket", "'My_Bucket' is not valid"),
    ("bucket_too_short.yml", 7, 13, "jobs[0].bucket", "not 3 to 63"),
    ("bucket_ip_address.yml", 7, 13, "jobs[0].bucket", "IP address"),
    ("region_bad.yml", 4, 11, "defaults.region", "'Europe' is not an AWS region"),
    ("endpoint_url_bad.yml", 4, 17, "defaults.endpoint_url", "http:// or https://"),
    ("addressing_style_bad.yml", 7, 23, "jobs[0].addressing_style", "'auto', 'virtual' or"),
    ("email_bad.yml", 10, 16, "jobs[0].recipients[0].email", "one address"),
    ("email_bidi.yml", 10, 16, "jobs[0].recipients[0].email", "character U+202E"),
    ("email_idn_domain.yml", 10, 16, "jobs[0].recipients[0].email", IDN),
    (
        "email_non_ascii_local.yml",
        10,
        16,
        "jobs[0].recipients[0].email",
        "'ö' is not allowed before '@': only ASCII",
    ),
    ("recipient_name_escape.yml", 10, 15, "jobs[0].recipients[0].name", "character U+001B"),
    ("recipient_name_newline.yml", 10, 15, "jobs[0].recipients[0].name", "character U+000D"),
    ("jobs_empty.yml", 5, 7, "jobs", "at least one job"),
    ("recipients_empty.yml", 8, 17, "jobs[0].recipients", "at least one recipient"),
    ("empty_file.yml", None, None, "", "manifest is empty"),
    ("top_level_list.yml", 1, 1, "", "must be a mapping"),
    ("python_tag.yml", 10, 15, "jobs[0].recipients[0].name", "unsupported YAML tag"),
    ("alias_bomb.yml", None, None, "", "refusing to expand"),
    ("alias_recursive.yml", 2, 11, "", "refers to itself"),
    # templates
    ("template_unknown_variable.yml", 7, 16, "jobs[0].prefixes[0]", UNKNOWN_QUATER),
    ("template_unclosed_brace.yml", 7, 16, "jobs[0].prefixes[0]", "'{' at character 9 is never"),
    ("template_not_a_variable.yml", 7, 16, "jobs[0].prefixes[0]", "'{a b}' at character 9 is not"),
    ("template_object_variable_in_prefix.yml", 7, 16, "jobs[0].prefixes[0]", "{basename} cannot"),
    ("template_recipient_name_missing.yml", 7, 16, "jobs[0].prefixes[0]", NO_NAME),
    ("template_renders_wildcard.yml", 7, 16, "jobs[0].prefixes[0]", RENDERED_WILDCARD),
    ("template_output_dir_recipient.yml", 3, 8, "output.dir", "{recipient.id} cannot be used"),
    ("output_dir_bidi.yml", 3, 8, "output.dir", "character U+202E"),
    # sizes and filters
    ("size_word.yml", 6, 15, "defaults.filters.min_size", "'ten' is not a size; use e.g. 10MB"),
    ("size_negative.yml", 6, 15, "defaults.filters.max_size", "'-1MB' is negative"),
    ("size_unknown_unit.yml", 6, 15, "defaults.filters.min_size", "unknown unit 'XB'"),
    ("size_min_over_max.yml", 11, 17, "jobs[0].filters.min_size", MIN_OVER_MAX),
    ("modified_after_not_before.yml", 11, 24, "jobs[0].filters.modified_before", AFTER_BEFORE),
    ("date_bad.yml", 8, 31, "jobs[0].filters.modified_after", "day is out of range for month"),
    ("max_links_zero.yml", 5, 24, "defaults.filters.max_links", "positive whole number, got 0"),
    ("max_links_negative.yml", 5, 24, "defaults.filters.max_links", "number, got -10"),
    ("max_links_float.yml", 5, 24, "defaults.filters.max_links", "got the number 1.5"),
    ("include_empty_pattern.yml", 9, 29, "jobs[0].filters.include[1]", "must not be empty"),
    ("include_triple_star.yml", 9, 17, "jobs[0].filters.include[0]", "contains '***'"),
    ("unknown_field_filters.yml", 8, 15, "jobs[0].filters.exlude", "did you mean 'exclude'?"),
    # expiry
    ("expires_at_no_zone.yml", 8, 17, "jobs[0].expires_at", "has no time zone"),
    ("expires_at_date_only.yml", 8, 17, "jobs[0].expires_at", "needs a time and a zone"),
    ("expires_at_past.yml", 8, 17, "jobs[0].expires_at", "2020-01-01T00:00:00Z is in the past"),
    ("expires_at_too_far.yml", 8, 17, "jobs[0].expires_at", TOO_FAR),
    ("expires_in_and_at.yml", 9, 17, "jobs[0].expires_at", "expires_in and expires_at are both"),
    # other settings
    ("formats_empty.yml", 5, 12, "defaults.formats", "must list at least one format"),
    ("formats_unknown.yml", 5, 18, "defaults.formats[1]", "'csv' or 'json', got the text 'xlsx'"),
    ("period_bad.yml", 5, 11, "defaults.period", "'quarter', 'month' or 'year', got the text"),
    ("on_short_credentials_bad.yml", 5, 25, "defaults.on_short_credentials", "'fail', 'clamp'"),
    ("download_name_empty.yml", 5, 18, "defaults.download_name", "gives '' for the key"),
    ("download_name_slash.yml", 10, 24, "jobs[0].recipients[0].download_name", "contains '/'"),
    ("download_name_control.yml", 5, 18, "defaults.download_name", "character U+0007"),
    ("download_name_bidi.yml", 10, 24, "jobs[0].recipients[0].download_name", "character U+202E"),
    ("download_name_dots.yml", 10, 24, "jobs[0].recipients[0].download_name", "only dots"),
    ("download_name_blank.yml", 10, 24, "jobs[0].recipients[0].download_name", "is blank"),
    ("content_type_bad.yml", 5, 17, "defaults.content_type", "'pdf' is not a media type"),
    ("content_type_control.yml", 5, 17, "defaults.content_type", "character U+001B"),
    # upload slots
    ("upload_prefix_no_slash.yml", 9, 15, "jobs[0].upload.prefix", "must end with '/'"),
    ("upload_missing_max_size.yml", 11, 11, "jobs[0].recipients[0].upload", "needs max_size"),
    ("upload_missing_prefix.yml", 6, 5, "defaults.upload", "upload needs prefix"),
    ("upload_max_size_over_5gib.yml", 10, 17, "jobs[0].upload.max_size", "more than 5GiB"),
    ("upload_expires_in_8d.yml", 11, 19, "jobs[0].upload.expires_in", "7-day limit"),
    ("upload_key_with_slash.yml", 11, 14, "jobs[0].upload.keys[0]", "a plain file name"),
    ("upload_key_invisible.yml", 11, 14, "jobs[0].upload.keys[0]", "character U+200B"),
    ("upload_key_type_unknown.yml", 12, 28, "jobs[0].upload.keys[1]", "exactly one Content-Type"),
    ("upload_key_duplicate.yml", 11, 36, "jobs[0].upload.keys[1]", "'globex.pdf' is listed twice"),
    ("upload_is_true.yml", 10, 17, "jobs[0].recipients[0].upload", "or false for no slot"),
    ("upload_unknown_field.yml", 11, 7, "jobs[0].upload.content_type", "'content_types'?"),
    ("upload_form_urlencoded.yml", 11, 23, "jobs[0].upload.content_types[0]", "HTML form"),
    ("upload_overlaps_download.yml", 9, 15, "jobs[0].upload.prefix", "handed out as downloads"),
    ("upload_overlaps_other_slot.yml", 14, 26, "jobs[0].recipients[1].upload.prefix", UPLOADS),
    # upload.scan (issue 19)
    ("upload_scan_clamd_remote.yml", 12, 36, "jobs[0].upload.scan.clamd", "loopback only"),
    ("upload_scan_clamd_relative.yml", 12, 36, "jobs[0].upload.scan.clamd", "absolute path"),
    ("upload_scan_engine_unknown.yml", 12, 22, "jobs[0].upload.scan.engine", "'guardduty'"),
    ("upload_scan_guardduty_clamd.yml", 12, 13, "jobs[0].upload.scan", "drop clamd"),
    ("upload_scan_unknown_field.yml", 12, 29, SCAN_FIELD, "'quarantine_prefix'?"),
    ("upload_scan_quarantine_in_slot.yml", 12, 48, QUARANTINE, "back in a slot"),
    ("upload_scan_quarantine_shared.yml", 12, 48, QUARANTINE, "infected uploads would be"),
    # notify
    ("notify_email_list_bad.yml", 13, 41, "jobs[0].recipients[0].email[1]", "one address"),
    ("notify_email_list_duplicate.yml", 13, 41, "jobs[0].recipients[0].email[1]", "listed twice"),
    ("notify_email_crlf.yml", 13, 17, "jobs[0].recipients[0].email[0]", "character U+000D"),
    ("notify_from_newline.yml", 7, 11, "defaults.notify.from", "character U+000A"),
    ("notify_from_bad.yml", 7, 11, "defaults.notify.from", "must be quoted"),
    ("notify_reply_to_bad.yml", 8, 15, "defaults.notify.reply_to", "it has no '@'"),
    ("notify_subject_crlf.yml", 8, 14, "defaults.notify.subject", "character U+000D"),
    ("notify_subject_unknown_variable.yml", 8, 14, "defaults.notify.subject", "{recipient.title}"),
    ("notify_password.yml", 6, 56, "defaults.notify.smtp.password", SMTP_PASSWORD),
    ("notify_password_top.yml", 8, 5, "defaults.notify.password", SMTP_PASSWORD),
    ("notify_security_none_remote.yml", 6, 47, "defaults.notify.smtp.security", CLEAR_TEXT),
    ("notify_port_bad.yml", 6, 43, "defaults.notify.smtp.port", "1 to 65535, got 70000"),
    ("notify_host_url.yml", 6, 18, "defaults.notify.smtp.host", "must be a host name only"),
    ("notify_webhook_url_bad.yml", 8, 20, "defaults.notify.webhook.url", "http:// or https://"),
    ("notify_template_missing.yml", 8, 15, "defaults.notify.template", "does not exist"),
    ("notify_template_directory.yml", 8, 15, "defaults.notify.template", "not a regular file"),
    ("notify_pages_prefix_no_slash.yml", 8, 19, "defaults.notify.pages_prefix", "end with '/'"),
    ("notify_pages_prefix_overlaps.yml", 8, 19, "defaults.notify.pages_prefix", PAGES_SHARED),
    ("notify_unknown_field.yml", 8, 5, "defaults.notify.subjet", "did you mean 'subject'?"),
    ("notify_missing_from.yml", 6, 5, "defaults.notify", "notify needs from"),
    ("notify_delivery_bad.yml", 8, 15, "defaults.notify.delivery", "'page' or 'links'"),
    ("notify_is_true.yml", 5, 11, "defaults.notify", "or false to send nothing"),
    ("notify_page_without_json.yml", 11, 14, "jobs[0].formats", PAGE_NEEDS_JSON),
    # link kinds and CloudFront (keys come from corpus_keys' environment)
    ("link_unknown.yml", 5, 9, "defaults.link", "must be 's3' or 'cloudfront', got the text"),
    ("expires_at_8d_for_s3.yml", 8, 17, "jobs[0].expires_at", S3_AT),
    ("allow_ips_not_cidr.yml", 6, 15, "defaults.allow_ips[0]", "not a network in CIDR form"),
    ("allow_ips_host_bits.yml", 6, 15, "defaults.allow_ips[0]", "did you mean 203.0.113.0/24?"),
    ("cloudfront_allow_ips_two.yml", 6, 14, "defaults.allow_ips", CF_ONE_IP),
    ("cloudfront_allow_ips_inside_block.yml", 11, 5, "defaults.cloudfront.allow_ips", CF_BESIDE),
    ("cloudfront_block_missing.yml", 8, 11, "jobs[0].link", CF_NO_BLOCK),
    ("cloudfront_missing_domain.yml", 7, 5, "defaults.cloudfront", "cloudfront needs domain"),
    (
        "cloudfront_missing_max_expires_in.yml",
        7,
        5,
        "defaults.cloudfront",
        "link: cloudfront needs max_expires_in (e.g. 90d)",
    ),
    ("cloudfront_expires_in_over_max.yml", 4, 15, "defaults.expires_in", "120d " + CF_CAP),
    ("cloudfront_expires_at_over_max.yml", 14, 17, "jobs[0].expires_at", CF_AT),
    (
        "cloudfront_max_expires_in_over_a_year.yml",
        10,
        21,
        "defaults.cloudfront.max_expires_in",
        "max_expires_in 400d is longer than 365 days",
    ),
    ("cloudfront_key_file_missing.yml", 9, 18, "defaults.cloudfront.private_key", "does not exist"),
    (
        "cloudfront_key_file_is_a_directory.yml",
        9,
        18,
        "defaults.cloudfront.private_key",
        "is a directory, not a key file",
    ),
    ("cloudfront_key_env_unset.yml", 9, 18, "defaults.cloudfront.private_key", "is not set"),
    ("cloudfront_key_ed25519.yml", 9, 18, "defaults.cloudfront.private_key", "an Ed25519 key"),
    (
        "cloudfront_key_file_and_env.yml",
        9,
        18,
        "defaults.cloudfront.private_key",
        "exactly one of file and env",
    ),
    ("cloudfront_domain_path.yml", 7, 13, "defaults.cloudfront.domain", "must not have a path"),
    ("cloudfront_domain_scheme.yml", 7, 13, "defaults.cloudfront.domain", "without the scheme"),
    ("cloudfront_domain_http.yml", 7, 13, "defaults.cloudfront.domain", "in clear text"),
    ("cloudfront_hash_md5.yml", 11, 11, "defaults.cloudfront.hash", "'sha256' or 'sha1', got"),
    (
        "cloudfront_key_pair_id_lowercase.yml",
        8,
        18,
        "defaults.cloudfront.key_pair_id",
        "not a CloudFront public key id",
    ),
    (
        "cloudfront_distribution_arn_bad.yml",
        11,
        23,
        "defaults.cloudfront.distribution_arn",
        "is not a CloudFront distribution ARN",
    ),
    (
        "cloudfront_not_before_unknown_variable.yml",
        11,
        17,
        "defaults.cloudfront.not_before",
        "unknown template variable {period.nextstart}",
    ),
]
