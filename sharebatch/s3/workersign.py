"""The fast presigner rebuilt inside a signing worker process, without botocore.

A worker (``run/worker``) signs with the very ``SigV4Presigner`` the parent would use. The
parent checks that the fast signer applies to a target (``presigners.Signers.worker_spec``) and
sends this module's ``FastSpec`` and the run's frozen credentials down the worker's pipe: they
are never logged, never written to disk. Importing this module imports no boto: a worker stays
small. Only a key the fast signer does not reproduce (``Unsupported``, rare) makes a worker
import botocore, once, to sign that key as the parent would.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from sharebatch.models import BucketTarget, Credentials, Presigner
from sharebatch.s3.sigv4 import SigV4Presigner, Unsupported


@dataclass(frozen=True, slots=True)
class FastSpec:
    """What a worker needs to rebuild a target's presigner: no secret in it."""

    target: BucketTarget
    region: str
    profile: str | None


def worker_presigner(spec: FastSpec, credentials: Credentials) -> Presigner:
    """``presigners.Signers.presigner``'s fast path, for a target the parent found it fits."""
    target = spec.target
    # The parent already refused the fast signer where the environment or the profile steer
    # botocore (``worker_spec``); the worker inherits that environment.
    fast = SigV4Presigner(
        credentials,
        region=spec.region,
        endpoint_url=target.endpoint_url,
        addressing_style=target.addressing_style,
        environ=os.environ,
        profile_config={},
    )
    slow: list[Presigner] = []

    def presign(
        method: str, bucket: str, key: str, expires_in: int, params: Mapping[str, str]
    ) -> str:
        try:
            return fast(method, bucket, key, expires_in, params)
        except Unsupported:
            if not slow:
                import botocore.session  # the rare key only, see above

                from sharebatch.s3.presigners import botocore_presigner

                session = botocore.session.Session(profile=spec.profile)
                slow.append(botocore_presigner(session, target, spec.region, credentials))
            return slow[0](method, bucket, key, expires_in, params)

    return presign
