"""What the S3 and vault stores share about talking to AWS: client set-up (boto3's standard
credential/region/endpoint chain only), retry settings, and turning botocore failures into one-line
ZgErrors."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import http.client
import logging
import os
import time
from typing import Optional

from ..errors import NotFoundError, StoreError, UsageError, ZgError
from .base import Check

AUTH_CODES = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException",
    "ExpiredToken", "ExpiredTokenException", "InvalidToken", "InvalidClientTokenId",
    "UnrecognizedClientException", "MissingAuthenticationTokenException", "AllAccessDisabled",
    "InvalidSignatureException", "403", "Forbidden",
}
TRANSIENT_CODES = {
    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
    "ServiceUnavailableException", "SlowDown", "Throttling", "ThrottlingException",
    "RequestLimitExceeded", "BadDigest", "500", "502", "503", "504",
}
NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound", "ResourceNotFoundException", "NoSuchUpload"}

# Seconds, the defaults of the connect_timeout and read_timeout destination settings (a stalled
# connection is retried after the read timeout).
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
POOL = 64  # more than any sensible --jobs; a full pool only logs warnings
LOG = logging.getLogger("zfsglacier")


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def make_client(service: str, *, profile: Optional[str] = None, region: Optional[str] = None,
                endpoint: Optional[str] = None, retry_mode: str = "standard", max_attempts: int = 8, connect_attempts: int = 3,
                connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT):
    """A boto3 client from the standard chain (AWS_PROFILE, AWS_ENDPOINT_URL[_S3|_GLACIER],
    ~/.aws/config...), with bounded retries and timeouts; ``endpoint`` (the destination's own)
    wins over the chain's."""
    import boto3
    import botocore.config
    import botocore.exceptions as bx

    if endpoint is not None and not str(endpoint).startswith(("http://", "https://")):
        raise UsageError(f"endpoint {endpoint!r}: use http://host[:port] or https://host[:port]")
    if retry_mode not in ("standard", "adaptive"):
        raise UsageError(f"retry_mode {retry_mode!r}: use standard or adaptive")
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
        config = botocore.config.Config(
            retries={"mode": retry_mode, "total_max_attempts": int(max_attempts)},
            connect_timeout=float(connect_timeout), read_timeout=float(read_timeout),
            max_pool_connections=POOL, user_agent_extra="zfsglacier",
            **(_s3_settings(session) if service == "s3" else {}))
        client = session.client(service, config=config, endpoint_url=endpoint)
    except bx.ProfileNotFound as exc:
        raise StoreError(f"AWS profile not found: {exc.kwargs.get('profile', profile)}") from None
    except bx.NoRegionError:
        raise StoreError("no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION), a "
                         "profile region, or region in the destination") from None
    except bx.BotoCoreError as exc:
        raise StoreError(f"AWS {service} client: {exc}") from None
    name = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register_first(f"needs-retry.{name}", _ConnectRetries(int(connect_attempts)))
    return client


class _ConnectRetries:
    """An endpoint that cannot be connected to (refused, unreachable, no answer to the connect) is
    tried ``attempts`` times, 1, 2, 4... s apart, each retry announced on the ``zfsglacier``
    logger (shown on a terminal), then given up: botocore's standard mode would try it for minutes
    in silence, and the per-part retries on top multiplied that.  Every other retry (throttling,
    a 500, a cut body) stays botocore's, bounded by ``max_attempts``.  Registered first, so its
    answer is the one botocore uses; raising stops the retries."""

    def __init__(self, attempts):
        self.attempts = max(1, attempts)

    def __call__(self, attempts=1, caught_exception=None, request_dict=None, **_):
        import botocore.exceptions as bx

        if not isinstance(caught_exception, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
            return None  # not ours: botocore's standard policy decides
        if attempts >= self.attempts:
            raise caught_exception
        delay = float(2 ** (attempts - 1))
        url = (request_dict or {}).get("url", "the endpoint")
        LOG.warning("cannot connect to %s; retrying (%d/%d) in %.0f s", url.split("?")[0], attempts,
                    self.attempts - 1, delay)
        return delay


def _s3_settings(session) -> dict:
    """Each byte sent is hashed once for the check the server makes, and not again by botocore.

    - S3 requests carry a signed ``x-amz-checksum-sha256`` header (AWS) or ``Content-MD5`` (a
      server without flexible checksums, RGW 16.2) that the server checks against the body, so
      the body need not be hashed a second time for the signature: botocore already skips that
      over HTTPS, and this skips it over plain HTTP too (an endpoint on a LAN, moto).
    - botocore (1.36 and later) adds a CRC32 of its own to every upload that names no
      ``x-amz-checksum-*`` header, so to every part that carries only ``Content-MD5``; measured on
      RGW (which ignores it): 0.5 s of a 2.5 s upload of 213 MB went to reading the body in
      pieces for it.  ``when_required`` keeps it for the calls S3 requires a checksum on.
    The user's own ``payload_signing_enabled`` / ``request_checksum_calculation`` (AWS config
    file or environment) still win."""
    scoped = session._session.get_scoped_config()
    settings = {}
    if "payload_signing_enabled" not in (scoped.get("s3") or {}):
        settings["s3"] = {"payload_signing_enabled": False}
    if "request_checksum_calculation" not in scoped and not os.environ.get("AWS_REQUEST_CHECKSUM_CALCULATION"):
        settings["request_checksum_calculation"] = "when_required"
    return settings


def error_code(exc: BaseException) -> str:
    resp = getattr(exc, "response", None) or {}
    return str(resp.get("Error", {}).get("Code", ""))


def is_transient(exc: BaseException) -> bool:
    """Worth trying the whole part again: dropped connections, cut bodies, throttling."""
    import botocore.exceptions as bx

    if isinstance(exc, bx.ClientError):
        return error_code(exc) in TRANSIENT_CODES
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
        return False  # never connected: _ConnectRetries has already tried again
    transient = (bx.ConnectionError, bx.HTTPClientError, bx.IncompleteReadError,
                 bx.ResponseStreamingError, ConnectionError, TimeoutError)
    try:
        import urllib3.exceptions as ux
        transient = transient + (ux.HTTPError,)
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, transient)


def translate(exc: BaseException, what: str, *, not_found: Optional[str] = None) -> ZgError:
    """One-line ZgError for a botocore failure during ``what`` (e.g. "s3://b/p: upload part 3")."""
    import botocore.exceptions as bx

    if isinstance(exc, ZgError):
        return exc
    if isinstance(exc, bx.ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message") or ""
        if code in AUTH_CODES:
            detail = f" ({message})" if message and message != code else ""
            return StoreError(f"{what}: access denied: {code}{detail}; check the AWS "
                              f"credentials (AWS_PROFILE, keys) and the permissions", code=code)
        if code == "NoSuchBucket":
            name = exc.response.get("Error", {}).get("BucketName")
            return StoreError(f"{what}: bucket {name or ''} does not exist".replace("  ", " "), code=code)
        if code in NOT_FOUND_CODES and not_found:
            return NotFoundError(not_found)
        return StoreError(f"{what}: {code}: {message}".rstrip(": "), code=code)
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return StoreError(f"{what}: no usable AWS credentials: set AWS_PROFILE, or "
                          f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(exc, bx.NoRegionError):
        return StoreError(f"{what}: no AWS region configured (AWS_REGION or a profile region)")
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
        return StoreError(f"{what}: {exc}: is the endpoint right, and up? (gave up after retries)")
    if isinstance(exc, (bx.BotoCoreError, ConnectionError, TimeoutError)):
        return StoreError(f"{what}: {exc} (gave up after retries)")
    return StoreError(f"{what}: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def aws_errors(what: str, *, not_found: Optional[str] = None):
    """Run AWS calls, raising their failures as one-line ZgErrors."""
    import botocore.exceptions as bx

    try:
        yield
    except (bx.BotoCoreError, bx.ClientError, ConnectionError, TimeoutError) as exc:
        raise translate(exc, what, not_found=not_found) from None


def call(fn, what: str, *, not_found: Optional[str] = None, retry_drops: bool = False, **kw):
    """``fn(**kw)`` with errors translated; ``retry_drops`` adds the per-part retry on top of
    botocore's own (for whole parts whose body may be cut after the call returned)."""
    from ..plumbing.parts import retry_call

    with aws_errors(what, not_found=not_found):
        if retry_drops:
            return retry_call(lambda: fn(**kw), transient=is_transient)
        return fn(**kw)


def read_body_into(resp: dict, view: memoryview) -> int:
    """Fill ``view`` from a GET's body; return how many bytes the body has, ``len(view) + 1``
    standing for "more" (a server that ignored Range, sending the whole object: none of it is
    read).  A body cut short raises ConnectionError or botocore's IncompleteReadError, both
    transient: the range is read again.

    The bytes go from the socket straight into ``view`` (http.client's ``readinto``, under
    urllib3): measured on RGW, 213 MB in 16 MiB ranges took 0.10 CPU-s this way and 0.20 with
    ``body.read()`` (a new 16 MiB ``bytes`` for every range, and urllib3's copy into it).  Where
    the layers below are not the ones this knows (another urllib3; a chunked body),
    ``readinto`` in 1 MiB pieces does the same more slowly."""
    body, want = resp["Body"], len(view)
    length = resp.get("ContentLength")
    if length is not None and length != want:
        return min(length, want + 1)
    raw = getattr(body, "_raw_stream", None)  # urllib3's response
    fp = getattr(raw, "_fp", None)  # http.client's, nothing of the body read yet
    if (isinstance(fp, http.client.HTTPResponse) and not fp.chunked and fp.length == want
            and callable(getattr(raw, "release_conn", None))):
        pos = 0
        while pos < want:
            n = fp.readinto(view[pos:])
            if not n:
                raise ConnectionError(f"the connection closed after {pos} of {want} bytes")
            pos += n
        raw.release_conn()  # the whole body is read: the connection serves the next request
        return pos
    pos = 0
    while pos < want:
        n = body.readinto(view[pos:pos + (1 << 20)])
        if not n:
            return pos
        pos += n
    return pos + len(body.read(1))


def clock_check(resp: dict) -> Check:
    """The server's Date header against this host's clock: SigV4 refuses 15 minutes of skew."""
    date = (resp.get("ResponseMetadata", {}).get("HTTPHeaders") or {}).get("date")
    parsed = email.utils.parsedate_tz(date) if date else None
    if parsed is None:
        return Check("clock", "info", "the server sent no Date to compare with")
    skew = time.time() - email.utils.mktime_tz(parsed)
    status = "ok" if abs(skew) < 60 else "warn" if abs(skew) < 900 else "fail"
    words = f"this host's clock is {abs(skew):.0f} s {'ahead of' if skew >= 0 else 'behind'} the server's"
    return Check("clock", status, words + ("" if status == "ok" else ": set it (NTP); AWS refuses requests "
                                                                   "15 minutes off"))
