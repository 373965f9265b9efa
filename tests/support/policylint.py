"""cfn-lint (AWS's CloudFormation linter) on a bucket policy document: its IAM rules validate
an ``AWS::S3::BucketPolicy``'s ``PolicyDocument`` (effects, condition operators, shape)."""

from __future__ import annotations

import json
from typing import Any

from cfnlint.api import lint  # type: ignore[import-untyped]


def policy_problems(document: dict[str, Any], bucket: str = "acme-reports") -> list[str]:
    """cfn-lint's findings for ``document`` as the policy of ``bucket``, one line each."""
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Policy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {"Bucket": bucket, "PolicyDocument": document},
            }
        },
    }
    return [f"{m.rule.id}: {m.message}" for m in lint(json.dumps(template))]
