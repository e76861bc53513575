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
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import hashlib
import re
from dataclasses import dataclass
from typing import Iterator, Optional

from ..plumbing.concurrency import parallel_map
from ..errors import IntegrityError, NotFoundError, StoreError, UsageError
from ..plumbing.parts import (MAX_PARTS, S3_MAX_PART, S3_MIN_PART, MiB, OrderedReader, Part, PartDone, PartPlan,
                              retry_call, s3_plan)
from . import _aws
from ._aws import aws_errors, b64, call, error_code
from .base import (THAW_WAIT, ArchiveInfo, Properties, ExistingPart, IncompleteUpload, Store, ThawStatus,
                   UploadSession, check_id, check_tier, metadata_size, new_archive_id, pending,
                   refuse_large_metadata)

STORAGE_CLASSES = ("DEEP_ARCHIVE", "GLACIER", "GLACIER_IR", "STANDARD_IA", "STANDARD")
COLD = {"GLACIER", "DEEP_ARCHIVE"}
METADATA_LIMIT = 2048
READ_RANGE = 16 * MiB  # range size for objects stored in one piece
SUFFIX = ".zg"
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
_KMS = ("aws:kms", "aws:kms:dsse")


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
        self.c = store.client

    def _what(self, action: str) -> str:
        return f"{self.store.url}: {action} {self.id}"

    def begin(self) -> None:
        resp = call(self.c.create_multipart_upload, self._what("start upload of"),
                    Bucket=self.store.bucket, Key=self.key, Metadata=self.metadata,
                    StorageClass=self.store.storage_class, ChecksumAlgorithm="SHA256",
                    ContentType="application/octet-stream")
        self.upload_id = resp["UploadId"]
        self.composite_promised = resp.get("ChecksumAlgorithm") == "SHA256"

    def send_part(self, part: Part) -> dict:
        resp = call(self.c.upload_part, self._what(f"upload part {part.number} of"),
                    retry_drops=True, Bucket=self.store.bucket, Key=self.key,
                    UploadId=self.upload_id, PartNumber=part.number, Body=part.data,
                    ChecksumSHA256=b64(part.sha256))
        receipt = {"ETag": resp["ETag"], "ChecksumSHA256": b64(part.sha256), "md5": None}
        echoed = resp.get("ChecksumSHA256")
        if echoed:
            if echoed != receipt["ChecksumSHA256"]:
                raise IntegrityError(f"{self._what('upload of')}: S3 stored part {part.number} "
                                     f"with another SHA-256 than was sent")
        elif not self.composite_promised:  # only the ETag (an MD5) can tell what was stored
            md5 = _plain_md5(resp)
            local = hashlib.md5(part.data).hexdigest()
            if md5 is not None and md5 != local:
                raise IntegrityError(f"{self._what('upload of')}: S3 stored part {part.number} "
                                     f"with another MD5 than was sent")
            receipt["md5"] = local
        return receipt

    def reuse_part(self, existing: ExistingPart, part: Part) -> Optional[dict]:
        listed = existing.check or {}
        receipt = {"ETag": listed.get("ETag"), "ChecksumSHA256": b64(part.sha256), "md5": None}
        if listed.get("ChecksumSHA256"):
            return receipt if listed["ChecksumSHA256"] == receipt["ChecksumSHA256"] else None
        md5 = _plain_md5(listed)
        if md5 is not None and md5 == hashlib.md5(part.data).hexdigest():
            receipt["md5"] = md5
            return receipt
        return None

    def put_single(self, data: bytes, sha256: bytes) -> ArchiveInfo:
        resp = call(self.c.put_object, self._what("upload"), retry_drops=True,
                    Bucket=self.store.bucket, Key=self.key, Body=data,
                    ChecksumSHA256=b64(sha256), Metadata=self.metadata,
                    StorageClass=self.store.storage_class,
                    ContentType="application/octet-stream")
        if resp.get("ChecksumSHA256") and resp["ChecksumSHA256"] != b64(sha256):
            self._discard_object("its SHA-256 differs from what was sent")
        return self._verify(len(data), b64(sha256), hashlib.md5(data).hexdigest())

    def complete(self, parts: list[PartDone], size: int, sha256: bytes) -> ArchiveInfo:
        listing = [{"PartNumber": p.number, "ETag": p.receipt["ETag"],
                    "ChecksumSHA256": p.receipt["ChecksumSHA256"]} for p in parts]
        try:
            call(self.c.complete_multipart_upload, self._what("complete upload of"),
                 Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id,
                 MultipartUpload={"Parts": listing})
        except StoreError as exc:
            # A retried complete whose first try succeeded finds no upload: check the object.
            if exc.code != "NoSuchUpload":
                raise
        self.upload_id = None  # the object exists now: abort must delete it instead
        composite = b64(hashlib.sha256(b"".join(p.sha256 for p in parts)).digest())
        md5s = [p.receipt.get("md5") for p in parts]
        etag = None
        if all(md5s):
            joined = b"".join(bytes.fromhex(m) for m in md5s)
            etag = f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"
        return self._verify(size, composite, etag)

    def _verify(self, size: int, checksum: str, etag: Optional[str]) -> ArchiveInfo:
        """Compare S3's view of the new object with the local one; delete it on mismatch."""
        self.completed = True
        head = self.store._head(self.key, self.id, ChecksumMode="ENABLED")
        remote = _strip_count(head.get("ChecksumSHA256"))
        if head["ContentLength"] != size:
            self._discard_object(f"S3 holds {head['ContentLength']} bytes, {size} were sent")
        elif remote is not None:
            if remote != checksum:
                self._discard_object("S3's SHA-256 checksum differs from the local one")
        elif etag is not None and head.get("ServerSideEncryption") not in _KMS:
            if _etag(head.get("ETag")) != etag:
                self._discard_object("S3's MD5 ETag differs from the local one")
        else:
            self._discard_object("S3 returned no checksum to compare with")
        return self.store._info(self.id, head)

    def _discard_object(self, why: str) -> None:
        self.completed = False
        try:
            self.c.delete_object(Bucket=self.store.bucket, Key=self.key)
            fate = "it was deleted"
        except Exception:  # noqa: BLE001 - report the mismatch, not this
            fate = "deleting it failed too: delete it by hand"
        raise IntegrityError(f"{self.store.url}: uploaded archive {self.id} does not match the "
                             f"local data ({why}); {fate}")

    def abort(self) -> None:
        if self.completed:  # completed but not verified: do not leave it looking good
            self.completed = False
            call(self.c.delete_object, self._what("delete unverified"),
                 Bucket=self.store.bucket, Key=self.key)
        if self.upload_id is None:
            return
        upload_id, self.upload_id = self.upload_id, None
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
                 region: Optional[str] = None, retry_mode: str = "standard",
                 max_attempts: int = 8, connect_attempts: int = 3, connect_timeout: float = _aws.CONNECT_TIMEOUT,
                 read_timeout: float = _aws.READ_TIMEOUT, url: Optional[str] = None, client=None):
        storage_class = str(storage_class).upper()
        if storage_class not in STORAGE_CLASSES:
            raise UsageError(f"storage class {storage_class!r}: use one of "
                             f"{', '.join(STORAGE_CLASSES)}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.storage_class = storage_class
        self.part_size = part_size
        self.url = url or f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = client
        self._client_args = dict(profile=profile, region=region, retry_mode=retry_mode,
                                 max_attempts=max_attempts, connect_attempts=connect_attempts,
                                 connect_timeout=connect_timeout, read_timeout=read_timeout)
        s3_plan(first=part_size)  # refuse a bad part size now, not mid-stream

    @property
    def properties(self) -> Properties:
        return Properties(cold=self.storage_class in COLD, price_class=self.storage_class,
                          checksum="sha256-composite", min_part=S3_MIN_PART, max_part=S3_MAX_PART,
                          max_parts=MAX_PARTS, metadata_limit=METADATA_LIMIT,
                          hot_options=None if self.storage_class == "STANDARD" else {"storage_class": "STANDARD"})

    def price_class(self, storage_class=None) -> str:
        """Each object keeps the class it was stored in (a lifecycle rule may have moved it)."""
        return (storage_class or self.storage_class).upper()

    @property
    def client(self):
        """The boto3 S3 client (created on first use: no network before that)."""
        if self._client is None:
            self._client = _aws.make_client("s3", **self._client_args)
        return self._client

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

    # ---- uploads
    def _plan(self, expected_size=None) -> PartPlan:
        return s3_plan(expected_size, first=self.part_size)

    def _new_session(self, metadata, expected_size) -> S3Session:
        refuse_large_metadata(metadata, metadata_size(metadata), METADATA_LIMIT,
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
    def _head(self, key: str, archive_id: str, **kw) -> dict:
        try:
            return call(self.client.head_object, f"{self.url}: stat {archive_id}",
                        not_found=f"no archive {archive_id} in {self.url}",
                        Bucket=self.bucket, Key=key, **kw)
        except NotFoundError:
            self._check_bucket()
            raise

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
        return ArchiveInfo(archive_id, head["ContentLength"], sha,
                           head["LastModified"].timestamp(), dict(head.get("Metadata") or {}),
                           cls, state, checksum)

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

    def delete(self, id: str) -> None:
        key = self.key(id)
        self._head(key, id)
        call(self.client.delete_object, f"{self.url}: delete {id}", Bucket=self.bucket, Key=key)

    # ---- thaw
    def request_thaw(self, id: str, tier: str = "Standard", days: int = 7) -> ThawStatus:
        check_tier(tier)
        head = self._head(self.key(id), id)
        cls = head.get("StorageClass") or "STANDARD"
        if cls not in COLD:
            return self._status(id, head, tier)
        if (cls, tier) not in THAW_WAIT:
            raise UsageError(f"{cls} has no {tier} retrieval: use Standard (up to 12 hours) or "
                             f"Bulk (up to 48 hours)")
        if parse_restore(head.get("Restore"))[0] != "thawing":  # thawed: extends the copy
            try:
                call(self.client.restore_object, f"{self.url}: restore {id}",
                     Bucket=self.bucket, Key=self.key(id),
                     RestoreRequest={"Days": int(days), "GlacierJobParameters": {"Tier": tier}})
            except StoreError as exc:
                if exc.code != "RestoreAlreadyInProgress":
                    raise
            head = self._head(self.key(id), id)
        return self._status(id, head, tier)

    def thaw_status(self, id: str) -> ThawStatus:
        return self._status(id, self._head(self.key(id), id), "Standard")

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
    def open_read(self, id: str, *, jobs: int = 4, start: int = 0) -> OrderedReader:
        key = self.key(id)
        head = self._head(key, id, ChecksumMode="ENABLED")
        cls = head.get("StorageClass") or "STANDARD"
        if cls in COLD:
            state = parse_restore(head.get("Restore"))[0]
            if state != "thawed":
                detail = ("its restore is still in progress" if state == "thawing"
                          else "is not restored")
                raise pending(self.url, id, cls, detail)
        size = head["ContentLength"]
        etag = _etag(head.get("ETag"))
        checksum = _strip_count(head.get("ChecksumSHA256"))
        if "-" in etag:
            ranges = self._part_ranges(key, id, int(etag.rsplit("-", 1)[1]), jobs)
            if sum(r.size for r in ranges) != size:
                raise IntegrityError(f"{self.url}: archive {id}: its parts do not add up to "
                                     f"its size")
            whole = _Composite(checksum, etag if all(r.md5 for r in ranges) else None)
        else:
            ranges = [_Range(i + 1, off, min(READ_RANGE, size - off))
                      for i, off in enumerate(range(0, size, READ_RANGE))]
            whole = _Whole(checksum, _plain_md5(head))
        if not whole.can_check():
            raise IntegrityError(f"{self.url}: archive {id}: S3 reports no checksum to verify "
                                 f"it against")
        if size == 0:
            whole.check_empty(f"{self.url}: archive {id}")
        digests: dict[int, tuple[bytes, Optional[bytes]]] = {}

        def fetch(r: _Range) -> bytes:
            for attempt in (1, 2):  # a mismatch may be damage in transit: fetch once more
                data = self._get_range(key, id, r)
                sha = hashlib.sha256(data).digest()
                md5 = hashlib.md5(data).digest() if whole.wants_md5 or r.md5 else None
                bad = ((r.sha256 is not None and sha != r.sha256)
                       or (r.md5 is not None and md5.hex() != r.md5))
                if not bad:
                    digests[r.number] = (sha, md5)
                    return data
            raise IntegrityError(f"{self.url}: archive {id}: part {r.number} (bytes {r.offset}-"
                                 f"{r.offset + r.size - 1}) does not match its checksum")

        def deliver(r: _Range, data: bytes, last: bool) -> None:
            whole.add(data, *digests.pop(r.number))
            if last:
                whole.verify(f"{self.url}: archive {id}")

        reader = OrderedReader(ranges, fetch, jobs=jobs, start=start,
                               deliver=None if start else deliver)
        if not start and whole.sha:
            reader.verifies = self._info(id, head).checksum
        return reader

    def _get_range(self, key: str, archive_id: str, r: _Range) -> bytes:
        def once() -> bytes:
            resp = self.client.get_object(Bucket=self.bucket, Key=key,
                                          Range=f"bytes={r.offset}-{r.offset + r.size - 1}")
            with resp["Body"] as body:
                return body.read()

        try:
            with aws_errors(f"{self.url}: read {archive_id}",
                            not_found=f"no archive {archive_id} in {self.url}"):
                data = retry_call(once, transient=_aws.is_transient)
        except StoreError as exc:
            if exc.code == "InvalidObjectState":
                raise pending(self.url, archive_id, "cold storage", "is not restored (any more)") from None
            raise
        if len(data) != r.size:
            raise IntegrityError(f"{self.url}: archive {archive_id}: got {len(data)} bytes for "
                                 f"part {r.number}, expected {r.size}")
        return data

    def _part_ranges(self, key: str, archive_id: str, count: int, jobs: int) -> list[_Range]:
        """Sizes and expected checksums of each part: GetObjectAttributes when S3 lists part
        checksums, else HEAD ?partNumber=N for each part (size and, where it is one, MD5 ETag)."""
        parts = self._attribute_parts(key, count)
        if parts is None:
            what = f"{self.url}: stat parts of {archive_id}"

            def head_part(n: int) -> dict:
                return call(self.client.head_object, what, Bucket=self.bucket, Key=key,
                            PartNumber=n)

            heads = parallel_map(head_part, range(1, count + 1), jobs)
            parts = [(n, h["ContentLength"], None, _plain_md5(h))
                     for n, h in enumerate(heads, 1)]
        ranges, offset = [], 0
        for n, size, sha, md5 in parts:
            ranges.append(_Range(n, offset, size, sha, md5))
            offset += size
        return ranges

    def _attribute_parts(self, key: str, count: int):
        out, marker = [], 0
        try:
            while True:
                resp = self.client.get_object_attributes(
                    Bucket=self.bucket, Key=key, ObjectAttributes=["ObjectParts"],
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
        except Exception as exc:  # noqa: BLE001 - unsupported, or not permitted: fall back
            if error_code(exc) in _aws.AUTH_CODES - {"AccessDenied", "403", "Forbidden"}:
                raise _aws.translate(exc, f"{self.url}: stat parts") from None  # bad keys
            return None
        if len(out) != count or [p[0] for p in out] != list(range(1, count + 1)):
            return None
        return out


class _Whole:
    """Checks an object stored in one piece: its full SHA-256 or its MD5 ETag."""

    def __init__(self, sha256_b64: Optional[str], md5_hex: Optional[str]):
        self.sha = sha256_b64
        self.md5 = md5_hex
        self.wants_md5 = sha256_b64 is None and md5_hex is not None
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
