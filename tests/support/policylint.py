"""The bucket-policy linter of the guardrail tests: cfn-lint plus a check of what it leaves out.

cfn-lint (AWS's CloudFormation linter) validates an ``AWS::S3::BucketPolicy``'s
``PolicyDocument`` against its IAM schema: the document's shape, ``Effect``, the condition
*operators* (a misspelt ``NumericGreaterThn`` is an error) and the action names (``s3:GetObjekt``
is a warning, W3037). It does not look inside a condition: a misspelt condition *key*
(``s3:signatureAgee``, which S3 ignores, silently disabling the age guardrail), a non-numeric
age, an ``aws:SourceIp`` that is no network, a ``Bool`` that is not true/false, or a resource
ARN of another service all pass it.

So ``policy_problems`` adds ``condition_problems``: every condition key must be one of a fixed
list (``KNOWN_CONDITIONS``), spelt as AWS spells it, used with an operator we mean for it, and
holding values of its kind. The keys and values come from AWS's own lists, not from the code
under test: the Service Authorization Reference, "Condition keys for Amazon S3"
(``s3:authType``: REST-HEADER, REST-QUERY-STRING, POST; ``s3:signatureAge``: milliseconds;
``s3:signatureversion``: AWS for SigV2, AWS4-HMAC-SHA256 for SigV4) and IAM's global
condition keys (``aws:SecureTransport``, ``aws:SourceIp``, ``aws:SourceArn``, which the
CloudFront OAC documentation writes ``AWS:SourceArn``). Every ``Resource`` must be an S3
ARN of the bucket. What neither checks is meaning (whether a statement denies the right
requests): the unit tests of each statement and the live judge's properties do that.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

from cfnlint.api import lint  # type: ignore[import-untyped]


def _integer(value: object) -> bool:
    return not isinstance(value, bool) and bool(re.fullmatch(r"[0-9]+", str(value)))


def _network(value: object) -> bool:
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return False
    return True


def _distribution(value: object) -> bool:
    return bool(
        re.fullmatch(r"arn:aws(-[a-z]+)*:cloudfront::[0-9]{12}:distribution/[A-Z0-9]+", str(value))
    )


KNOWN_CONDITIONS: dict[str, tuple[frozenset[str], Callable[[object], bool]]] = {
    "s3:authType": (
        frozenset({"StringEquals"}),
        lambda v: v in ("REST-HEADER", "REST-QUERY-STRING", "POST"),
    ),
    "s3:signatureAge": (frozenset({"NumericGreaterThan"}), _integer),
    "s3:signatureversion": (
        frozenset({"StringEquals", "StringNotEquals", "Null"}),
        lambda v: v in ("AWS", "AWS4-HMAC-SHA256", "true", "false"),
    ),
    "aws:SecureTransport": (frozenset({"Bool"}), lambda v: v in ("true", "false")),
    "aws:SourceIp": (frozenset({"IpAddress", "NotIpAddress"}), _network),
    "AWS:SourceArn": (frozenset({"StringEquals", "ArnEquals", "ArnLike"}), _distribution),
}
"""Condition key -> (the operators our statements may use with it, a check of each value)."""


def condition_problems(document: dict[str, Any], bucket: str = "acme-reports") -> list[str]:
    """What cfn-lint leaves out: unknown or misspelt condition keys, a key under an operator
    not meant for it, values not of the key's kind, resources that are not the bucket's."""
    problems: list[str] = []
    arn = re.compile(rf"arn:aws(-[a-z]+)*:s3:::{re.escape(bucket)}(/.*)?")
    for number, statement in enumerate(document.get("Statement", [])):
        where = f"statement {number} ({statement.get('Sid', 'no Sid')})"
        resources = statement.get("Resource", [])
        for resource in resources if isinstance(resources, list) else [resources]:
            if not arn.fullmatch(str(resource)):
                problems.append(f"{where}: Resource {resource!r} is not an S3 ARN of {bucket}")
        for operator, pairs in statement.get("Condition", {}).items():
            for key, values in pairs.items():
                known = KNOWN_CONDITIONS.get(key)
                if known is None:
                    problems.append(f"{where}: unknown condition key {key!r}")
                    continue
                operators, valid = known
                if operator not in operators:
                    problems.append(f"{where}: {key} under {operator}, not {sorted(operators)}")
                for value in values if isinstance(values, list) else [values]:
                    if not valid(value):
                        problems.append(f"{where}: {key} value {value!r} is not of its kind")
    return problems


def policy_problems(document: dict[str, Any], bucket: str = "acme-reports") -> list[str]:
    """cfn-lint's findings for ``document`` as the policy of ``bucket``, then
    ``condition_problems``, one line each."""
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Policy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {"Bucket": bucket, "PolicyDocument": document},
            }
        },
    }
    found = [f"{m.rule.id}: {m.message}" for m in lint(json.dumps(template))]
    return found + condition_problems(document, bucket)
