"""The AWS environment every benchmark runs in, set before botocore or sharebatch load.

botocore and our presigner read AWS_* variables and config files: a benchmark measures the
plain configuration, never whatever the developer's profile says.
"""

from __future__ import annotations

import os


def seal(**extra: str) -> None:
    """Drop every AWS_* variable, point config files at nothing, then set ``extra``."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        **extra,
    )
