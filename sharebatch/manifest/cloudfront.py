"""The manifest's CloudFront settings: ``link:``, ``allow_ips:`` and the ``cloudfront:`` block.

``link: cloudfront`` makes a grant's links CloudFront signed URLs instead of S3 presigned ones.
``RawCloudFront`` mirrors the block; its fields inherit defaults -> job -> recipient one by one,
like ``upload:``. ``resolve_cloudfront`` turns the fields found for one grant into a
``CloudFrontLinks``, loading the private key on the way: a missing, unreadable, world-readable
or unusable key is a located manifest error, so ``doctor`` and ``run`` both stop before
anything is signed. The loaded key is dropped straight away (only its ``KeySource`` is kept:
grants get dumped and logged); the signer loads it again when the run starts.

``allow_ips`` is a grant-level setting beside ``link:``, not a field of the block: it says from
which networks a recipient's links should work, whatever their kind. A CloudFront custom
policy's ``IpAddress`` condition holds one ``AWS:SourceIp`` value (CloudFront's developer guide,
"Creating a signed URL using a custom policy": a single IP address range per policy), so with
``link: cloudfront`` it takes exactly one entry; ``link: s3`` takes a list, which only the
bucket policy of ``sharebatch policy`` enforces.

Like ``upload``, this module imports nothing from ``resolve`` (which imports it): lookups and
the template renderer are passed in.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from sharebatch.cloudfront.keys import KeyProblem, key_algorithm, load_private_key
from sharebatch.manifest.fields import (
    FilterMoment,
    capped_duration,
    check_text,
    hidden_character,
)
from sharebatch.manifest.periods import parse_moment
from sharebatch.manifest.source import IssueCollector, PathKey, format_path, show
from sharebatch.models import MAX_EXPIRES_IN, CloudFrontHash, CloudFrontLinks, KeySource
from sharebatch.times import iso

_T = TypeVar("_T")
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_KEY_PAIR_ID = re.compile(r"[A-Z0-9]{8,32}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_ARN = re.compile(r"arn:aws(?:-cn|-us-gov)?:cloudfront::[0-9]{12}:distribution/[A-Z0-9]{8,32}")
REQUIRED = ("domain", "key_pair_id", "private_key", "max_expires_in")
_EXAMPLES = {
    "domain": "d111111abcdef8.cloudfront.net",
    "key_pair_id": "K2JCJMDEHXQW5F",
    "private_key": "{file: /etc/sharebatch/cf.pem}",
    "max_expires_in": "90d",
}


# --- single values --------------------------------------------------------------------------


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_domain(value: str) -> str:
    """The distribution's host name; or, for a test verifier, an http(s) origin on loopback.

    Links are ``https://<domain>/<key>``, so a scheme or a path here is a mistake; a scheme is
    kept only for a loopback origin, where a test server stands in for CloudFront.
    """
    hidden = hidden_character(value)
    if hidden is not None:
        raise ValueError(f"domain {show(value)} contains {hidden}")
    usage = "write the distribution's host name, e.g. d111111abcdef8.cloudfront.net"
    if "://" in value:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ValueError(f"domain {show(value)} is not a host name; {usage}") from None
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError(f"domain {show(value)} is not a host name; {usage}")
        if not _loopback(host):
            if parts.scheme == "http":
                raise ValueError(
                    f"domain {show(value)} would make links travel in clear text: http:// is"
                    " only for a test server on a loopback address (127.0.0.x, ::1);"
                    f" CloudFront links are https://, so {usage}"
                )
            raise ValueError(
                f"domain {show(value)} must be the host name only, without the scheme: links"
                f" are always https://<domain>/<key>; write {show(host)}"
            )
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"domain {show(value)} must not contain a user name or password")
        if parts.path not in ("", "/") or parts.query or parts.fragment or port == 0:
            raise ValueError(
                f"domain {show(value)} must be scheme, loopback host and port only, without a"
                " path: object keys are appended to it"
            )
        return value.rstrip("/")
    host, slash, path = value.partition("/")
    if slash:
        raise ValueError(
            f"domain {show(value)} must not have a path ({show('/' + path)}): links are"
            f" https://<domain>/<key> and the key comes from the bucket; {usage}"
        )
    name = host.lower().removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_HOST_LABEL.fullmatch(x) for x in labels):
        raise ValueError(f"domain {show(value)} is not a host name; {usage}")
    return name


def check_key_pair_id(value: str) -> str:
    """A CloudFront public key id (``K2JCJMDEHXQW5F``) or a legacy key pair id (``APKA...``)."""
    if not _KEY_PAIR_ID.fullmatch(value):
        hint = f" (try {show(value.upper())})" if _KEY_PAIR_ID.fullmatch(value.upper()) else ""
        raise ValueError(
            f"key_pair_id {show(value)} is not a CloudFront public key id: 8 to 32 uppercase"
            f" letters and digits, e.g. K2JCJMDEHXQW5F, as the console lists it{hint}"
        )
    return value


def check_distribution_arn(value: str) -> str:
    if not _ARN.fullmatch(value):
        raise ValueError(
            f"distribution_arn {show(value)} is not a CloudFront distribution ARN like"
            " arn:aws:cloudfront::111122223333:distribution/EDFDVBD6EXAMPLE"
        )
    return value


def check_cidr(value: str) -> str:
    """One network in CIDR form (IPv4 or IPv6), normalised; a bare address means itself."""
    check_text(value, "allow_ips entry")
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(
                f"allow_ips entry {show(value)} is not a network in CIDR form, e.g."
                " 203.0.113.0/24 or 2001:db8::/32"
            ) from None
        raise ValueError(
            f"allow_ips entry {show(value)} has host bits set after the /{loose.prefixlen};"
            f" did you mean {loose}?"
        ) from None
    return str(network)


def _max_expires_in_field(value: object) -> int:
    return capped_duration(
        value,
        lambda exc: (
            f"max_expires_in {exc}, the most sharebatch allows: a signed link cannot be revoked"
            " on its own, only by removing its key from the key group"
        ),
    )


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(
            f"env {show(value)} is not an environment variable name (letters, digits and '_',"
            " not starting with a digit)"
        )
    return value


def _check_key_file(value: str) -> str:
    if not value.strip():
        raise ValueError("file must name the private key file, e.g. /etc/sharebatch/cf.pem")
    return check_text(value, "file")


Cidr = Annotated[str, AfterValidator(check_cidr)]
MaxExpiresIn = Annotated[
    int,
    PlainValidator(_max_expires_in_field),
    WithJsonSchema({"type": ["string", "integer"], "examples": ["90d", "30d", "P365D"]}),
]


class RawKeySource(BaseModel):
    """Where the private key is: a file private to its owner, or an environment variable."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="PrivateKey")

    file: Annotated[str, AfterValidator(_check_key_file)] | None = Field(
        None,
        description="PEM file (mode 600 or 400; a file group or others can read is refused);"
        " relative to the manifest's folder.",
    )
    env: Annotated[str, AfterValidator(_check_env_name)] | None = Field(
        None, description="Environment variable holding the PEM (e.g. from a secret store)."
    )

    @model_validator(mode="after")
    def _one_place(self) -> RawKeySource:
        if (self.file is None) == (self.env is None):
            raise ValueError(
                "private_key needs exactly one of file and env, e.g."
                " {file: /etc/sharebatch/cf.pem} or {env: SHAREBATCH_CF_KEY}"
            )
        return self


class RawCloudFront(BaseModel):
    """CloudFront signed links (with link: cloudfront); each field inherits on its own."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="CloudFront")

    domain: Annotated[str, AfterValidator(check_domain)] | None = Field(
        None,
        description="The distribution's host name, e.g. d111111abcdef8.cloudfront.net or its"
        " own domain; no scheme, no path. Required.",
    )
    key_pair_id: Annotated[str, AfterValidator(check_key_pair_id)] | None = Field(
        None, description="The public key's id in the distribution's key group. Required."
    )
    private_key: RawKeySource | None = Field(
        None, description="{file: path} or {env: NAME}: the key pair's private key. Required."
    )
    hash: CloudFrontHash | None = Field(
        None, description="Signature hash: sha256 (default) or sha1 (for older key groups)."
    )
    not_before: FilterMoment | None = Field(
        None,
        description="Links work only from this moment (a custom policy); templates allowed,"
        " e.g. '{period.next_start}'.",
    )
    max_expires_in: MaxExpiresIn | None = Field(
        None,
        description="The longest expires_in (or expires_at from the run) these links may"
        " have: 30d, 90d... at most 365d. Required.",
    )
    distribution_arn: Annotated[str, AfterValidator(check_distribution_arn)] | None = Field(
        None,
        description="arn:aws:cloudfront::<account>:distribution/<ID>; only for `sharebatch"
        " policy` (the Origin Access Control statement).",
    )


CLOUDFRONT_FIELDS = tuple(RawCloudFront.model_fields)


def misplaced_allow_ips(path: PathKey) -> str | None:
    """The message for ``allow_ips`` written inside ``cloudfront:``; None for other paths."""
    if len(path) >= 2 and path[-2:] == ("cloudfront", "allow_ips"):
        return (
            "allow_ips is not a cloudfront field: put it beside link:, on the same level"
            " (it applies to the recipient's links of either kind)"
        )
    return None


# --- per grant ------------------------------------------------------------------------------


def duration_text(seconds: int) -> str:
    """``seconds`` the way a manifest writes it: 9d, 36h, 90m, 45s."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Render = Callable[[tuple[str, PathKey], Callable[[str], _T]], _T | None]
Found = Any  # (value, where written), None when not set, anything else for a reported value


class KeyCache:
    """Loads each key source once per manifest: 10,000 recipients may share one key.

    With ``load=False`` no key is read: every source has no problem and no known algorithm
    (so the sha1-needs-RSA check is left out too). For commands that need the manifest's
    numbers, never its keys (``sharebatch policy``, usually run where the key is not); the
    source's syntax (one of file and env, a non-blank file name, a valid variable name) is
    still checked by ``RawKeySource``.
    """

    def __init__(
        self, folder: Path, environ: Mapping[str, str] | None = None, *, load: bool = True
    ) -> None:
        self.folder = folder
        self.environ = environ
        self.load = load
        # source -> (problem or None, the key's algorithm when it loads)
        self.seen: dict[KeySource, tuple[str | None, str | None]] = {}

    def source(self, raw: RawKeySource) -> KeySource:
        """The source as the signer will read it: a relative file made absolute, from the
        manifest's folder (cron starts runs in a home folder)."""
        if raw.file is not None:
            return KeySource(file=os.path.abspath(self.folder / raw.file))
        return KeySource(env=raw.env)

    def problem(self, source: KeySource) -> str | None:
        return self._load(source)[0]

    def algorithm(self, source: KeySource) -> str | None:
        """``rsa`` or ``ecdsa-p256`` for a key that loads, else None."""
        return self._load(source)[1]

    def _load(self, source: KeySource) -> tuple[str | None, str | None]:
        if not self.load:
            return None, None
        if source not in self.seen:
            try:
                self.seen[source] = (None, key_algorithm(load_private_key(source, self.environ)))
            except KeyProblem as exc:
                self.seen[source] = (str(exc), None)
        return self.seen[source]


def resolve_allow_ips(found: Found, link: object, issues: IssueCollector) -> tuple[str, ...] | None:
    """The grant's networks, or None when a problem was reported (now or before)."""
    if found is None:
        return ()
    if not isinstance(found, tuple):
        return None
    values, where = found
    networks = tuple(dict.fromkeys(values))
    # aws-cli's `cloudfront sign`: "CloudFront only supports IPv4 addresses and ranges" in
    # AWS:SourceIp; an IPv6 network there would make every link refuse every viewer.
    ipv6 = [n for n in networks if ":" in n]
    if link == "cloudfront" and ipv6:
        issues.at(
            where,
            f"allow_ips has the IPv6 network {ipv6[0]}, but a CloudFront policy's AWS:SourceIp"
            " takes IPv4 only (turn IPv6 off on the distribution for IP-limited links)",
        )
        return None
    if link == "cloudfront" and len(networks) > 1:
        issues.at(
            where,
            f"allow_ips lists {len(networks)} networks, but a CloudFront policy's AWS:SourceIp"
            " takes exactly one; give one CIDR that covers them, or split the recipient",
        )
        return None
    return networks


def check_expiry_for_s3(
    expiry: Found,
    issues: IssueCollector,
    now: datetime | None,
    *,
    link_at: PathKey | None = None,
    recipient: str | None = None,
) -> bool:
    """SigV4's 7 days for ``link: s3``; True when the expiry is within them (or unknown).

    The expiry is often inherited (``defaults.expires_in``) by hundreds of recipients of which
    one says ``link: s3``: the refusal names what made these links s3, ``link_at`` (where a
    ``link: s3`` was written, with the ``recipient``'s id when it is a recipient's own) or
    the default. Grants made s3 by one place share one message, reported once.
    """
    if not isinstance(expiry, tuple):
        return True
    (seconds, at), where = expiry
    if link_at:
        whose = f" for recipient {show(recipient)}" if recipient and "recipients" in link_at else ""
        kind = f"link: s3, written at {format_path(link_at)}{whose}"
    else:
        # Not the job's name: an inherited expiry would then be reported once per job.
        kind = "link: s3, the default: no link: is set"
    if seconds is not None and seconds > MAX_EXPIRES_IN:
        issues.at(
            where,
            f"{duration_text(seconds)} is longer than the 7-day limit for presigned URLs"
            f" ({kind}); only link: cloudfront links may live longer",
        )
        return False
    if at is not None and now is not None and (at - now).total_seconds() > MAX_EXPIRES_IN:
        issues.at(
            where,
            f"{iso(at)} is more than 7 days after the run ({iso(now)}); presigned URLs live at"
            f" most 7 days ({kind})",
        )
        return False
    return True


def resolve_cloudfront(
    found: Mapping[str, Found],
    link_at: PathKey,
    expiry: Found,
    now: datetime | None,
    render: Render[datetime],
    keys: KeyCache,
    issues: IssueCollector,
) -> CloudFrontLinks | None:
    """The grant's ``CloudFrontLinks`` (its link is cloudfront), or None after reporting why.

    ``found`` maps each block field to (value, where written), None when not set, or anything
    else for a value already reported; ``link_at`` is where ``link: cloudfront`` was written;
    ``expiry`` is ((seconds, at), where written) of the grant's expiry, checked against
    ``max_expires_in``.
    """
    if any(v is not None and not isinstance(v, tuple) for v in found.values()):
        return None
    given: dict[str, tuple[Any, PathKey]] = {k: v for k, v in found.items() if v is not None}
    missing = [name for name in REQUIRED if name not in given]
    if missing:
        where = max((v[1][:-1] for v in given.values()), key=len) if given else link_at
        fields = ", ".join(f"{n} (e.g. {_EXAMPLES[n]})" for n in missing)
        need = "needs a cloudfront: block with" if not given else "needs"
        issues.at(where, f"link: cloudfront {need} {fields}")
        return None
    complete = True
    raw_key, key_at = given["private_key"]
    source = keys.source(raw_key)
    problem = keys.problem(source)
    if problem is not None:
        issues.at(key_at, problem)
        complete = False
    hash_given = given.get("hash")
    if (
        hash_given is not None
        and hash_given[0] == "sha1"
        and keys.algorithm(source) == "ecdsa-p256"
    ):
        # CloudFront verifies ECDSA signatures over SHA-256 only (aws-cli's `cloudfront sign`).
        issues.at(
            hash_given[1], "hash: sha1 needs an RSA key; an ECDSA P-256 key signs with sha256"
        )
        complete = False
    max_expires_in, max_at = given["max_expires_in"]
    if isinstance(expiry, tuple):
        complete &= _within(expiry, max_expires_in, max_at, now, issues)
    not_before = None
    if "not_before" in given:
        value, where = given["not_before"]
        not_before = value if isinstance(value, datetime) else render((value, where), parse_moment)
        if not_before is None:
            return None
        complete &= _starts_in_time(not_before, where, expiry, now, issues)
    if not complete:
        return None
    return CloudFrontLinks(
        domain=given["domain"][0],
        key_pair_id=given["key_pair_id"][0],
        private_key=source,
        max_expires_in=max_expires_in,
        hash=given["hash"][0] if "hash" in given else "sha256",
        not_before=not_before,
        distribution_arn=given["distribution_arn"][0] if "distribution_arn" in given else None,
    )


def _within(
    expiry: tuple[tuple[int | None, datetime | None], PathKey],
    maximum: int,
    max_at: PathKey,
    now: datetime | None,
    issues: IssueCollector,
) -> bool:
    (seconds, at), where = expiry
    cap = f"max_expires_in {duration_text(maximum)} ({format_path(max_at)})"
    if seconds is not None and seconds > maximum:
        issues.at(
            where,
            f"{duration_text(seconds)} is longer than the cloudfront {cap}; raise the cap or"
            " shorten the links",
        )
        return False
    if at is not None and now is not None and at - now > timedelta(seconds=maximum):
        issues.at(
            where,
            f"{iso(at)} is more than {duration_text(maximum)} after the run ({iso(now)}), the"
            f" cloudfront {cap}",
        )
        return False
    return True


def _starts_in_time(
    not_before: datetime,
    where: PathKey,
    expiry: Found,
    now: datetime | None,
    issues: IssueCollector,
) -> bool:
    """A start at or after the links' end would make links that never work."""
    if not isinstance(expiry, tuple) or now is None:
        return True
    (seconds, at), _ = expiry
    end = at if at is not None else now + timedelta(seconds=seconds)
    if not_before < end:
        return True
    issues.at(
        where,
        f"not_before {iso(not_before)} is not before the links expire ({iso(end)}): they would"
        " never work; move it earlier or let the links live longer",
    )
    return False
