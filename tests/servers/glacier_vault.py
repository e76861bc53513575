"""A strict in-process stand-in for the Amazon Glacier *vault* REST API (2012-06-01).

Why: moto's vault API has no multipart upload, no tree-hash checks and no ranged job output, so
the vault store could pass against moto and still fail against AWS. This server speaks the REST
API boto3's ``glacier`` client uses (``/{accountId}/vaults/{vault}/...``) and refuses what AWS
refuses, with AWS's JSON error shape ``{"code", "message", "type"}`` and HTTP status, so botocore
raises ClientErrors carrying the same codes. Loopback only (127.0.0.1), data in a temp directory.

What it checks (-> error code, HTTP status):
  every request     | ``Authorization: AWS4-HMAC-SHA256 Credential=...`` present (signature NOT
                    |   verified) -> MissingAuthenticationTokenException / IncompleteSignature 403;
                    | ``x-amz-glacier-version`` present -> MissingParameterValueException 400;
                    | account id ``-`` or the configured one -> AccessDeniedException 403
  vault name        | 1-255 of ``[A-Za-z0-9_.-]`` -> InvalidParameterValueException 400;
                    | vault exists -> ResourceNotFoundException 404
  DeleteVault       | vault empty (no archives) -> InvalidParameterValueException
  descriptions      | <= 1,024 printable ASCII (0x20-0x7E), archives and jobs -> InvalidParameterValue
  UploadArchive     | Content-Length present (no chunked) and 1 B..4 GiB; ``x-amz-content-sha256`` =
                    |   SHA-256 of the body; ``x-amz-sha256-tree-hash`` = tree hash of the body
  InitiateMultipart | ``x-amz-part-size`` a power of two, 1 MiB..4 GiB
  UploadMultipart-  | upload exists (404 otherwise); ``Content-Range: bytes a-b/*`` well formed,
    Part            |   ``a`` a multiple of the part size, length = Content-Length <= part size,
                    |   part index < 10,000; both body hashes as for UploadArchive
  ListParts/Uploads/| ``limit`` an integer 1..1000 (defaults: 50, vaults 10); ``marker`` one this
    Jobs/Vaults     |   server issued
  CompleteMultipart | ``x-amz-archive-size`` and ``x-amz-sha256-tree-hash`` present; parts cover
                    |   0..size-1 contiguously; every part but the last is exactly the part size;
                    |   sizes add up to ``x-amz-archive-size``; tree hash of the assembled bytes
                    |   equals the header. Idempotent: repeating a successful complete (same size
                    |   and hash) within ``complete_memory`` seconds returns the same archive id
  DeleteArchive     | archive exists -> ResourceNotFoundException
  InitiateJob       | Type archive-retrieval (ArchiveId exists; Tier Expedited/Standard/Bulk;
                    |   RetrievalByteRange ``a-b`` megabyte aligned: a % 1 MiB == 0 and b+1 a
                    |   multiple of 1 MiB or b the last byte) or inventory-retrieval (Format JSON or
                    |   CSV; StartDate/EndDate filter); other types -> InvalidParameterValue;
                    |   ``select`` and inventory Limit/Marker -> 501 NotImplemented
  DescribeJob,      | job exists and has not expired: output lives ``output_ttl`` (24 h) after
    GetJobOutput    |   completion by the stand-in's clock -> ResourceNotFoundException afterwards
  GetJobOutput      | job completed (else InvalidParameterValueException, as AWS); ``Range:
                    |   bytes=a-b`` or ``bytes=a-`` inside the output; for archive output a % 1 MiB
                    |   == 0 and b+1 % 1 MiB == 0 or b the last byte (STRICTER than AWS, which
                    |   needs this only to send a checksum). Answers 206 + Content-Range for a
                    |   range. ``x-amz-sha256-tree-hash`` is sent only when both the job's range and
                    |   the downloaded range are tree-hash aligned to the archive (AWS "Receiving
                    |   Checksums When Downloading Data"); otherwise the header is ABSENT (not
                    |   the whole archive's hash): a client must accept a missing checksum.
  error codes       | AWS does not document the code for a wrong ``x-amz-content-sha256``; the
                    |   stand-in answers InvalidParameterValueException (400) as for the tree hash.

What it does NOT do: verify signatures or credentials; regions; IAM/vault policies, tags, vault
lock, notifications/SNS, provisioned capacity, data-retrieval policies, select jobs (all answer
501 NotImplemented); inventory lag (an inventory job snapshots the vault when initiated, and
DescribeVault counts are live, LastInventoryDate is null); DeleteVault's "written since the last
inventory" rule; multipart uploads expiring after 24 h idle; throttling, retrieval pricing caps.
Job timing is by ``delays`` (per tier and ``inventory``) on an injectable clock; deleted archives'
files stay on disk until ``stop()`` so running jobs can still read them.

Test hooks: ``standin.clock.advance(seconds)`` (finish jobs, expire output), ``standin.calls``
(requests per operation), ``archive_ids(vault)``, ``corrupt(vault, archive_id, offset)`` (rot at
rest: the stored checksums stay, so downloads no longer match them).

Usage: ``url = GlacierStandIn().start()`` ... ``.stop()``; or
``python3 -m tests.servers.glacier_vault --port N`` (prints the URL, serves until SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, unquote, urlsplit

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from zfsglacier.plumbing.treehash import MIB, TreeHasher, combine, is_tree_hash_aligned  # noqa: E402

DEFAULT_DELAYS = {"Expedited": 0.2, "Standard": 0.5, "Bulk": 1.0, "inventory": 0.5}
TIERS = ("Expedited", "Standard", "Bulk")
OUTPUT_TTL = 24 * 3600.0
MAX_PARTS = 10_000
MAX_PART_SIZE = 4 << 30
MAX_SINGLE_UPLOAD = 4 << 30
MAX_DESCRIPTION = 1024
COPY_CHUNK = MIB
ARCHIVE_ID_LEN = 138
JOB_ID_LEN = 92

_VAULT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}\Z")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/\*\Z")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


class GlacierError(Exception):
    """An AWS-shaped error answer: HTTP status, error code, message."""

    def __init__(self, status: int, code: str, message: str, kind: str = "Client") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.kind = status, code, message, kind


def _invalid(message: str) -> GlacierError:
    return GlacierError(400, "InvalidParameterValueException", message)


def _missing(message: str) -> GlacierError:
    return GlacierError(400, "MissingParameterValueException", message)


def _not_found(message: str) -> GlacierError:
    return GlacierError(404, "ResourceNotFoundException", message)


class _ClientGone(Exception):
    """The client closed or stalled while sending a body: no answer is possible or useful."""


class Clock:
    """Wall-clock time plus an offset tests can advance, so 24-hour expiry is testable at once."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def _iso(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _new_id(length: int) -> str:
    return secrets.token_urlsafe(length)[:length]


@dataclass
class Archive:
    id: str
    description: str
    created: float
    size: int
    tree_hash: str
    leaves: list  # 1 MiB leaf digests, for checksums of ranges
    path: Path


@dataclass
class Part:
    size: int
    tree_hash: str
    path: Path


@dataclass
class Upload:
    id: str
    description: str
    part_size: int
    created: float
    parts: dict = field(default_factory=dict)  # index -> Part


@dataclass
class Job:
    id: str
    action: str  # "ArchiveRetrieval" | "InventoryRetrieval"
    description: str | None
    created: float
    ready_at: float
    tier: str
    archive: Archive | None = None
    start: int = 0
    end: int = -1  # inclusive; the retrieved range of the archive
    range_given: bool = False
    fmt: str = "JSON"
    inventory: bytes = b""
    inventory_params: dict | None = None


@dataclass
class Vault:
    name: str
    created: float
    archives: dict = field(default_factory=dict)
    uploads: dict = field(default_factory=dict)
    jobs: dict = field(default_factory=dict)
    completed: dict = field(default_factory=dict)  # upload id -> (when, size, hash, Archive)


@dataclass
class _Body:
    """A request body received into a temp file, with both of its hashes."""

    path: Path
    size: int
    sha256: str
    hasher: TreeHasher


@dataclass
class _FileSlice:
    path: Path
    start: int
    length: int


class GlacierStandIn:
    """The vault API server: ``start()`` returns ``http://127.0.0.1:PORT``; ``stop()`` ends it.

    ``delays`` maps tier names and ``"inventory"`` to seconds until a job completes; ``clock`` is
    a callable giving epoch seconds (default: a ``Clock`` tests can ``advance``); ``output_ttl``
    is how long completed job output stays downloadable.
    """

    def __init__(
        self,
        *,
        delays: dict | None = None,
        clock: Callable[[], float] | None = None,
        output_ttl: float = OUTPUT_TTL,
        data_dir: str | os.PathLike | None = None,
        account_id: str = "123456789012",
        region: str = "us-east-1",
        port: int = 0,
        request_timeout: float = 30.0,
        complete_memory: float = 3600.0,
        verbose: bool = False,
    ) -> None:
        self.delays = {**DEFAULT_DELAYS, **(delays or {})}
        self.clock = clock if clock is not None else Clock()
        self.output_ttl = output_ttl
        self.account_id = account_id
        self.region = region
        self.port = port
        self.request_timeout = request_timeout
        self.complete_memory = complete_memory
        self.verbose = verbose
        self.calls: Counter = Counter()  # operation name -> requests seen, for tests
        self._data_dir_arg = data_dir
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.data_dir: Path | None = None
        self._vaults: dict[str, Vault] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url: str | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> str:
        """Bind 127.0.0.1 and serve in a daemon thread; returns the endpoint URL."""
        if self._server is not None:
            raise RuntimeError("already started")
        if self._data_dir_arg is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="glacier-standin-")
            self.data_dir = Path(self._tmp.name)
        else:
            self.data_dir = Path(self._data_dir_arg)
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = _Server(("127.0.0.1", self.port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        """Stop serving, cut open connections, remove the temp directory."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_all()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "GlacierStandIn":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------- test helpers
    def archive_ids(self, vault: str) -> list[str]:
        """Ids of the archives now in ``vault`` (no inventory job needed)."""
        with self._lock:
            return list(self._vault(vault).archives)

    def corrupt(self, vault: str, archive_id: str, offset: int = 0) -> None:
        """Flip one stored byte, keeping the recorded checksums: simulates rot at rest."""
        with self._lock:
            path = self._archive(self._vault(vault), archive_id).path
        with open(path, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0xFF]))

    # ----------------------------------------------------------------- lookups
    def _arn(self, vault: str) -> str:
        return f"arn:aws:glacier:{self.region}:{self.account_id}:vaults/{vault}"

    def _vault(self, name: str) -> Vault:
        if not _VAULT_NAME.match(name):
            raise _invalid(f"Invalid vault name: {name}")
        vault = self._vaults.get(name)
        if vault is None:
            raise _not_found(f"Vault not found for ARN: {self._arn(name)}")
        return vault

    @staticmethod
    def _archive(vault: Vault, archive_id: str) -> Archive:
        archive = vault.archives.get(archive_id)
        if archive is None:
            raise _not_found(f"Archive not found: {archive_id}")
        return archive

    @staticmethod
    def _upload(vault: Vault, upload_id: str) -> Upload:
        upload = vault.uploads.get(upload_id)
        if upload is None:
            raise _not_found(f"Multipart upload not found: {upload_id}")
        return upload

    def _job(self, vault: Vault, job_id: str) -> Job:
        job = vault.jobs.get(job_id)
        if job is None or self._expired(job):
            raise _not_found(f"The job ID was not found: {job_id}")
        return job

    def _expired(self, job: Job) -> bool:
        return self.clock() > job.ready_at + self.output_ttl

    def _done(self, job: Job) -> bool:
        return self.clock() >= job.ready_at

    @staticmethod
    def _description(value: str | None, what: str = "archive description") -> str:
        value = value or ""
        if len(value) > MAX_DESCRIPTION or any(not 0x20 <= ord(c) <= 0x7E for c in value):
            raise _invalid(f"Invalid {what}: at most {MAX_DESCRIPTION} printable ASCII characters")
        return value

    def _new_file(self, prefix: str) -> Path:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=self.data_dir)
        os.close(fd)
        return Path(name)

    # ----------------------------------------------------------------- vaults
    def op_create_vault(self, req: "_Request", name: str):
        if not _VAULT_NAME.match(name):
            raise _invalid(f"Invalid vault name: {name}")
        with self._lock:
            self._vaults.setdefault(name, Vault(name, self.clock()))
        return 201, {"Location": f"/{self.account_id}/vaults/{name}"}, None

    def _vault_json(self, vault: Vault) -> dict:
        return {
            "VaultARN": self._arn(vault.name),
            "VaultName": vault.name,
            "CreationDate": _iso(vault.created),
            "LastInventoryDate": None,
            "NumberOfArchives": len(vault.archives),
            "SizeInBytes": sum(a.size for a in vault.archives.values()),
        }

    def op_describe_vault(self, req: "_Request", name: str):
        with self._lock:
            return 200, {}, self._vault_json(self._vault(name))

    def op_list_vaults(self, req: "_Request"):
        with self._lock:
            vaults = sorted(self._vaults.values(), key=lambda v: v.name)
            page, marker = _page(vaults, lambda v: self._arn(v.name), req, default=10)
            return 200, {}, {"VaultList": [self._vault_json(v) for v in page], "Marker": marker}

    def op_delete_vault(self, req: "_Request", name: str):
        with self._lock:
            vault = self._vault(name)
            if vault.archives:
                raise _invalid(f"Vault not empty or recently written to: {self._arn(name)}")
            del self._vaults[name]
        return 204, {}, None

    # ----------------------------------------------------------------- archives
    def _check_hashes(self, req: "_Request", body: _Body) -> str:
        """Compare the received body with its two declared hashes; returns the tree hash."""
        tree = body.hasher.hexdigest()
        if req.header("x-amz-content-sha256") != body.sha256:
            raise _invalid(
                f"Invalid x-amz-content-sha256: {req.header('x-amz-content-sha256')}; "
                f"computed {body.sha256}"
            )
        if req.header("x-amz-sha256-tree-hash") != tree:
            raise _invalid(
                f"Invalid x-amz-sha256-tree-hash: {req.header('x-amz-sha256-tree-hash')}; "
                f"computed {tree}"
            )
        return tree

    def _receive_checked(self, req: "_Request", max_size: int, prefix: str) -> tuple[_Body, str]:
        """Receive a hashed upload body into a temp file; removes it again if a check fails."""
        for name in ("x-amz-content-sha256", "x-amz-sha256-tree-hash"):
            if not req.header(name):
                raise _missing(f"Required header missing: {name}")
        length = req.content_length()
        if not 1 <= length <= max_size:
            raise _invalid(f"Invalid Content-Length: {length}")
        body = req.receive(self._new_file(prefix), keep_leaves=True)
        try:
            return body, self._check_hashes(req, body)
        except BaseException:
            body.path.unlink(missing_ok=True)
            raise

    def op_upload_archive(self, req: "_Request", name: str):
        description = self._description(req.header("x-amz-archive-description"))
        with self._lock:
            self._vault(name)
        body, tree = self._receive_checked(req, MAX_SINGLE_UPLOAD, "archive-")
        archive = Archive(
            _new_id(ARCHIVE_ID_LEN), description, self.clock(), body.size, tree,
            body.hasher.leaves(), body.path,
        )
        return self._store_archive(name, archive)

    def _store_archive(self, name: str, archive: Archive):
        with self._lock:
            try:
                vault = self._vault(name)
            except GlacierError:
                archive.path.unlink(missing_ok=True)
                raise
            vault.archives[archive.id] = archive
        return self._archive_created(name, archive)

    def _archive_created(self, name: str, archive: Archive):
        return 201, {
            "Location": f"/{self.account_id}/vaults/{name}/archives/{archive.id}",
            "x-amz-archive-id": archive.id,
            "x-amz-sha256-tree-hash": archive.tree_hash,
        }, None

    def op_delete_archive(self, req: "_Request", name: str, archive_id: str):
        with self._lock:
            vault = self._vault(name)
            self._archive(vault, archive_id)
            del vault.archives[archive_id]  # file kept for running jobs; removed at stop()
        return 204, {}, None

    # ----------------------------------------------------------------- multipart
    def op_initiate_multipart(self, req: "_Request", name: str):
        description = self._description(req.header("x-amz-archive-description"))
        raw = req.header("x-amz-part-size")
        if not raw:
            raise _missing("Required header missing: x-amz-part-size")
        try:
            part_size = int(raw)
        except ValueError:
            raise _invalid(f"Invalid part size: {raw}") from None
        if not (MIB <= part_size <= MAX_PART_SIZE and part_size & (part_size - 1) == 0):
            raise _invalid(
                f"Invalid part size: {part_size}. Part size must be a power of two "
                f"(megabytes) between 1 MiB and 4 GiB"
            )
        with self._lock:
            vault = self._vault(name)
            upload = Upload(_new_id(JOB_ID_LEN), description, part_size, self.clock())
            vault.uploads[upload.id] = upload
        return 201, {
            "Location": f"/{self.account_id}/vaults/{name}/multipart-uploads/{upload.id}",
            "x-amz-multipart-upload-id": upload.id,
        }, None

    def op_upload_part(self, req: "_Request", name: str, upload_id: str):
        with self._lock:
            part_size = self._upload(self._vault(name), upload_id).part_size
        raw = req.header("Content-Range")
        if not raw:
            raise _missing("Required header missing: Content-Range")
        m = _CONTENT_RANGE.match(raw)
        if not m:
            raise _invalid(f"Invalid Content-Range: {raw}")
        first, last = int(m.group(1)), int(m.group(2))
        length = last - first + 1
        if first % part_size or length < 1 or length > part_size:
            raise _invalid(
                f"Invalid Content-Range: {raw}; parts must start on a multiple of the part "
                f"size {part_size} and be at most that long"
            )
        index = first // part_size
        if index >= MAX_PARTS:
            raise _invalid(f"Invalid Content-Range: {raw}; at most {MAX_PARTS} parts")
        if req.content_length() != length:
            raise _invalid(
                f"Content-Range {raw} does not match Content-Length {req.content_length()}"
            )
        body, tree = self._receive_checked(req, part_size, "part-")
        with self._lock:
            try:
                upload = self._upload(self._vault(name), upload_id)
            except GlacierError:
                body.path.unlink(missing_ok=True)
                raise
            old = upload.parts.get(index)
            upload.parts[index] = Part(body.size, tree, body.path)
        if old is not None:
            old.path.unlink(missing_ok=True)
        return 204, {"x-amz-sha256-tree-hash": tree}, None

    def _upload_json(self, name: str, upload: Upload) -> dict:
        return {
            "MultipartUploadId": upload.id,
            "VaultARN": self._arn(name),
            "ArchiveDescription": upload.description,
            "PartSizeInBytes": upload.part_size,
            "CreationDate": _iso(upload.created),
        }

    def op_list_parts(self, req: "_Request", name: str, upload_id: str):
        with self._lock:
            upload = self._upload(self._vault(name), upload_id)
            indexes = sorted(upload.parts)
            page, marker = _page(indexes, lambda i: str(i * upload.part_size), req, default=50)
            parts = []
            for i in page:
                start = i * upload.part_size
                part = upload.parts[i]
                parts.append({
                    "RangeInBytes": f"{start}-{start + part.size - 1}",
                    "SHA256TreeHash": part.tree_hash,
                })
            return 200, {}, {**self._upload_json(name, upload), "Parts": parts, "Marker": marker}

    def op_list_uploads(self, req: "_Request", name: str):
        with self._lock:
            vault = self._vault(name)
            uploads = sorted(vault.uploads.values(), key=lambda u: (u.created, u.id))
            page, marker = _page(uploads, lambda u: u.id, req, default=50)
            listed = [self._upload_json(name, u) for u in page]
            return 200, {}, {"UploadsList": listed, "Marker": marker}

    def op_abort_multipart(self, req: "_Request", name: str, upload_id: str):
        with self._lock:
            vault = self._vault(name)
            upload = self._upload(vault, upload_id)
            del vault.uploads[upload_id]
        for part in upload.parts.values():
            part.path.unlink(missing_ok=True)
        return 204, {}, None

    def op_complete_multipart(self, req: "_Request", name: str, upload_id: str):
        raw_size, want = req.header("x-amz-archive-size"), req.header("x-amz-sha256-tree-hash")
        if not raw_size:
            raise _missing("Required header missing: x-amz-archive-size")
        if not want:
            raise _missing("Required header missing: x-amz-sha256-tree-hash")
        try:
            size = int(raw_size)
        except ValueError:
            raise _invalid(f"Invalid x-amz-archive-size: {raw_size}") from None
        with self._lock:
            vault = self._vault(name)
            done = vault.completed.get(upload_id)
            if done and self.clock() - done[0] <= self.complete_memory and done[1:3] == (size, want):
                return self._archive_created(name, done[3])
            upload = self._upload(vault, upload_id)
            parts = [upload.parts[i] for i in sorted(upload.parts)]
            indexes = sorted(upload.parts)
        if not parts or indexes != list(range(len(parts))):
            missing = sorted(set(range((indexes[-1] + 1) if indexes else 1)) - set(indexes))
            raise _invalid(
                f"Missing parts: the archive is not contiguous (first missing part index "
                f"{missing[0] if missing else len(indexes)})"
            )
        short = [i for i, p in enumerate(parts[:-1]) if p.size != upload.part_size]
        if short:
            raise _invalid(
                f"Part at index {short[0]} is {parts[short[0]].size} bytes; every part but the "
                f"last must be the part size {upload.part_size}"
            )
        total = sum(p.size for p in parts)
        if total != size:
            raise _invalid(f"Invalid x-amz-archive-size: {size}; the parts hold {total} bytes")
        path = self._new_file("archive-")
        hasher = TreeHasher(keep_leaves=True)
        with open(path, "wb") as out:
            for part in parts:
                with open(part.path, "rb") as f:
                    for chunk in iter(lambda: f.read(COPY_CHUNK), b""):
                        hasher.update(chunk)
                        out.write(chunk)
        if hasher.hexdigest() != want:
            path.unlink(missing_ok=True)
            raise _invalid(f"Invalid x-amz-sha256-tree-hash: {want}; computed {hasher.hexdigest()}")
        archive = Archive(
            _new_id(ARCHIVE_ID_LEN), upload.description, self.clock(), total,
            hasher.hexdigest(), hasher.leaves(), path,
        )
        with self._lock:
            try:
                vault = self._vault(name)
                if vault.uploads.pop(upload_id, None) is None:
                    raise _not_found(f"Multipart upload not found: {upload_id}")
            except GlacierError:
                path.unlink(missing_ok=True)
                raise
            vault.archives[archive.id] = archive
            vault.completed[upload_id] = (self.clock(), size, want, archive)
        for part in parts:
            part.path.unlink(missing_ok=True)
        return self._archive_created(name, archive)

    # ----------------------------------------------------------------- jobs
    def op_initiate_job(self, req: "_Request", name: str):
        params = req.json()
        if not isinstance(params, dict):
            raise _invalid("Job parameters must be a JSON object")
        kind = params.get("Type")
        description = self._description(params.get("Description"), "job description") or None
        if kind == "archive-retrieval":
            job = self._archive_job(name, params, description)
        elif kind == "inventory-retrieval":
            job = self._inventory_job(name, params, description)
        elif kind == "select":
            raise GlacierError(501, "NotImplemented", "select jobs are not implemented by the stand-in")
        else:
            raise _invalid(f"Invalid job type: {kind}")
        return 202, {
            "Location": f"/{self.account_id}/vaults/{name}/jobs/{job.id}",
            "x-amz-job-id": job.id,
        }, None

    def _archive_job(self, name: str, params: dict, description: str | None) -> Job:
        tier = params.get("Tier") or "Standard"
        if tier not in TIERS:
            raise _invalid(f"Invalid tier: {tier}")
        archive_id = params.get("ArchiveId")
        if not archive_id:
            raise _missing("Required parameter missing: ArchiveId")
        now = self.clock()
        with self._lock:
            vault = self._vault(name)
            archive = self._archive(vault, archive_id)
            start, end = 0, archive.size - 1
            raw = params.get("RetrievalByteRange")
            if raw is not None:
                m = re.fullmatch(r"(\d+)-(\d+)", str(raw))
                if not m:
                    raise _invalid(f"Invalid RetrievalByteRange: {raw}")
                start, end = int(m.group(1)), int(m.group(2))
                if not (start <= end < archive.size) or start % MIB or (
                    (end + 1) % MIB and end != archive.size - 1
                ):
                    raise _invalid(
                        f"Invalid RetrievalByteRange: {raw}; it must lie inside the archive "
                        f"({archive.size} bytes) and be megabyte aligned"
                    )
            job = Job(
                _new_id(JOB_ID_LEN), "ArchiveRetrieval", description, now,
                now + self.delays[tier], tier, archive, start, end, raw is not None,
            )
            vault.jobs[job.id] = job
        return job

    def _inventory_job(self, name: str, params: dict, description: str | None) -> Job:
        fmt = params.get("Format") or "JSON"
        if fmt not in ("JSON", "CSV"):
            raise _invalid(f"Invalid inventory format: {fmt}")
        irp = params.get("InventoryRetrievalParameters") or {}
        if irp.get("Limit") or irp.get("Marker"):
            raise GlacierError(501, "NotImplemented", "inventory Limit/Marker are not implemented")
        bounds = []
        for key in ("StartDate", "EndDate"):
            try:
                bounds.append(datetime.fromisoformat(irp[key]).timestamp() if irp.get(key) else None)
            except (TypeError, ValueError):
                raise _invalid(f"Invalid {key}: {irp.get(key)}") from None
        now = self.clock()
        with self._lock:
            vault = self._vault(name)
            archives = [
                a for a in sorted(vault.archives.values(), key=lambda a: a.created)
                if (bounds[0] is None or a.created >= bounds[0])
                and (bounds[1] is None or a.created < bounds[1])
            ]
            job = Job(
                _new_id(JOB_ID_LEN), "InventoryRetrieval", description, now,
                now + self.delays["inventory"], "Standard", fmt=fmt,
                inventory=self._inventory(name, archives, fmt, now),
                inventory_params={"Format": fmt, **{k: irp.get(k) for k in ("StartDate", "EndDate")}},
            )
            vault.jobs[job.id] = job
        return job

    def _inventory(self, name: str, archives: list, fmt: str, now: float) -> bytes:
        rows = [
            {
                "ArchiveId": a.id,
                "ArchiveDescription": a.description,
                "CreationDate": _iso(a.created),
                "Size": a.size,
                "SHA256TreeHash": a.tree_hash,
            }
            for a in archives
        ]
        if fmt == "JSON":
            doc = {"VaultARN": self._arn(name), "InventoryDate": _iso(now), "ArchiveList": rows}
            return json.dumps(doc).encode()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else [
            "ArchiveId", "ArchiveDescription", "CreationDate", "Size", "SHA256TreeHash"])
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().encode()

    def _range_hash(self, archive: Archive, start: int, end: int) -> str | None:
        """Tree hash of archive bytes start..end if that range is a tree node, else None."""
        if not is_tree_hash_aligned(start, end, archive.size):
            return None
        return combine(archive.leaves[start // MIB : -(-(end + 1) // MIB)]).hex()

    def _job_json(self, name: str, job: Job) -> dict:
        done = self._done(job)
        doc = {
            "JobId": job.id,
            "JobDescription": job.description,
            "Action": job.action,
            "ArchiveId": job.archive.id if job.archive else None,
            "VaultARN": self._arn(name),
            "CreationDate": _iso(job.created),
            "Completed": done,
            "StatusCode": "Succeeded" if done else "InProgress",
            "StatusMessage": "Succeeded" if done else None,
            "CompletionDate": _iso(job.ready_at) if done else None,
            "SNSTopic": None,
            "Tier": job.tier,
        }
        if job.archive is not None:
            whole = job.start == 0 and job.end == job.archive.size - 1
            tree = self._range_hash(job.archive, job.start, job.end)
            if whole and job.range_given and not done:
                tree = None
            doc.update({
                "ArchiveSizeInBytes": job.archive.size,
                "ArchiveSHA256TreeHash": job.archive.tree_hash,
                "SHA256TreeHash": tree,
                "RetrievalByteRange": f"{job.start}-{job.end}",
                "InventorySizeInBytes": None,
            })
        else:
            doc.update({
                "InventorySizeInBytes": len(job.inventory) if done else None,
                "InventoryRetrievalParameters": job.inventory_params,
            })
        return doc

    def op_describe_job(self, req: "_Request", name: str, job_id: str):
        with self._lock:
            return 200, {}, self._job_json(name, self._job(self._vault(name), job_id))

    def op_list_jobs(self, req: "_Request", name: str):
        status, completed = req.query("statuscode"), req.query("completed")
        if status is not None and status not in ("InProgress", "Succeeded", "Failed"):
            raise _invalid(f"Invalid statuscode: {status}")
        if completed is not None and completed not in ("true", "false"):
            raise _invalid(f"Invalid completed: {completed}")
        with self._lock:
            vault = self._vault(name)
            jobs = [
                j for j in sorted(vault.jobs.values(), key=lambda j: (j.created, j.id))
                if not self._expired(j)
                and (status is None or status == ("Succeeded" if self._done(j) else "InProgress"))
                and (completed is None or (completed == "true") == self._done(j))
            ]
            page, marker = _page(jobs, lambda j: j.id, req, default=50)
            return 200, {}, {"JobList": [self._job_json(name, j) for j in page], "Marker": marker}

    def op_job_output(self, req: "_Request", name: str, job_id: str):
        with self._lock:
            job = self._job(self._vault(name), job_id)
            if not self._done(job):
                raise _invalid(f"The job is not currently available for download: {job_id}")
        total = job.end - job.start + 1 if job.archive else len(job.inventory)
        raw = req.header("Range")
        first, last = 0, total - 1
        if raw:
            m = _RANGE.match(raw.strip())
            if not m:
                raise _invalid(f"Invalid Range: {raw}")
            first = int(m.group(1))
            last = int(m.group(2)) if m.group(2) else total - 1
            if not first <= last < total:
                raise _invalid(f"Invalid Range: {raw}; the job output has {total} bytes")
            if job.archive and (first % MIB or ((last + 1) % MIB and last != total - 1)):
                raise _invalid(
                    f"Invalid Range: {raw}; ranges of archive output must start on a 1 MiB "
                    f"boundary and end on one or at the end of the output"
                )
        headers = {"Accept-Ranges": "bytes"}
        if raw:
            headers["Content-Range"] = f"bytes {first}-{last}/{total}"
        if job.archive is None:
            headers["Content-Type"] = "application/json" if job.fmt == "JSON" else "text/csv"
            body = job.inventory[first : last + 1]
        else:
            headers["Content-Type"] = "application/octet-stream"
            headers["x-amz-archive-description"] = job.archive.description
            a, b = job.start + first, job.start + last
            if is_tree_hash_aligned(job.start, job.end, job.archive.size):
                tree = self._range_hash(job.archive, a, b)
                if tree is not None:
                    headers["x-amz-sha256-tree-hash"] = tree
            body = _FileSlice(job.archive.path, a, b - a + 1)
        return (206 if raw else 200), headers, body


def _page(items: list, key: Callable, req: "_Request", default: int) -> tuple[list, str | None]:
    """One page of ``items`` from ``marker`` (a key this server issued) of at most ``limit``."""
    raw_limit = req.query("limit")
    limit = default
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise _invalid(f"Invalid limit: {raw_limit}")
        limit = int(raw_limit)
    start = 0
    marker = req.query("marker")
    if marker is not None:
        keys = [key(item) for item in items]
        if marker not in keys:
            raise _invalid(f"Invalid marker: {marker}")
        start = keys.index(marker)
    page = items[start : start + limit]
    rest = items[start + limit :]
    return page, (key(rest[0]) if rest else None)


# ------------------------------------------------------------------------- HTTP plumbing
_V = r"/(?P<account>[^/]+)/vaults/(?P<vault>[^/]+)"
_ROUTES = [
    ("GET", r"/(?P<account>[^/]+)/vaults", "list_vaults"),
    ("PUT", _V, "create_vault"),
    ("GET", _V, "describe_vault"),
    ("DELETE", _V, "delete_vault"),
    ("POST", _V + r"/archives", "upload_archive"),
    ("DELETE", _V + r"/archives/(?P<id>[^/]+)", "delete_archive"),
    ("POST", _V + r"/multipart-uploads", "initiate_multipart"),
    ("GET", _V + r"/multipart-uploads", "list_uploads"),
    ("PUT", _V + r"/multipart-uploads/(?P<id>[^/]+)", "upload_part"),
    ("GET", _V + r"/multipart-uploads/(?P<id>[^/]+)", "list_parts"),
    ("POST", _V + r"/multipart-uploads/(?P<id>[^/]+)", "complete_multipart"),
    ("DELETE", _V + r"/multipart-uploads/(?P<id>[^/]+)", "abort_multipart"),
    ("POST", _V + r"/jobs", "initiate_job"),
    ("GET", _V + r"/jobs", "list_jobs"),
    ("GET", _V + r"/jobs/(?P<id>[^/]+)", "describe_job"),
    ("GET", _V + r"/jobs/(?P<id>[^/]+)/output", "job_output"),
]
_ROUTES = [(m, re.compile(p + r"/?\Z"), op) for m, p, op in _ROUTES]


class _Request:
    """What an operation may read from the HTTP request; tracks how much body is left."""

    def __init__(self, handler: BaseHTTPRequestHandler, query: dict) -> None:
        self._h = handler
        self._query = query
        self.remaining = self._declared_length()

    def header(self, name: str) -> str | None:
        return self._h.headers.get(name)

    def query(self, name: str) -> str | None:
        values = self._query.get(name)
        return values[0] if values else None

    def _declared_length(self) -> int:
        raw = self.header("Content-Length")
        if raw is None:
            return 0
        if not raw.isdigit():
            raise _invalid(f"Invalid Content-Length: {raw}")
        return int(raw)

    def content_length(self) -> int:
        if self.header("Content-Length") is None:
            raise GlacierError(411, "MissingParameterValueException", "Content-Length required")
        return self.remaining

    def _read(self, n: int) -> bytes:
        try:
            data = self._h.rfile.read(min(n, self.remaining))
        except socket.timeout:
            self.remaining = 0
            self._h.close_connection = True
            raise GlacierError(408, "RequestTimeoutException", "Timed out reading the request body")
        except OSError as exc:
            raise _ClientGone(str(exc)) from exc
        if not data:
            raise _ClientGone("client closed the connection mid-body")
        self.remaining -= len(data)
        return data

    def receive(self, path: Path, keep_leaves: bool) -> _Body:
        """Stream the body to ``path`` while computing SHA-256 and the tree hash."""
        sha, hasher, size = hashlib.sha256(), TreeHasher(keep_leaves), 0
        try:
            with open(path, "wb") as out:
                while self.remaining:
                    chunk = self._read(COPY_CHUNK)
                    sha.update(chunk)
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return _Body(path, size, sha.hexdigest(), hasher)

    def json(self):
        data = b""
        while self.remaining:
            data += self._read(self.remaining)
        try:
            return json.loads(data or b"{}")
        except ValueError:
            raise _invalid("The request body is not valid JSON") from None

    def drain(self) -> None:
        while self.remaining:
            self._read(COPY_CHUNK)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def setup(self) -> None:
        self.timeout = self.server.standin.request_timeout
        super().setup()

    def log_message(self, fmt: str, *args) -> None:
        if self.server.standin.verbose:
            super().log_message(fmt, *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _dispatch(self) -> None:
        standin = self.server.standin
        split = urlsplit(self.path)
        req = None
        try:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                raise GlacierError(411, "MissingParameterValueException", "Content-Length required")
            self._authorize()
            req = _Request(self, parse_qs(split.query, keep_blank_values=True))
            op, args = self._route(split.path)
            standin.calls[op] += 1
            account = args.pop("account")
            if account not in ("-", standin.account_id):
                raise GlacierError(403, "AccessDeniedException", f"Access denied to account {account}")
            status, headers, body = getattr(standin, "op_" + op)(req, *args.values())
            req.drain()
        except _ClientGone:
            self.close_connection = True
            return
        except GlacierError as err:
            try:
                if req is None:  # body length unknown or not trusted: cannot reuse the connection
                    self.close_connection = True
                else:
                    req.drain()
            except (_ClientGone, GlacierError):
                self.close_connection = True
                return
            status, headers = err.status, {"Content-Type": "application/json"}
            body = {"code": err.code, "message": err.message, "type": err.kind}
        self._respond(status, headers, body)

    def _route(self, path: str) -> tuple[str, dict]:
        matched_path = False
        for method, pattern, op in _ROUTES:
            m = pattern.match(path)
            if m:
                matched_path = True
                if method == self.command:
                    return op, {k: unquote(v) for k, v in m.groupdict().items()}
        if matched_path:
            raise GlacierError(405, "InvalidParameterValueException", f"{self.command} not allowed")
        raise GlacierError(501, "NotImplemented", f"Not implemented by the stand-in: {unquote(path)}")

    def _authorize(self) -> None:
        auth = self.headers.get("Authorization")
        if not auth:
            raise GlacierError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if not auth.startswith("AWS4-HMAC-SHA256 ") or "Credential=" not in auth:
            raise GlacierError(403, "IncompleteSignatureException", "Malformed Authorization header")
        if not self.headers.get("x-amz-glacier-version"):
            raise _missing("Required header missing: x-amz-glacier-version")

    def _respond(self, status: int, headers: dict, body) -> None:
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        length = body.length if isinstance(body, _FileSlice) else len(body or b"")
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("x-amzn-RequestId", _new_id(52))
            self.send_header("Content-Length", str(length))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            if isinstance(body, _FileSlice):
                with open(body.path, "rb") as f:
                    f.seek(body.start)
                    left = body.length
                    while left:
                        chunk = f.read(min(COPY_CHUNK, left))
                        if not chunk:
                            raise OSError("stored archive shorter than recorded")
                        self.wfile.write(chunk)
                        left -= len(chunk)
            elif body:
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its stand-in and can cut its open connections on stop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, standin: GlacierStandIn) -> None:
        self.standin = standin
        self._open: set = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request_thread(self, request, client_address) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def close_all(self) -> None:
        with self._open_lock:
            for sock in list(self._open):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _parse_delays(text: str) -> dict:
    delays = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        delays[key.strip()] = float(value)
    return delays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Glacier vault API stand-in on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--delays", default="", help="e.g. Expedited=0.2,Standard=0.5,Bulk=1,inventory=0.5")
    parser.add_argument("--output-ttl", type=float, default=OUTPUT_TTL, help="seconds job output lives")
    parser.add_argument("--data-dir", help="directory for bodies (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    standin = GlacierStandIn(
        delays=_parse_delays(args.delays), output_ttl=args.output_ttl, data_dir=args.data_dir,
        port=args.port, verbose=args.verbose,
    )
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    print(standin.start(), flush=True)
    while not stopping.wait(0.5):
        pass
    standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
