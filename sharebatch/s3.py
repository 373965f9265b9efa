"""The only module that talks to S3 (through aioboto3) or builds boto clients.

Private parts belong to it: ``_s3_preflight`` (the doctor's requests, mixed into
``S3Gateway``), ``_s3_links`` (checking a presigned link over plain HTTP) and
``_s3_fastlist`` (listing requests sent without botocore while all goes well).

It hands the rest of the program plain values: ``Credentials`` snapshots, pages of
``ObjectRef`` and a synchronous ``Presigner`` callable. Nothing outside this module sees a boto
response or a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aioboto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ._listparse import Page
from ._listparse import install as install_fast_list_parser
from ._s3_fastlist import FastLister, HandOver, direct_listing
from ._s3_links import probe_link as probe_link
from ._s3_preflight import PreflightCalls
from .audit import get_logger
from .errors import CredentialsError, SharebatchError
from .models import BucketTarget, Credentials, ObjectRef, PostSigner, Presigner
from .retry import RetryPolicy
from .sigv4 import SigV4Presigner, Unsupported

# S3 answers these when the credentials themselves are bad, whatever the bucket or prefix:
# carrying on with other prefixes would only repeat the failure.
_CREDENTIAL_ERRORS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
    }
)

_CLIENT_METHOD = {"GET": "get_object", "PUT": "put_object", "HEAD": "head_object"}

log = get_logger()


class S3ListingError(SharebatchError):
    """Listing one prefix failed; the pipeline records it and the other prefixes go on."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


def client_config(
    target: BucketTarget, max_connections: int, policy: RetryPolicy | None = None
) -> Config:
    """The one client configuration, shared by listing and presigning clients."""
    policy = policy or RetryPolicy()
    return Config(
        # botocore still presigns S3 with SigV2 in some regions unless told otherwise.
        signature_version="s3v4",
        s3={"addressing_style": target.addressing_style},
        max_pool_connections=max_connections,
        # botocore's "max_attempts" counts retries only; "total_max_attempts" counts every try.
        retries={"mode": "adaptive", "total_max_attempts": policy.attempts},
        connect_timeout=policy.connect_timeout,
        read_timeout=policy.read_timeout,
        # Default CRC checksums would be baked into presigned PUTs and break plain curl uploads.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


class S3Gateway(PreflightCalls):
    """An aioboto3 session with one client per bucket target, opened on first use.

    ``region`` and ``endpoint_url`` given here override the ones of every target (they come
    from the command line); otherwise the target's own apply, then the standard AWS chain
    (``AWS_REGION``, ``AWS_ENDPOINT_URL_S3``, the profile).
    """

    def __init__(
        self,
        *,
        profile: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_connections: int = 16,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry: RetryPolicy | None = None,
    ) -> None:
        # Read here, before anything is written: a bad SHAREBATCH_S3_* value is exit 2.
        self._retry = retry or RetryPolicy.from_env(os.environ)
        self._profile = profile
        self._region = region
        self._endpoint_url = endpoint_url
        self._max_connections = max_connections
        self._clock = clock  # the fast signer's; botocore reads its own
        self._direct = direct_listing(os.environ)
        self._listers: dict[BucketTarget, FastLister | None] = {}
        self._provider: Any = None
        try:
            self._session = aioboto3.Session(profile_name=profile)
            install_fast_list_parser(self._session._session)
        except BotoCoreError as exc:  # ProfileNotFound: its message names the profile
            raise CredentialsError(str(exc)) from None
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[BucketTarget, bool], Any] = {}
        self._regions: dict[BucketTarget, str] = {}

    async def __aenter__(self) -> S3Gateway:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            for lister in self._listers.values():
                if lister is not None:
                    await lister.close()
        finally:
            await self._stack.aclose()

    def effective(self, target: BucketTarget) -> BucketTarget:
        """The target after command-line overrides."""
        return BucketTarget(
            bucket=target.bucket,
            region=self._region or target.region,
            endpoint_url=self._endpoint_url or target.endpoint_url,
            addressing_style=target.addressing_style,
        )

    async def credentials(self) -> Credentials:
        """Resolve the signing credentials once, or fail with exit code 3."""
        try:
            found = await self._session.get_credentials()
            if found is None:
                raise CredentialsError(
                    "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                    "AWS_PROFILE or --profile, or run where an instance or container role "
                    "is available"
                )
            frozen = await found.get_frozen_credentials()
        except (BotoCoreError, RuntimeError) as exc:
            # botocore's messages name the profile or provider, never a key or token.
            raise CredentialsError(f"cannot load AWS credentials: {exc}") from None
        expiry = getattr(found, "_expiry_time", None)
        if isinstance(expiry, datetime):
            expiry = expiry.astimezone(UTC)
        return Credentials(
            access_key_id=frozen.access_key,
            secret_access_key=frozen.secret_key,
            session_token=frozen.token,
            expiry=expiry if isinstance(expiry, datetime) else None,
            method=str(getattr(found, "method", "unknown")),
        )

    def _config(self, target: BucketTarget, max_connections: int) -> Config:
        return client_config(target, max_connections, self._retry)

    async def _client(self, target: BucketTarget, *, first_try_spent: bool = False) -> Any:
        """The target's botocore client; with ``first_try_spent``, one that tries a request
        one time less (the direct lister's try was the first)."""
        key = (target, first_try_spent)
        if key not in self._clients:
            region = await self.region_of(target)
            policy = self._retry
            if first_try_spent:
                policy = replace(policy, attempts=policy.attempts - 1)
            self._clients[key] = await self._stack.enter_async_context(
                self._session.client(
                    "s3",
                    region_name=region,
                    endpoint_url=target.endpoint_url,
                    config=client_config(target, self._max_connections, policy),
                )
            )
        return self._clients[key]

    @property
    def default_region(self) -> str | None:
        """The AWS chain's region (``AWS_REGION``, the profile), used where a target has none."""
        region = self._session.region_name
        return str(region) if region else None

    async def region_of(self, target: BucketTarget) -> str:
        """The region to sign for: configured, or asked of S3 (the bucket's own region)."""
        if target.region:
            return target.region
        configured = self._session.region_name
        if configured:
            return str(configured)
        if target not in self._regions:
            self._regions[target] = await self._discover_region(target)
        return self._regions[target]

    async def _discover_region(self, target: BucketTarget) -> str:
        # HeadBucket answers with the bucket's region in a header even on a redirect or 403.
        probe_config = client_config(target, 1, self._retry)
        async with self._session.client(
            "s3", region_name="us-east-1", endpoint_url=target.endpoint_url, config=probe_config
        ) as probe:
            try:
                response = await probe.head_bucket(Bucket=target.bucket)
                headers = response["ResponseMetadata"]["HTTPHeaders"]
            except ClientError as exc:
                headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            except BotoCoreError:
                headers = {}
        return str(headers.get("x-amz-bucket-region") or "us-east-1")

    async def list_pages(
        self, target: BucketTarget, prefix: str, *, slot: asyncio.Semaphore | None = None
    ) -> AsyncIterator[list[ObjectRef]]:
        """Yield every page of objects under ``prefix``, skipping folder markers.

        Each request holds ``slot`` (when given) while it waits for S3's answer.
        """
        token: str | None = None
        while True:
            page = await self._page(target, prefix, None, token, slot)
            yield page.objects
            if page.next_token is None:
                return
            if page.next_token == token:
                # botocore's paginator stops here too: the same token again would loop forever.
                raise S3ListingError("RepeatedToken", "S3 sent the same continuation token twice")
            token = page.next_token

    async def probe_level(
        self, target: BucketTarget, prefix: str, *, slot: asyncio.Semaphore | None = None
    ) -> Level:
        """One delimiter request: the objects right under ``prefix`` and its sub-folders.

        ``complete`` says whether that one page held the whole level; only then can the
        caller list the sub-folders in parallel instead of the prefix as a whole.
        """
        page = await self._page(target, prefix, "/", None, slot)
        return Level(objects=page.objects, folders=page.folders, complete=page.next_token is None)

    async def _page(
        self,
        target: BucketTarget,
        prefix: str,
        delimiter: str | None,
        token: str | None,
        slot: asyncio.Semaphore | None,
    ) -> Page:
        lister = await self._lister(target)
        spent = refused = False
        if lister is not None:
            try:
                found = await lister.page(target.bucket, prefix, delimiter, token, slot)
            except HandOver as handed:
                spent, refused = True, handed.refused
            else:
                if found is not None:
                    return found
        params = {"Bucket": target.bucket, "Prefix": prefix}
        if delimiter is not None:
            params["Delimiter"] = delimiter
        if token is not None:
            params["ContinuationToken"] = token
        with _listing_errors():
            client = await self._client(target, first_try_spent=spent)
            async with slot or contextlib.nullcontext():
                answer = await client.list_objects_v2(**params)
        if refused and lister is not None:
            # Let in where the direct request was refused: the fault was ours, not S3's.
            lister.switch_off(target.bucket, "refused where botocore was let in")
        return Page(
            objects=_objects(target.bucket, answer),
            folders=[str(p["Prefix"]) for p in answer.get("CommonPrefixes", ())],
            next_token=answer.get("NextContinuationToken") if answer.get("IsTruncated") else None,
        )

    async def _lister(self, target: BucketTarget) -> FastLister | None:
        if target not in self._listers:
            lister = None
            reason = "switched off (SHAREBATCH_S3_DIRECT_LISTING=off)"
            if self._retry.attempts == 1:
                reason = "one attempt per request (SHAREBATCH_S3_ATTEMPTS=1): botocore's"
            elif self._direct:
                try:
                    lister = FastLister(
                        target,
                        region=await self.region_of(target),
                        credentials=self._frozen_credentials,
                        max_connections=self._max_connections,
                        policy=self._retry,
                        profile_config=self._session._session.get_scoped_config(),
                        ca_bundle=self._session._session.get_config_variable("ca_bundle"),
                        clock=self._clock,
                    )
                except Unsupported as exc:
                    reason = str(exc)
            log.info(
                "lister_selected",
                bucket=target.bucket,
                lister="direct" if lister else "botocore",
                **({} if lister else {"reason": reason}),
            )
            self._listers[target] = lister
        return self._listers[target]

    async def _frozen_credentials(self) -> Credentials | None:
        """The listing credentials now, from the same provider as botocore's clients."""
        try:
            if self._provider is None:
                self._provider = await self._session.get_credentials()
            if self._provider is None:
                return None
            frozen = await self._provider.get_frozen_credentials()
        except (BotoCoreError, RuntimeError):
            return None  # botocore's own request will say what went wrong
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    async def presigner(self, target: BucketTarget, credentials: Credentials) -> Presigner:
        """A synchronous presigner for ``target``: signing is CPU work with no network call.

        The fast signer where it is proven identical to botocore, botocore itself otherwise
        (never a guess). Both sign with the run's frozen credentials, so every link of a run
        is signed by the same key whatever the credential provider does meanwhile.
        """
        region = await self.region_of(target)
        session = botocore.session.Session(profile=self._profile)
        try:
            fast = SigV4Presigner(
                credentials,
                region=region,
                endpoint_url=target.endpoint_url,
                addressing_style=target.addressing_style,
                clock=self._clock,
                environ=os.environ,
                profile_config=session.get_scoped_config(),
            )
        except Unsupported as exc:
            log.info("signer_selected", bucket=target.bucket, signer="botocore", reason=str(exc))
        else:
            log.info("signer_selected", bucket=target.bucket, signer="sigv4")
            slow: list[Presigner] = []

            def presign(
                method: str, bucket: str, key: str, expires_in: int, params: Mapping[str, str]
            ) -> str:
                try:
                    return fast(method, bucket, key, expires_in, params)
                except Unsupported:
                    # A rare key or parameter outside what the fast signer was proven on.
                    if not slow:
                        slow.append(self._botocore_presigner(session, target, region, credentials))
                    return slow[0](method, bucket, key, expires_in, params)

            return presign
        return self._botocore_presigner(session, target, region, credentials)

    @staticmethod
    def _botocore_presigner(
        session: Any, target: BucketTarget, region: str, credentials: Credentials
    ) -> Presigner:
        client = _signing_client(session, target, region, credentials)

        def presign(
            method: str, bucket: str, key: str, expires_in: int, params: Mapping[str, str]
        ) -> str:
            return str(
                client.generate_presigned_url(
                    _CLIENT_METHOD[method],
                    Params={"Bucket": bucket, "Key": key, **params},
                    ExpiresIn=expires_in,
                    HttpMethod=method,
                )
            )

        return presign

    async def post_signer(self, target: BucketTarget, credentials: Credentials) -> PostSigner:
        """A synchronous POST-policy signer for ``target``: botocore's, SigV4, frozen credentials.

        botocore adds the conditions on the bucket, the key (``starts-with`` when the key ends
        in ``${filename}``) and its own ``x-amz-*`` fields; the caller's ``conditions`` must
        cover every other field it puts in the form, or S3 refuses the upload.
        """
        region = await self.region_of(target)
        session = botocore.session.Session(profile=self._profile)
        client = _signing_client(session, target, region, credentials)

        def sign_post(
            bucket: str,
            key: str,
            fields: Mapping[str, str],
            conditions: Sequence[object],
            expires_in: int,
        ) -> tuple[str, dict[str, str]]:
            found = client.generate_presigned_post(
                bucket, key, Fields=dict(fields), Conditions=list(conditions), ExpiresIn=expires_in
            )
            return str(found["url"]), {str(k): str(v) for k, v in found["fields"].items()}

        return sign_post


@dataclass(frozen=True)
class Level:
    objects: list[ObjectRef]
    folders: list[str]
    complete: bool


@contextlib.contextmanager
def _listing_errors() -> Iterator[None]:
    """Map boto errors to ours: credential problems end the run, others fail the prefix."""
    try:
        yield
    except NoCredentialsError:
        raise CredentialsError("no AWS credentials found") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "ClientError"))
        message = str(error.get("Message", ""))
        if code in _CREDENTIAL_ERRORS:
            raise CredentialsError(f"S3 rejected the credentials: {code}") from None
        raise S3ListingError(code, message) from None
    except BotoCoreError as exc:
        raise S3ListingError(type(exc).__name__, str(exc)) from None


def _objects(bucket: str, page: Mapping[str, Any]) -> list[ObjectRef]:
    return [
        _object_ref(bucket, item)
        for item in page.get("Contents", ())
        # Zero-byte keys ending in "/" are the console's "folders", never files to share.
        if not (item["Key"].endswith("/") and item["Size"] == 0)
    ]


def _signing_client(
    session: Any, target: BucketTarget, region: str, credentials: Credentials
) -> Any:
    """A botocore client that only signs, with the run's frozen credentials."""
    return session.create_client(
        "s3",
        region_name=region,
        endpoint_url=target.endpoint_url,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        config=client_config(target, 1),
    )


def _object_ref(bucket: str, item: Mapping[str, Any]) -> ObjectRef:
    modified = item["LastModified"]
    return ObjectRef(
        bucket=bucket,
        key=str(item["Key"]),
        size=int(item["Size"]),
        etag=str(item.get("ETag", "")).strip('"'),
        last_modified=modified.astimezone(UTC),
    )
