"""``s3://bucket/prefix``: one object ``prefix/<id>.zg`` per archive, in a chosen storage class.

Uploads: a stream of at most one part is one PutObject with its SHA-256; longer streams are a
multipart upload with a SHA-256 per part (parts.s3_plan sizes).  ``commit`` compares the object's
checksum as S3 reports it (composite SHA-256 of the parts, or else the MD5-based ETag) with the
local one; a mismatch deletes the object and raises IntegrityError.  User metadata is refused above
S3's 2 KiB.  Resume finds the interrupted multipart upload (ListMultipartUploads) whose part 1 is
the input's start and keeps every listed part whose checksum (ChecksumSHA256, else the MD5 ETag)
matches the input.

Reads: each part is fetched as a byte range and checked against the part's SHA-256 from
GetObjectAttributes (AWS), or else its MD5 ETag from HEAD ?partNumber=N (moto, which ignores
partNumber on GET and lists no part checksums); the whole object's checksum is checked before
the last range is delivered.  GLACIER and DEEP_ARCHIVE objects must be restored first
(RestorePendingError says what to run); GLACIER_IR and STANDARD* read at once.

S3-compatible servers lack parts of this, and each lack is detected, never guessed from a name
(measured on Ceph RGW 16.2, Debian bookworm):
- GetObjectAttributes is ignored: RGW answers ``GET ?attributes`` with the whole object, which
  botocore took for a broken XML reply and fetched 8 times (132 s, 4.6 GB for 512 MB).  Its answer
  is looked at before its body is read: anything but XML is closed unread, never retried, and the
  server is taken to have no part listing.
- ``HEAD ?partNumber=N`` is ignored (the whole object's length comes back): then the layout is
  zfsglacier's own: the plan recorded in the object's ``zg-parts`` metadata at upload, checked by
  the MD5-of-MD5s ETag, or the whole is checked against the SHA-256 recorded at upload (the
  ``sha256`` the caller passes from its catalog).  With neither, the read is refused, naming what
  the server lacks.
- ``x-amz-checksum-sha256`` is ignored (a wrong value is stored with 200) and no composite checksum
  is kept: where CreateMultipartUpload does not acknowledge SHA256, each part carries Content-MD5,
  which RGW does check (BadDigest, resent), and the MD5 ETags are compared after.
- RestoreObject is refused (501 NotImplemented, or 400 InvalidArgument where RGW takes ``POST
  ?restore`` for a form upload) while GET serves the cold class at once: a ranged one-byte GET
  tells the two apart, and such an object is read without a thaw.

Object Lock (``object_lock`` governance|compliance, ``lock_days``): every object written carries a
retain-until ``lock_days`` ahead, and the bucket must have Object Lock enabled (asked once, before
any byte is sent).  What the server kept is read back, never assumed: both moto and RGW 16.2
accept the lock headers on CreateMultipartUpload and drop them (the completed object is
unlocked), and RGW accepts them on a bucket without Object Lock; so after every upload the HEAD
that verifies the bytes also checks the lock, a missing or short one is set with
PutObjectRetention and checked again, and an object still not locked is deleted and the upload
fails.  A multipart archive is therefore unlocked for the seconds between complete and that call.
``retain`` only ever extends.  ``delete`` asks HEAD first: a lock that still holds is RetainedError
with its date (the server would refuse anyway: AccessDenied), and a versioned object with lock
information is deleted by its version (without it S3 adds a delete marker, the bytes stay billed
and the archive merely looks gone).

Least privilege (s3_policy, ``zg-doctor --policy``): every upload is sent with ``If-None-Match:
*`` (a 412 is a key that exists: a retry whose first try got through, confirmed by the usual
check, or an object that is not ours, which is never deleted); the VersionId the upload's
answer names is recorded (``ArchiveInfo.version``) and every read of a catalog's archive names
it, so that what is written over the key later (RGW takes such a write even with If-None-Match
in a versioned bucket) is never what a restore reads.  A credential that may not HEAD (backup,
prune) is answered by ``_listed``: RGW, and AWS without s3:GetObject, answer HEAD 403.
"""

from __future__ import annotations

import base64
import calendar
import datetime
import email.utils
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Iterator, Optional

from ..plumbing.concurrency import InOrder, parallel_map
from ..errors import IntegrityError, NotFoundError, RestorePendingError, RetainedError, StoreError, UsageError
from ..plumbing.parts import (MAX_PARTS, S3_MAX_PART, S3_MIN_PART, MiB, OrderedReader, Part, PartBuffers, PartDone,
                              PartPlan, retry_call, s3_plan)
from . import _aws, s3_policy
from ._aws import aws_errors, b64, call, error_code
from .base import (THAW_WAIT, ArchiveInfo, Check, Properties, ExistingPart, IncompleteUpload, Store, ThawStatus,
                   UploadSession, check_id, check_tier, is_host, metadata_size, new_archive_id, pending,
                   refuse_large_metadata)

STORAGE_CLASSES = ("DEEP_ARCHIVE", "GLACIER", "GLACIER_IR", "STANDARD_IA", "STANDARD")
COLD = {"GLACIER", "DEEP_ARCHIVE"}
METADATA_LIMIT = 2048
READ_RANGE = 16 * MiB  # range size for objects stored in one piece
SUFFIX = ".zg"
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
PLAN_KEY = "zg-parts"  # object metadata: the part plan of a multipart upload (first/grow_after/grow_every/cap)
ATTRIBUTES_LIMIT = 8 * MiB  # a GetObjectAttributes answer larger than this is not one
_KMS = ("aws:kms", "aws:kms:dsse")
_READ_DENIED = {"403", "Forbidden", "AccessDenied"}  # HEAD answers 403 with no body: no code of its own
LOCK_MODES = ("governance", "compliance")
DAY = 86400


def _version(version: Optional[str]) -> dict:
    """The VersionId argument of a call on one recorded version (none: the current one)."""
    return {"VersionId": version} if version and version != "null" else {}


def _utc(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


def when(ts: float) -> str:
    """A lock date as the messages print it."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _etag(value: Optional[str]) -> str:
    return (value or "").strip('"')


def _plain_md5(resp: dict) -> Optional[str]:
    """The ETag when it is the MD5 of the bytes (single PUT or one part, not KMS-encrypted)."""
    etag = _etag(resp.get("ETag"))
    if _MD5_ETAG.match(etag) and resp.get("ServerSideEncryption") not in _KMS:
        return etag
    return None


def _strip_count(checksum: Optional[str]) -> Optional[str]:
    """S3 writes a composite checksum as ``<b64>-<parts>``; keep the digest part."""
    if not checksum:
        return None
    return checksum.rsplit("-", 1)[0] if re.search(r"-\d+$", checksum) else checksum


def parse_restore(header: Optional[str]) -> tuple[str, Optional[float]]:
    """``Restore`` header -> (state, expiry epoch): frozen, thawing, or thawed."""
    if not header:
        return "frozen", None
    if 'ongoing-request="true"' in header:
        return "thawing", None
    m = re.search(r'expiry-date="([^"]+)"', header)
    expires = None
    if m:
        parsed = email.utils.parsedate(m.group(1))
        expires = float(calendar.timegm(parsed)) if parsed else None
    return "thawed", expires


@dataclass
class _Range:
    number: int
    offset: int
    size: int
    sha256: Optional[bytes] = None  # expected, when S3 lists part checksums
    md5: Optional[str] = None  # expected, when the part's ETag is its MD5


class S3Session(UploadSession):
    def __init__(self, store: "S3Store", archive_id: str, metadata: dict, plan: PartPlan,
                 upload_id: Optional[str] = None, existing: Optional[dict] = None):
        self.store = store
        self.id = archive_id
        self.key = store.key(archive_id)
        self.metadata = metadata
        self.plan = plan
        self.upload_id = upload_id
        self.existing = existing or {}
        self.completed = False  # object exists: a failed commit must delete it
        # S3 acknowledged ChecksumAlgorithm=SHA256 at the start: it will report the composite
        # SHA-256 of the stored parts, which commit compares, so parts need no MD5 of their own.
        self.composite_promised = False
        self.lock = store.object_lock is not None  # the object gets the destination's Object Lock
        self.preexisting = False  # If-None-Match refused: the key holds an object already
        self.reported = None  # the composite SHA-256 CompleteMultipartUpload answered
        self.version = None  # the VersionId the upload's answer named (a versioned bucket)
        self.lock_date: Optional[float] = None  # the retain-until the upload's headers asked for
        self.c = store.client

    def _what(self, action: str) -> str:
        return f"{self.store.url}: {action} {self.id}"

    @property
    def wants_part_sha256(self) -> bool:
        """A server that keeps SHA-256 part checksums (it said SHA256 at the start, or lists them
        on an interrupted upload's parts) checks the header and builds the composite from them;
        one that does not (RGW 16.2) ignores the header: there Content-MD5 is the part's check,
        and a SHA-256 of every part would be a hash of every byte for nothing."""
        return self.composite_promised or any((ep.check or {}).get("ChecksumSHA256")
                                              for ep in self.existing.values())

    @property
    def ref(self) -> Optional[str]:
        return self.upload_id

    def begin(self) -> None:
        p = self.plan
        metadata = {**self.metadata, PLAN_KEY: f"{p.first}/{p.grow_after}/{p.grow_every}/{p.cap}"}
        lock = self._lock_request()
        try:
            resp = call(self.c.create_multipart_upload, self._what("start upload of"),
                        Bucket=self.store.bucket, Key=self.key, Metadata=metadata,
                        StorageClass=self.store.storage_class, ChecksumAlgorithm="SHA256",
                        ContentType="application/octet-stream", **lock)
        except StoreError as exc:
            raise self.store.class_refused(exc) from None
        self.upload_id = resp["UploadId"]
        # A server that keeps no SHA-256 of its own does not say SHA256 back (RGW 16.2).
        self.composite_promised = resp.get("ChecksumAlgorithm") == "SHA256"

    def send_part(self, part: Part) -> dict:
        # Where the server checks no SHA-256 header, Content-MD5 makes it refuse a body damaged on
        # the way (BadDigest: the part is sent again) instead of the whole upload failing after.
        local = None if self.composite_promised else hashlib.md5(part.data).digest()
        sums = {"ChecksumSHA256": b64(part.sha256)} if part.sha256 else {}
        if local:
            sums["ContentMD5"] = b64(local)
        resp = call(self.c.upload_part, self._what(f"upload part {part.number} of"),
                    retry_drops=True, Bucket=self.store.bucket, Key=self.key,
                    UploadId=self.upload_id, PartNumber=part.number, Body=part.data, **sums)
        receipt = {"ETag": resp["ETag"], "ChecksumSHA256": sums.get("ChecksumSHA256"), "md5": None}
        echoed = resp.get("ChecksumSHA256")
        if echoed:
            if echoed != receipt["ChecksumSHA256"]:
                raise IntegrityError(f"{self._what('upload of')}: S3 stored part {part.number} "
                                     f"with another SHA-256 than was sent")
        elif local is not None:  # only the ETag (an MD5) can tell what was stored
            md5 = _plain_md5(resp)
            if md5 is not None and md5 != local.hex():
                raise IntegrityError(f"{self._what('upload of')}: S3 stored part {part.number} "
                                     f"with another MD5 than was sent")
            receipt["md5"] = local.hex()
        return receipt

    def reuse_part(self, existing: ExistingPart, part: Part) -> Optional[dict]:
        listed = existing.check or {}
        receipt = {"ETag": listed.get("ETag"), "ChecksumSHA256": b64(part.sha256) if part.sha256 else None,
                   "md5": None}
        if listed.get("ChecksumSHA256"):
            return receipt if listed["ChecksumSHA256"] == receipt["ChecksumSHA256"] else None
        md5 = _plain_md5(listed)
        if md5 is not None and md5 == hashlib.md5(part.data).hexdigest():
            receipt["md5"] = md5
            return receipt
        return None

    def put_single(self, data: bytes, sha256: bytes) -> ArchiveInfo:
        md5 = hashlib.md5(data).digest()  # the ETag check needs it anyway; Content-MD5 is checked everywhere
        lock = self._lock_request()  # Object Lock needs Content-MD5 (or a checksum) on PutObject
        try:
            resp = call(self.c.put_object, self._what("upload"), retry_drops=True,
                        Bucket=self.store.bucket, Key=self.key, Body=data, IfNoneMatch="*",
                        ChecksumSHA256=b64(sha256), ContentMD5=b64(md5), Metadata=self.metadata,
                        StorageClass=self.store.storage_class,
                        ContentType="application/octet-stream", **lock)
        except StoreError as exc:
            resp = self._existed(exc)
        self.version = resp.get("VersionId")
        if resp.get("ChecksumSHA256") and resp["ChecksumSHA256"] != b64(sha256):
            self._discard_object("its SHA-256 differs from what was sent")
        return self._verify(len(data), b64(sha256), md5.hex())

    def _existed(self, exc: StoreError) -> dict:
        """The object is written with If-None-Match: * (the AWS backup policy of zg-doctor
        --policy refuses writes without it: no overwrites).  412 then means the key exists: a
        retry whose first try got through, which ``_verify`` confirms, or an object that is not
        ours, which is never deleted (``clobbers``)."""
        if exc.code not in ("PreconditionFailed", "412"):
            raise self.store.class_refused(exc) from None
        self.preexisting = True
        return {}

    def complete(self, parts: list[PartDone], size: int, sha256: bytes) -> ArchiveInfo:
        listing = [{"PartNumber": p.number, "ETag": p.receipt["ETag"],
                    **({"ChecksumSHA256": p.receipt["ChecksumSHA256"]} if p.receipt["ChecksumSHA256"] else {})}
                   for p in parts]
        resp = {}
        try:
            resp = call(self.c.complete_multipart_upload, self._what("complete upload of"),
                        Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id, IfNoneMatch="*",
                        MultipartUpload={"Parts": listing})
        except StoreError as exc:
            # A retried complete whose first try succeeded finds no upload: check the object.
            if exc.code != "NoSuchUpload":
                resp = self._existed(exc)
                # the parts stay an incomplete upload: abort them, never the object there
                upload_id, self.upload_id = self.upload_id, None
                self._abort_upload(upload_id)
        self.upload_id = None  # the object exists now: abort must delete it instead
        self.reported, self.version = resp.get("ChecksumSHA256"), resp.get("VersionId")
        composite = (b64(hashlib.sha256(b"".join(p.sha256 for p in parts)).digest())
                     if all(p.sha256 for p in parts) else None)
        md5s = [p.receipt.get("md5") for p in parts]
        etag = None
        if all(md5s):
            joined = b"".join(bytes.fromhex(m) for m in md5s)
            etag = f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"
        return self._verify(size, composite, etag)

    def _verify(self, size: int, checksum: str, etag: Optional[str]) -> ArchiveInfo:
        """Compare S3's view of the new object with the local one; delete it on mismatch.  A
        credential that may not HEAD has it listed (size and ETag), and the composite SHA-256 is
        then the one CompleteMultipartUpload answered."""
        self.completed = not self.preexisting
        head = self.store._head(self.key, self.id, self.version, ChecksumMode="ENABLED")
        if head.get("_listed"):  # a listing has no user metadata: the catalog records what was sent
            head["Metadata"] = dict(self.metadata)
        remote = _strip_count(head.get("ChecksumSHA256") or (self.reported if head.get("_listed") else None))
        if head["ContentLength"] != size:
            self._discard_object(f"S3 holds {head['ContentLength']} bytes, {size} were sent")
        elif remote is not None and checksum is not None:
            if remote != checksum:
                self._discard_object("S3's SHA-256 checksum differs from the local one")
        elif etag is not None and head.get("ServerSideEncryption") not in _KMS:
            if _etag(head.get("ETag")) != etag:
                self._discard_object("S3's MD5 ETag differs from the local one")
        else:
            self._discard_object("S3 returned no checksum to compare with")
        if self.lock:
            head = self._locked(head)
        return self.store._info(self.id, head)

    def _lock_request(self) -> dict:
        """The lock headers of this upload (none without object_lock); their date is what
        ``_locked`` checks for, not a later one (a slow PUT is no reason to extend)."""
        lock = self.store.lock_request() if self.lock else {}
        if lock:
            self.lock_date = lock["ObjectLockRetainUntilDate"].timestamp()
        return lock

    def _locked(self, head: dict) -> dict:
        """The lock asked for, as the server reports it; set afterwards where the server dropped it
        (multipart: moto and RGW 16.2), or the object is deleted and the upload fails."""
        want = self.lock_date or self.store.lock_until()  # resumed: not asked at its start here
        if _lock_of(head)[0] >= want - 1:
            return head
        try:
            head = self.store._extend(self.key, self.id, head, want)
        except StoreError as err:
            self._discard_unlocked(str(err))
        if _lock_of(head)[0] < want - 1:
            self._discard_unlocked("the server reports no such lock after PutObjectRetention either")
        return head

    def _discard_unlocked(self, why: str) -> None:
        raise StoreError(f"{self.store.url}: uploaded archive {self.id} is not locked as object_lock asks "
                         f"({why}); {self._delete_new()}", code="LockNotKept")

    def _discard_object(self, why: str) -> None:
        if self.preexisting:  # not ours to delete
            raise IntegrityError(f"{self.store.url}: archive key {self.key} already holds an object that is not "
                                 f"this upload ({why}; the server refused to overwrite it: If-None-Match); "
                                 f"nothing was changed: upload again (a new archive id)")
        raise IntegrityError(f"{self.store.url}: uploaded archive {self.id} does not match the "
                             f"local data ({why}); {self._delete_new()}")

    def _delete_new(self) -> str:
        """Delete the object just completed (its version, where the bucket keeps versions: not a
        delete marker over it); says how that went, for the message of what was wrong with it."""
        self.completed = False
        try:
            version = self.c.head_object(Bucket=self.store.bucket, Key=self.key).get("VersionId")
        except Exception:  # noqa: BLE001 - the delete below says whether the object can be reached
            version = None
        try:
            self.c.delete_object(Bucket=self.store.bucket, Key=self.key, **({"VersionId": version} if version else {}))
            return "it was deleted"
        except Exception:  # noqa: BLE001 - report what was wrong with it, not this
            return "deleting it failed too: delete it by hand"

    def abort(self) -> None:
        if self.completed:  # completed but not verified: do not leave it looking good
            self.completed = False
            call(self.c.delete_object, self._what("delete unverified"),
                 Bucket=self.store.bucket, Key=self.key)
        if self.upload_id is None:
            return
        upload_id, self.upload_id = self.upload_id, None
        self._abort_upload(upload_id)

    def _abort_upload(self, upload_id: str) -> None:
        try:
            call(self.c.abort_multipart_upload, self._what("abort upload of"),
                 Bucket=self.store.bucket, Key=self.key, UploadId=upload_id)
        except NotFoundError:
            pass
        except StoreError as exc:
            if exc.code != "NoSuchUpload":
                raise


class S3Store(Store):
    """Archives as objects ``<prefix>/<id>.zg`` in ``bucket`` (see module doc)."""

    def __init__(self, bucket: str, prefix: str = "", *, storage_class: str = "DEEP_ARCHIVE",
                 part_size: Optional[int] = None, profile: Optional[str] = None,
                 region: Optional[str] = None, endpoint: Optional[str] = None, retry_mode: str = "standard",
                 max_attempts: int = 8, connect_attempts: int = 3, connect_timeout: float = _aws.CONNECT_TIMEOUT,
                 read_timeout: float = _aws.READ_TIMEOUT, object_lock: Optional[str] = None,
                 lock_days: Optional[int] = None, url: Optional[str] = None, client=None):
        storage_class = str(storage_class).upper()
        if storage_class not in STORAGE_CLASSES:
            raise UsageError(f"storage class {storage_class!r}: use one of "
                             f"{', '.join(STORAGE_CLASSES)}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.storage_class = storage_class
        self.part_size = part_size
        self.object_lock, self.lock_days = _lock_settings(object_lock, lock_days)
        self._lock_enabled: Optional[bool] = None  # asked once: the bucket has Object Lock
        self.url = url or f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = client
        self._cold_served: Optional[bool] = None  # learned: GET serves a cold class unrestored (RGW)
        self._lists_parts = True  # learned: False once the server proved it has no GetObjectAttributes
        self._heads_parts = True  # learned: False once it answered HEAD ?partNumber=1 with the whole
        self._client_args = dict(profile=profile, region=region, endpoint=endpoint, retry_mode=retry_mode,
                                 max_attempts=max_attempts, connect_attempts=connect_attempts,
                                 connect_timeout=connect_timeout, read_timeout=read_timeout)
        s3_plan(first=part_size)  # refuse a bad part size now, not mid-stream

    @property
    def properties(self) -> Properties:
        return Properties(cold=self.storage_class in COLD, price_class=self.storage_class,
                          checksum="sha256-composite", min_part=S3_MIN_PART, max_part=S3_MAX_PART,
                          max_parts=MAX_PARTS, metadata_limit=METADATA_LIMIT,
                          hot_options=None if self.storage_class == "STANDARD" else {"storage_class": "STANDARD"},
                          locks=self.object_lock is not None)

    def price_class(self, storage_class=None) -> str:
        """Each object keeps the class it was stored in (a lifecycle rule may have moved it)."""
        return (storage_class or self.storage_class).upper()

    @property
    def client(self):
        """The boto3 S3 client (created on first use: no network before that)."""
        if self._client is None:
            self._client = _aws.make_client("s3", **self._client_args)
        client = self._client
        client.meta.events.register("before-send.s3.GetObjectAttributes",
                                    lambda request, **_: _attributes_or_nothing(client, request),
                                    unique_id="zfsglacier-attributes")
        return self._client

    def class_refused(self, exc: StoreError) -> StoreError:
        """An upload refused with InvalidArgument: find out (with an upload started and aborted
        at once, no body) whether the storage class is what the server lacks, and say so."""
        if exc.code != "InvalidArgument" or self.storage_class == "STANDARD":
            return exc
        try:
            probe = self.client.create_multipart_upload(Bucket=self.bucket, Key=f"{self._key_prefix}"
                                                        f"zg-class-probe-{secrets.token_hex(4)}")
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=probe["Key"], UploadId=probe["UploadId"])
        except Exception:  # noqa: BLE001 - refused without the class too: the first error stands
            return exc
        return StoreError(f"{self.url}: the server does not offer storage class {self.storage_class} "
                          f"(it refuses it with InvalidArgument, and accepts the same upload without it): "
                          f"set storage_class for this destination to one it offers, or add the class "
                          f"to the server (Ceph RGW: radosgw-admin zonegroup/zone placement add "
                          f"--storage-class {self.storage_class})", code="StorageClassNotOffered")

    # ---- Object Lock
    def lock_until(self) -> float:
        """The retain-until of an object written now: ``lock_days`` ahead, whole seconds."""
        return float(int(time.time()) + 1 + self.lock_days * DAY)

    def lock_request(self) -> dict:
        """The lock arguments of a new object (none without object_lock); the bucket is checked
        first, so that a bucket without Object Lock fails before any byte is sent."""
        if not self.object_lock:
            return {}
        if self._lock_enabled is None:
            found = self._ask(self.client.get_object_lock_configuration, "Object Lock",
                              absent="ObjectLockConfigurationNotFoundError")
            conf = found.get("ObjectLockConfiguration") or {}
            self._lock_enabled = "_denied" in found or conf.get("ObjectLockEnabled") == "Enabled"
        if not self._lock_enabled:
            raise StoreError(f"{self.url}: bucket {self.bucket} has no Object Lock, and object_lock = "
                             f"\"{self.object_lock}\" asks for it: Object Lock is enabled when a bucket is created "
                             f"(aws s3api create-bucket --object-lock-enabled-for-bucket); back up to such a "
                             f"bucket, or remove object_lock (zg-doctor checks a bucket)",
                             code="ObjectLockNotEnabled")
        return {"ObjectLockMode": self.object_lock.upper(), "ObjectLockRetainUntilDate": _utc(self.lock_until())}

    def _extend(self, key: str, archive_id: str, head: dict, until: float) -> dict:
        """PutObjectRetention to ``until`` (the object's own mode kept: compliance stays), then HEAD."""
        mode = (head.get("ObjectLockMode") or self.object_lock or "governance").upper()
        version = _version(head.get("VersionId")).get("VersionId")
        call(self.client.put_object_retention, f"{self.url}: lock {archive_id} until {when(until)}",
             Bucket=self.bucket, Key=key, Retention={"Mode": mode, "RetainUntilDate": _utc(until)},
             **_version(version))
        return self._head(key, archive_id, version)

    def retain(self, id: str, until: float, version: Optional[str] = None) -> ArchiveInfo:
        key = self.key(id)
        head = self._head(key, id, version)
        if _lock_of(head)[0] < until:
            head = self._extend(key, id, head, until)
            if _lock_of(head)[0] < until - 1:
                raise StoreError(f"{self.url}: {id}: the server did not keep the lock until {when(until)} "
                                 f"(it reports {when(_lock_of(head)[0]) if _lock_of(head)[0] else 'none'})",
                                 code="LockNotKept")
        return self._info(id, head)

    def policy(self, role: str) -> dict:
        aws = ".amazonaws.com" in (self.client.meta.endpoint_url or "")  # a client makes no request
        return s3_policy.policy(role, self.bucket, self.prefix, object_lock=self.object_lock is not None, aws=aws)

    def key(self, archive_id: str) -> str:
        name = check_id(archive_id) + SUFFIX
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def _key_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def _id_of(self, key: str) -> Optional[str]:
        if not key.startswith(self._key_prefix) or not key.endswith(SUFFIX):
            return None
        candidate = key[len(self._key_prefix): -len(SUFFIX)]
        return candidate if "/" not in candidate and candidate else None

    # ---- what the server is (zg-doctor)
    def capabilities(self) -> dict:
        return {"lists_parts": self._lists_parts, "heads_parts": self._heads_parts, "serves_cold": self._cold_served}

    def assume(self, found: dict) -> None:
        if found.get("lists_parts") is False:
            self._lists_parts = False
        if found.get("heads_parts") is False:
            self._heads_parts = False
        if isinstance(found.get("serves_cold"), bool):
            self._cold_served = found["serves_cold"]

    def doctor(self) -> list[Check]:
        """Bucket and credentials, clock, versioning, Object Lock, lifecycle rules over the prefix,
        the storage class (and STANDARD, for catalog copies), flexible checksums, the part-count
        limit, part listings and cold reads.  Each write is an upload started and aborted (no
        object) or a two-part STANDARD object (5 MiB and a byte) deleted at once; nothing is
        thawed."""
        c, out = self.client, []
        try:
            head = call(c.head_bucket, f"{self.url}: bucket {self.bucket}", not_found="missing",
                        Bucket=self.bucket)
        except (StoreError, NotFoundError) as err:
            why = f"bucket {self.bucket} does not exist" if isinstance(err, NotFoundError) else str(err)
            return [Check("bucket", "fail", why)]
        out.append(Check("bucket", "ok", f"{self.bucket} answers with these credentials"))
        out.append(_aws.clock_check(head))
        versioning = self._ask(c.get_bucket_versioning, "versioning")
        out.append(Check("versioning", "info", "not permitted to ask" if "_denied" in versioning else
                         versioning.get("Status") or "never enabled"))
        lock = self._ask(c.get_object_lock_configuration, "Object Lock", absent="ObjectLockConfigurationNotFoundError")
        denied = "_denied" in lock
        lock = lock.get("ObjectLockConfiguration") or {}
        default = (lock.get("Rule") or {}).get("DefaultRetention")
        enabled = lock.get("ObjectLockEnabled") == "Enabled"
        if enabled:
            said = "enabled" + (f", default retention {default}" if default else ", no default retention")
            if self.object_lock:
                out.append(Check("object lock", "ok", f"{said}; zfsglacier locks each archive {self.object_lock} "
                                                      f"for {self.lock_days} days and its chain's as long"))
            else:
                out.append(Check("object lock", "warn" if default else "info", said + (
                    ": the server locks every archive by itself, so zg-prune cannot delete before that, and chains "
                    "are not extended: set object_lock and lock_days for this destination" if default else "")))
        elif self.object_lock and not denied:
            out.append(Check("object lock", "fail", f"not enabled on bucket {self.bucket}, and object_lock asks for "
                                                    f"it: use a bucket created with Object Lock enabled"))
        else:
            out.append(Check("object lock", "info", "not permitted to ask" if denied else "not enabled on this bucket"))
        rules = self._ask(c.get_bucket_lifecycle_configuration, "lifecycle", absent="NoSuchLifecycleConfiguration")
        if "_denied" in rules:
            out.append(Check("lifecycle", "warn", "not permitted to read the lifecycle rules: a rule may expire archives"))
        else:
            out += _lifecycle(rules.get("Rules") or [], self._key_prefix)
        classes = [self.storage_class] + (["STANDARD"] if self.storage_class != "STANDARD" else [])
        for cls in classes:
            out += self._probe_class(cls, limit=cls == self.storage_class)
        if default:
            out.append(Check("reads", "info", "not probed: the bucket's default retention would keep a probe object"))
        else:
            out.append(self._probe_reads())
        out.append(self._probe_cold())
        return out

    def _ask(self, method, what: str, absent: Optional[str] = None) -> dict:
        try:
            return call(method, f"{self.url}: {what}", Bucket=self.bucket)
        except StoreError as err:
            if absent and err.code == absent:
                return {}
            if err.code in _aws.AUTH_CODES:
                return {"_denied": True}
            raise

    def _probe_key(self) -> str:
        return f"{self._key_prefix}zg-doctor-{secrets.token_hex(4)}"

    def _probe_class(self, cls: str, *, limit: bool) -> list[Check]:
        """An upload in ``cls`` started and aborted: the class, flexible checksums and (``limit``)
        whether part 10,000 is taken and 10,001 refused, with one byte each."""
        key, c = self._probe_key(), self.client
        try:
            up = call(c.create_multipart_upload, f"{self.url}: start an upload in {cls}", Bucket=self.bucket,
                      Key=key, StorageClass=cls, ChecksumAlgorithm="SHA256")
        except StoreError as err:
            what = "refused" if err.code != "InvalidArgument" else "not offered (InvalidArgument)"
            need = "new archives" if limit else "catalog copies (kept readable at once)"
            return [Check(f"class {cls}", "fail", f"{what}: {need} need it; {err}")]
        out = [Check(f"class {cls}", "ok", "accepted")]
        try:
            if limit:
                flexible = up.get("ChecksumAlgorithm") == "SHA256"
                out.append(Check("checksums", "ok" if flexible else "info",
                                 "SHA-256 part checksums kept by the server" if flexible else
                                 "no SHA-256 checksums (x-amz-checksum-* ignored): parts carry Content-MD5, checked "
                                 "by MD5 ETags"))
                parts = []
                for n in (MAX_PARTS, MAX_PARTS + 1):
                    try:
                        c.upload_part(Bucket=self.bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=b"z",
                                      ContentMD5=b64(hashlib.md5(b"z").digest()))
                        parts.append(True)
                    except Exception:  # noqa: BLE001 - refused: what is asked
                        parts.append(False)
                detail = {(True, False): f"{MAX_PARTS:,} parts, as AWS",
                          (True, True): f"more than {MAX_PARTS:,} parts (zfsglacier plans for {MAX_PARTS:,})",
                          }.get(tuple(parts), f"part {MAX_PARTS:,} refused: uploads need fewer parts (bigger part_size)")
                out.append(Check("part limit", "ok" if parts[0] else "warn", detail))
        finally:
            try:
                c.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up["UploadId"])
            except Exception:  # noqa: BLE001 - zg-rm --incomplete lists it
                out.append(Check("cleanup", "warn", f"could not abort the probe upload {key}: zg-rm --incomplete"))
        return out

    def _probe_reads(self) -> Check:
        """A two-part STANDARD object (5 MiB and one byte), deleted at once: does the server list
        parts (GetObjectAttributes) or answer for one part (HEAD ?partNumber=1)?"""
        c, probe = self.client, S3Session(self, "zg-doctor-probe", {}, s3_plan(first=S3_MIN_PART))
        probe.key, probe.lock = self._probe_key(), False  # a probe deleted at once: never locked
        body = secrets.token_bytes(S3_MIN_PART + 1)
        try:
            probe.begin()
            done = []
            for n, off, size in ((1, 0, S3_MIN_PART), (2, S3_MIN_PART, 1)):
                part = Part(n, off, body[off:off + size], hashlib.sha256(body[off:off + size]).digest())
                done.append(PartDone(n, off, size, part.sha256, probe.send_part(part)))
            probe.complete(done, len(body), hashlib.sha256(body).digest())  # verified as any upload
        except (StoreError, IntegrityError) as err:
            probe.abort()
            return Check("reads", "fail", f"cannot write a probe object: {err}")
        try:
            self._lists_parts = self._attribute_parts(probe.key, 2) is not None
            self._heads_parts = call(c.head_object, f"{self.url}: stat part 1", Bucket=self.bucket, Key=probe.key,
                                     PartNumber=1)["ContentLength"] == S3_MIN_PART
        finally:
            try:  # in a versioned bucket, the version itself (not a delete marker over it)
                version = c.head_object(Bucket=self.bucket, Key=probe.key).get("VersionId")
                c.delete_object(Bucket=self.bucket, Key=probe.key, **({"VersionId": version} if version else {}))
            except Exception:  # noqa: BLE001
                return Check("reads", "warn", f"could not delete the probe object {probe.key}: delete it by hand")
        if self._lists_parts:
            return Check("reads", "ok", "GetObjectAttributes lists parts: each is checked by its own checksum")
        if self._heads_parts:
            return Check("reads", "ok", "HEAD ?partNumber answers: each part is checked by its MD5 ETag")
        return Check("reads", "info", "no part listings (GetObjectAttributes, HEAD ?partNumber): parts come from the "
                                      "plan each upload records, the whole checked by the MD5 ETag or the catalog's "
                                      "SHA-256")

    def _probe_cold(self) -> Check:
        """Whether the server serves a cold class without a restore, asked of an archive already
        there (a ranged one-byte GET; nothing is thawed)."""
        try:
            page = call(self.client.list_objects_v2, f"{self.url}: list", Bucket=self.bucket,
                        Prefix=self._key_prefix, MaxKeys=1000)
            for o in page.get("Contents") or []:
                archive_id = self._id_of(o["Key"])
                if archive_id is None or o.get("StorageClass") not in COLD:
                    continue
                head = self._head(o["Key"], archive_id)
                if parse_restore(head.get("Restore"))[0] != "frozen":
                    continue
                self._cold_served = None
                if self._serves_cold(o["Key"], archive_id):
                    return Check("cold reads", "info", f"{o['StorageClass']} is served at once (no RestoreObject "
                                                       f"needed: the class is a label here)")
                return Check("cold reads", "ok", f"{o['StorageClass']} needs a restore first, as at AWS")
        except (StoreError, NotFoundError) as err:
            return Check("cold reads", "warn", f"not probed: {err}")
        return Check("cold reads", "info", "not probed: no frozen archive here yet (the first read finds out)")

    # ---- uploads
    def _plan(self, expected_size=None) -> PartPlan:
        return s3_plan(expected_size, first=self.part_size)

    def _new_session(self, metadata, expected_size) -> S3Session:
        if PLAN_KEY in metadata:
            raise UsageError(f"metadata key {PLAN_KEY!r} is zfsglacier's own (the part plan)")
        plan_size = len(PLAN_KEY) + 4 * 11  # four numbers and their slashes, at most
        refuse_large_metadata(metadata, metadata_size(metadata) + plan_size, METADATA_LIMIT,
                              "S3 user metadata")
        return S3Session(self, new_archive_id(), metadata, self._plan(expected_size))

    def _uploads(self) -> Iterator[dict]:
        with aws_errors(f"{self.url}: list incomplete uploads"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self._key_prefix)
            for page in pages:
                for up in page.get("Uploads", []) or []:
                    if self._id_of(up["Key"]):
                        yield up

    def _parts(self, key: str, upload_id: str) -> dict[int, ExistingPart]:
        out = {}
        with aws_errors(f"{self.url}: list parts of {key}"):
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=upload_id)
            for page in pages:
                for p in page.get("Parts", []) or []:
                    out[p["PartNumber"]] = ExistingPart(p["PartNumber"], p["Size"], {
                        "ETag": p.get("ETag"), "ChecksumSHA256": p.get("ChecksumSHA256")})
        return out

    def _resume_sessions(self, id, expected_size) -> list[S3Session]:
        sessions = []
        for up in self._uploads():
            archive_id = self._id_of(up["Key"])
            if id is not None and id not in (archive_id, up["UploadId"]):
                continue
            existing = self._parts(up["Key"], up["UploadId"])
            first = existing.get(1)
            if first is None or first.size < 5 * MiB:
                continue
            plan = s3_plan(expected_size, first=self.part_size or first.size)
            sessions.append(S3Session(self, archive_id, {}, plan, up["UploadId"], existing))
        return sessions

    def incomplete_uploads(self) -> list[IncompleteUpload]:
        out = []
        for up in self._uploads():
            parts = self._parts(up["Key"], up["UploadId"])
            out.append(IncompleteUpload(self._id_of(up["Key"]), up["UploadId"],
                                        up["Initiated"].timestamp(), len(parts),
                                        sum(p.size for p in parts.values())))
        return out

    def discard_incomplete(self, ref: str) -> None:
        for up in self._uploads():
            if ref in (up["UploadId"], self._id_of(up["Key"])):
                S3Session(self, self._id_of(up["Key"]), {}, self._plan(), up["UploadId"]).abort()
                return
        raise NotFoundError(f"no incomplete upload {ref} in {self.url}")

    # ---- archives
    def _head(self, key: str, archive_id: str, version: Optional[str] = None, **kw) -> dict:
        """HEAD of the object (of ``version``, where given).  A credential that may not read
        objects (the backup and prune policies of zg-doctor --policy) is refused HEAD: then what
        a listing says of it (``_listed``)."""
        try:
            return call(self.client.head_object, f"{self.url}: stat {archive_id}",
                        not_found=f"no archive {archive_id} in {self.url}",
                        Bucket=self.bucket, Key=key, **_version(version), **kw)
        except NotFoundError:
            self._check_bucket()
            raise
        except StoreError as exc:
            if exc.code not in _READ_DENIED:
                raise
            return self._listed(key, archive_id, version)

    def _listed(self, key: str, archive_id: str, version: Optional[str]) -> dict:
        """A HEAD's fields as ListObjectVersions gives them (size, ETag, class, date, version; no
        user metadata, no checksum), and the lock from GetObjectRetention: none of it needs
        s3:GetObject.  The newest version of the key, or the one asked for; a delete marker
        there is no archive."""
        what = f"{self.url}: stat {archive_id} (by listing its versions: HEAD is not permitted)"

        def entries():
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key):
                yield from ((v, False) for v in page.get("Versions") or [] if v.get("Key") == key)
                yield from ((m, True) for m in page.get("DeleteMarkers") or [] if m.get("Key") == key)

        with aws_errors(what):
            entry, marker = next(((e, m) for e, m in entries()
                                  if (e.get("VersionId") == version if version else e.get("IsLatest"))), (None, True))
        if not marker:
            head = {"ContentLength": entry["Size"], "ETag": entry.get("ETag"), "StorageClass": entry.get("StorageClass"),
                    "LastModified": entry["LastModified"], "VersionId": entry.get("VersionId"), "Metadata": {},
                    "_listed": True}
            if self.object_lock:
                head.update(self._retention(key, archive_id, head["VersionId"]))
            return head
        raise NotFoundError(f"no archive {archive_id} in {self.url}")

    def _retention(self, key: str, archive_id: str, version: Optional[str]) -> dict:
        """A HEAD's lock fields, from GetObjectRetention (none: no lock on the object)."""
        try:
            found = call(self.client.get_object_retention, f"{self.url}: lock of {archive_id}",
                         Bucket=self.bucket, Key=key, **_version(version))
        except StoreError as exc:
            if exc.code in ("NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError"):
                return {}
            raise
        kept = found.get("Retention") or {}
        return {"ObjectLockMode": kept.get("Mode"), "ObjectLockRetainUntilDate": kept.get("RetainUntilDate")}

    def init(self) -> str:
        """Create the bucket when it does not exist (with Object Lock when the destination asks for
        it: most servers enable it only at creation); an existing bucket is not changed."""
        c = self.client
        try:
            call(c.head_bucket, f"{self.url}: bucket {self.bucket}", not_found="missing", Bucket=self.bucket)
            return (f"bucket {self.bucket} exists: nothing changed (`zg-doctor {self.url}` says whether it suits "
                    f"backups)")
        except NotFoundError:
            pass
        request = {"Bucket": self.bucket}
        region = c.meta.region_name
        if region and region != "us-east-1":  # the one region that takes no LocationConstraint
            request["CreateBucketConfiguration"] = {"LocationConstraint": region}
        if self.object_lock:
            request["ObjectLockEnabledForBucket"] = True
        call(c.create_bucket, f"{self.url}: create bucket {self.bucket}", **request)
        return (f"bucket {self.bucket} created" + (f" in {region}" if region else "") +
                (" with Object Lock enabled (and so versioning)" if self.object_lock else "") +
                f"; `zg-doctor {self.url}` checks it")

    def _check_bucket(self) -> None:
        """HEAD says only 404: tell a missing bucket from a missing object."""
        try:
            call(self.client.head_bucket, f"{self.url}", not_found="missing", Bucket=self.bucket)
        except NotFoundError:
            raise StoreError(f"{self.url}: bucket {self.bucket} does not exist") from None
        except StoreError:
            pass  # no permission to ask: keep the NotFoundError

    def _info(self, archive_id: str, head: dict) -> ArchiveInfo:
        cls = head.get("StorageClass") or "STANDARD"
        state = parse_restore(head.get("Restore"))[0] if cls in COLD else "ready"
        checksum = head.get("ChecksumSHA256")
        multipart = "-" in _etag(head.get("ETag"))
        sha = None
        if checksum and not multipart:
            sha = base64.b64decode(checksum).hex()
        if checksum:
            checksum = (f"sha256-composite:{_strip_count(checksum)}-"
                        f"{_etag(head.get('ETag')).rsplit('-', 1)[-1]}" if multipart
                        else f"sha256:{sha}")
        metadata = {k: v for k, v in (head.get("Metadata") or {}).items() if k != PLAN_KEY}
        until, mode = _lock_of(head)
        return ArchiveInfo(archive_id, head["ContentLength"], sha,
                           head["LastModified"].timestamp(), metadata, cls, state, checksum,
                           locked_until=until or None, lock_mode=mode,
                           version=_version(head.get("VersionId")).get("VersionId"))

    def stat(self, id: str) -> ArchiveInfo:
        return self._info(id, self._head(self.key(id), id, ChecksumMode="ENABLED"))

    def list(self) -> Iterator[ArchiveInfo]:
        """Every archive under the prefix: one LIST page per 1,000 keys plus a HEAD each (for
        the metadata); usable to rebuild a catalog."""
        with aws_errors(f"{self.url}: list"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key_prefix, Delimiter="/")
            keys = [o["Key"] for page in pages for o in page.get("Contents", []) or []]
        for key in keys:
            archive_id = self._id_of(key)
            if archive_id is None:
                continue
            try:
                yield self.stat(archive_id)
            except NotFoundError:
                continue  # deleted meanwhile

    def hosts(self) -> list[str]:
        """The "directories" right under the prefix (ListObjectsV2's CommonPrefixes) that are host
        ids and hold an object whose key is an archive's."""
        with aws_errors(f"{self.url}: list hosts"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key_prefix, Delimiter="/")
            found = [cp["Prefix"][len(self._key_prefix):].rstrip("/") for page in pages
                     for cp in page.get("CommonPrefixes") or []]
            out = []
            for host in filter(is_host, found):
                listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self._key_prefix}{host}/",
                                                     Delimiter="/", MaxKeys=1000)
                if any(k["Key"].endswith(SUFFIX) for k in listed.get("Contents") or []):
                    out.append(host)
        return sorted(out)

    def delete(self, id: str, *, bypass_governance: bool = False) -> None:
        key = self.key(id)
        head = self._head(key, id)
        until, mode = _lock_of(head)
        extra = {}
        if until > time.time():
            if mode != "governance" or not bypass_governance:
                how = (": zg-rm --bypass-governance removes it, with credentials allowed "
                       "s3:BypassGovernanceRetention" if mode == "governance" else
                       ": a compliance lock cannot be shortened, not even by the account's root")
                raise RetainedError(f"{self.url}: {id} is locked until {when(until)} ({mode} Object Lock): "
                                    f"the server refuses to delete it before{how}")
            extra["BypassGovernanceRetention"] = True
        if mode or self.object_lock:
            extra.update(_version(head.get("VersionId")))  # the bytes themselves, not a delete marker
        call(self.client.delete_object, f"{self.url}: delete {id}", Bucket=self.bucket, Key=key, **extra)

    # ---- thaw
    def request_thaw(self, id: str, tier: str = "Standard", days: int = 7,
                     version: Optional[str] = None) -> ThawStatus:
        check_tier(tier)
        key = self.key(id)
        head = self._head(key, id, version)
        cls = head.get("StorageClass") or "STANDARD"
        if cls not in COLD:
            return self._status(id, head, tier)
        if (cls, tier) not in THAW_WAIT:
            raise UsageError(f"{cls} has no {tier} retrieval: use Standard (up to 12 hours) or "
                             f"Bulk (up to 48 hours)")
        if parse_restore(head.get("Restore"))[0] != "thawing":  # thawed: extends the copy
            try:
                call(self.client.restore_object, f"{self.url}: restore {id}",
                     Bucket=self.bucket, Key=key, **_version(version),
                     RestoreRequest={"Days": int(days), "GlacierJobParameters": {"Tier": tier}})
            except StoreError as exc:
                if exc.code == "RestoreAlreadyInProgress":
                    pass
                elif exc.code in _aws.AUTH_CODES or not self._serves_cold(key, id, version):
                    raise
                else:  # RGW 16.2: 501 NotImplemented, or 400 InvalidArgument (taken for a form upload)
                    return ThawStatus(id, "ready", f"{cls}: this server has no RestoreObject "
                                                   f"({exc.code}) and serves the object at once")
            head = self._head(key, id, version)
        return self._status(id, head, tier)

    def _serves_cold(self, key: str, archive_id: str, version: Optional[str] = None) -> bool:
        """Does a GET serve this cold, unrestored object?  One ranged one-byte GET tells (AWS
        answers 403 InvalidObjectState, free of retrieval charges); learned once per store."""
        if self._cold_served is None:
            try:
                self._get_range(key, archive_id, _Range(0, 0, 1), version)
                self._cold_served = True
            except RestorePendingError:
                self._cold_served = False
        return self._cold_served

    def thaw_status(self, id: str, version: Optional[str] = None) -> ThawStatus:
        return self._status(id, self._head(self.key(id), id, version), "Standard")

    def _status(self, id: str, head: dict, tier: str) -> ThawStatus:
        cls = head.get("StorageClass") or "STANDARD"
        if cls not in COLD:
            return ThawStatus(id, "ready", f"{cls}: readable at once")
        state, expires = parse_restore(head.get("Restore"))
        wait = THAW_WAIT.get((cls, tier))
        if state == "thawing":
            words = f" ({tier} takes {wait[1]})" if wait else ""
            return ThawStatus(id, state, f"{cls}: restore in progress{words}",
                              wait[0] if wait else None)
        if state == "thawed":
            until = (" until " + email.utils.formatdate(expires, usegmt=True)) if expires else ""
            return ThawStatus(id, state, f"{cls}: restored copy readable{until}", None, expires)
        return ThawStatus(id, state, f"{cls}: not restored; request a restore first")

    # ---- reads
    def open_read(self, id: str, *, jobs: int = 4, start: int = 0, recorded=None) -> OrderedReader:
        key = self.key(id)
        version = getattr(recorded, "version", None)  # the bytes uploaded, whatever was put over them
        head = self._head(key, id, version, ChecksumMode="ENABLED")
        cls = head.get("StorageClass") or "STANDARD"
        if cls in COLD:
            state = parse_restore(head.get("Restore"))[0]
            if state == "thawing" or (state == "frozen" and not self._serves_cold(key, id, version)):
                detail = ("its restore is still in progress" if state == "thawing"
                          else "is not restored")
                raise pending(self.url, id, cls, detail)
        size = head["ContentLength"]
        etag = _etag(head.get("ETag"))
        checksum = _strip_count(head.get("ChecksumSHA256"))
        verifies = self._info(id, head).checksum if checksum else None
        sha256 = getattr(recorded, "sha256", None)
        if "-" in etag:
            count = int(etag.rsplit("-", 1)[1])
            ranges = self._part_ranges(key, id, count, size, jobs, version)
            if ranges is not None:
                if sum(r.size for r in ranges) != size:
                    raise IntegrityError(f"{self.url}: archive {id}: its parts do not add up to "
                                         f"its size")
                whole = _Composite(checksum, etag if all(r.md5 for r in ranges) else None)
            elif sha256 and not checksum:  # the catalog's SHA-256 of the whole, in even ranges
                ranges, whole = _even_ranges(size), _Whole(b64(bytes.fromhex(sha256)), None)
                verifies = f"sha256:{sha256}"
            else:
                ranges = self._recorded_ranges(id, head, count, size)
                whole = _Composite(checksum, None if checksum else etag)
        else:
            ranges = _even_ranges(size)
            whole = _Whole(checksum, _plain_md5(head))
        if not whole.can_check():
            raise IntegrityError(f"{self.url}: archive {id}: S3 reports no checksum to verify "
                                 f"it against")
        if size == 0:
            whole.check_empty(f"{self.url}: archive {id}")
        # The whole's check takes the ranges in order, on the fetching threads (InOrder): a
        # whole-object SHA-256 is sequential, and on the reading thread it held the output up.
        order = InOrder(lambda got: whole.add(*got), first=ranges[0].number) if ranges and not start else None

        buffers = PartBuffers()  # ranges are read into buffers the reader hands back

        def fetch(r: _Range) -> bytearray:
            # Each byte is hashed once per check that needs it: a part's own digest only when the
            # part or a composite checksum needs it, the whole's hash of the bytes (in order).
            buf = buffers.get(r.size)
            for attempt in (1, 2):  # a mismatch may be damage in transit: fetch once more
                data = self._get_range(key, id, r, version, into=buf)
                sha = hashlib.sha256(data).digest() if r.sha256 is not None or whole.part_sha else None
                md5 = hashlib.md5(data).digest() if r.md5 is not None or whole.part_md5 else None
                bad = ((r.sha256 is not None and sha != r.sha256)
                       or (r.md5 is not None and md5.hex() != r.md5))
                if not bad:
                    if order is not None:
                        order.feed(r.number, (data, sha, md5))
                    return data
            raise IntegrityError(f"{self.url}: archive {id}: part {r.number} (bytes {r.offset}-"
                                 f"{r.offset + r.size - 1}) does not match its checksum")

        def deliver(r: _Range, data: bytes, last: bool) -> None:
            order.wait(r.number)  # never ahead of the check: at most the ranges in flight wait in it
            if last:
                whole.verify(f"{self.url}: archive {id}")

        reader = OrderedReader(ranges, fetch, jobs=jobs, start=start,
                               deliver=None if start else deliver, release=buffers.put)
        if not start and whole.sha:
            reader.verifies = verifies
        return reader

    def _recorded_ranges(self, archive_id: str, head: dict, count: int, size: int) -> list[_Range]:
        """The parts of an object whose server lists none: as zfsglacier's upload planned them
        (``zg-parts`` metadata).  Untrusted like all metadata: a wrong plan fails the ETag check."""
        raw = (head.get("Metadata") or {}).get(PLAN_KEY, "")
        lacks = (f"{self.url}: archive {archive_id}: the server lists no part sizes (no GetObjectAttributes, "
                 f"HEAD ?partNumber ignored)")
        try:
            first, grow_after, grow_every, cap = (int(x) for x in raw.split("/"))
            plan = PartPlan(first, grow_after, grow_every, cap)
            if first < 1 or cap < 0 or grow_every < 1:
                raise ValueError
        except ValueError:
            raise StoreError(f"{lacks} and the object records no part plan ({PLAN_KEY}) of its upload: "
                             f"read it with the catalog that uploaded it (its SHA-256 checks the whole)",
                             code="NoPartLayout") from None
        ranges, offset = [], 0
        for n in range(1, count + 1):
            part = plan.size(n) if n < count else size - offset
            if part <= 0 or part > plan.size(n):
                raise IntegrityError(f"{lacks}, and the part plan its metadata records does not fit its "
                                     f"size and {count} parts: read it with the catalog that uploaded it")
            ranges.append(_Range(n, offset, part))
            offset += part
        return ranges

    def _get_range(self, key: str, archive_id: str, r: _Range, version: Optional[str] = None,
                   into: Optional[bytearray] = None) -> bytearray:
        """Range ``r`` of the object, read into ``into`` (a buffer of exactly r.size bytes, used
        again by the caller) or a new one."""
        buf = into if into is not None else bytearray(r.size)
        view = memoryview(buf)

        def once() -> int:
            resp = self.client.get_object(Bucket=self.bucket, Key=key, **_version(version),
                                          Range=f"bytes={r.offset}-{r.offset + r.size - 1}")
            with resp["Body"]:  # never more than the range: a server may send the whole object
                return _aws.read_body_into(resp, view)

        try:
            with aws_errors(f"{self.url}: read {archive_id}",
                            not_found=f"no archive {archive_id} in {self.url}"):
                got = retry_call(once, transient=_aws.is_transient)
        except StoreError as exc:
            if exc.code == "InvalidObjectState":
                raise pending(self.url, archive_id, "cold storage", "is not restored (any more)") from None
            raise
        if got != r.size:
            got = f"more than {r.size}" if got > r.size else str(got)
            raise IntegrityError(f"{self.url}: archive {archive_id}: got {got} bytes for "
                                 f"part {r.number} (bytes {r.offset}-{r.offset + r.size - 1}), expected {r.size}")
        return buf

    def _part_ranges(self, key: str, archive_id: str, count: int, size: int,
                     jobs: int, version: Optional[str] = None) -> Optional[list[_Range]]:
        """Sizes and expected checksums of each part: GetObjectAttributes when S3 lists part
        checksums, else HEAD ?partNumber=N for each part (size and, where it is one, MD5 ETag);
        None when the server answers neither (a part as long as the whole: partNumber ignored)."""
        parts = self._attribute_parts(key, count, version)
        if parts is None:
            what = f"{self.url}: stat parts of {archive_id}"

            def head_part(n: int) -> dict:
                return call(self.client.head_object, what, Bucket=self.bucket, Key=key,
                            PartNumber=n, **_version(version))

            if not self._heads_parts:
                return None
            first = head_part(1)
            if count > 1 and first["ContentLength"] >= size:
                self._heads_parts = False
                return None
            heads = [first] + parallel_map(head_part, range(2, count + 1), jobs)
            parts = [(n, h["ContentLength"], None, _plain_md5(h))
                     for n, h in enumerate(heads, 1)]
        ranges, offset = [], 0
        for n, size, sha, md5 in parts:
            ranges.append(_Range(n, offset, size, sha, md5))
            offset += size
        return ranges

    def _attribute_parts(self, key: str, count: int, version: Optional[str] = None):
        if not self._lists_parts:
            return None
        out, marker = [], 0
        try:
            while True:
                resp = self.client.get_object_attributes(
                    Bucket=self.bucket, Key=key, ObjectAttributes=["ObjectParts"], **_version(version),
                    MaxParts=1000, PartNumberMarker=marker)
                block = resp.get("ObjectParts") or {}
                for p in block.get("Parts") or []:
                    if not p.get("ChecksumSHA256") or "Size" not in p:
                        return None
                    out.append((p["PartNumber"], p["Size"],
                                base64.b64decode(p["ChecksumSHA256"]), None))
                if not block.get("IsTruncated"):
                    break
                marker = block.get("NextPartNumberMarker", 0)
        except _NotAttributes:
            self._lists_parts = False
            return None
        except Exception as exc:  # noqa: BLE001 - unsupported, or not permitted: fall back
            if error_code(exc) in _aws.AUTH_CODES - {"AccessDenied", "403", "Forbidden"}:
                raise _aws.translate(exc, f"{self.url}: stat parts") from None  # bad keys
            return None
        if len(out) != count or [p[0] for p in out] != list(range(1, count + 1)):
            return None
        return out


def _lock_settings(mode, days) -> tuple[Optional[str], Optional[int]]:
    if mode is None:
        if days is not None:
            raise UsageError("lock_days needs object_lock = \"governance\" or \"compliance\"")
        return None, None
    mode = str(mode).lower()
    if mode not in LOCK_MODES:
        raise UsageError(f"object_lock {mode!r}: use governance or compliance")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36500:
        raise UsageError(f"object_lock = {mode!r} needs lock_days, a whole number of days (1..36500)")
    return mode, days


def _lock_of(head: dict) -> tuple[float, Optional[str]]:
    """(retain-until epoch or 0, mode) as a HEAD reports them."""
    until = head.get("ObjectLockRetainUntilDate")
    mode = head.get("ObjectLockMode")
    return (until.timestamp() if until else 0.0), (mode.lower() if mode else None)


def _even_ranges(size: int) -> list[_Range]:
    return [_Range(i + 1, off, min(READ_RANGE, size - off)) for i, off in enumerate(range(0, size, READ_RANGE))]


def _lifecycle(rules: list, prefix: str) -> list[Check]:
    """Rules that reach zfsglacier's keys: an expiration deletes archives a chain needs; a
    transition moves them to another class (priced as it, but perhaps not readable at once)."""
    out = []
    for rule in rules:
        if rule.get("Status") != "Enabled":
            continue
        flt = rule.get("Filter") or {}
        rp = rule.get("Prefix", flt.get("Prefix", (flt.get("And") or {}).get("Prefix", ""))) or ""
        if not (prefix.startswith(rp) or rp.startswith(prefix)):
            continue
        name = rule.get("ID") or rp or "(all keys)"
        exp = rule.get("Expiration") or {}
        if exp.get("Days") or exp.get("Date"):
            when = f"{exp['Days']} days" if exp.get("Days") else str(exp["Date"])
            out.append(Check("lifecycle", "fail", f"rule {name} deletes objects under {rp or '/'} after {when}: a "
                                                  f"chain would lose its full; exclude {prefix or 'the bucket'}"))
        for t in rule.get("Transitions") or []:
            out.append(Check("lifecycle", "warn", f"rule {name} moves objects to {t.get('StorageClass')} after "
                                                  f"{t.get('Days', t.get('Date'))} days (reads may need a thaw)"))
        abort = (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
        if abort is not None:
            out.append(Check("lifecycle", "info", f"rule {name} aborts unfinished uploads after {abort} days "
                                                  f"(a resume must come before)"))
    return out or [Check("lifecycle", "ok", "no rule expires or moves zfsglacier's objects")]


class _NotAttributes(Exception):
    """The server answered GetObjectAttributes with something that is not its XML."""


def _attributes_or_nothing(client, request):
    """botocore's before-send for GetObjectAttributes: send it here and look at the answer before
    its body is read.  A server without the call (RGW) sends the whole object back, which botocore
    would read into memory, take for a cut XML reply and fetch again, 8 times: an answer that is
    not XML, or too long to be one, is closed unread and raises _NotAttributes, which botocore
    does not retry."""
    request.stream_output = True  # else the session reads the whole body before returning
    resp = client._endpoint.http_session.send(request)  # the client's own pool, TLS and proxy settings
    kind = (resp.headers.get("Content-Type") or "").lower()
    length = resp.headers.get("Content-Length")
    if "xml" not in kind or (length is not None and int(length) > ATTRIBUTES_LIMIT):
        resp.raw.close()
        raise _NotAttributes(f"GetObjectAttributes answered with {kind or 'no type'}, {length} bytes")
    return resp



class _Whole:
    """Checks an object stored in one piece: its full SHA-256 or its MD5 ETag."""

    part_sha = part_md5 = False  # needs no digest of each part: hashes the bytes themselves

    def __init__(self, sha256_b64: Optional[str], md5_hex: Optional[str]):
        self.sha = sha256_b64
        self.md5 = md5_hex
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5()

    def can_check(self) -> bool:
        return bool(self.sha or self.md5)

    def add(self, data: bytes, sha: bytes, md5: Optional[bytes]) -> None:
        if self.sha:
            self._sha.update(data)
        elif self.md5:
            self._md5.update(data)

    def check_empty(self, what: str) -> None:
        self.verify(what)

    def verify(self, what: str) -> None:
        ok = (b64(self._sha.digest()) == self.sha) if self.sha else \
            (self._md5.hexdigest() == self.md5)
        if not ok:
            raise IntegrityError(f"{what}: the bytes read do not match the object's checksum")


class _Composite(_Whole):
    """Checks a multipart object: SHA-256 of the part SHA-256s, or MD5 of the part MD5s."""

    def __init__(self, sha256_b64: Optional[str], etag: Optional[str]):
        super().__init__(sha256_b64, etag)
        self.part_sha, self.part_md5 = bool(sha256_b64), not sha256_b64 and bool(etag)
        self._shas: list[bytes] = []
        self._md5s: list[bytes] = []

    def add(self, data: bytes, sha: bytes, md5: Optional[bytes]) -> None:
        self._shas.append(sha)
        if md5 is not None:
            self._md5s.append(md5)

    def verify(self, what: str) -> None:
        if self.sha:
            ok = b64(hashlib.sha256(b"".join(self._shas)).digest()) == self.sha
        else:
            ok = f"{hashlib.md5(b''.join(self._md5s)).hexdigest()}-{len(self._md5s)}" == self.md5
        if not ok:
            raise IntegrityError(f"{what}: the parts read do not match the object's checksum")
