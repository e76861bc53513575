"""``glacier://vault``: the Amazon Glacier vault API (boto3 ``glacier`` client, account ``-``).

Uploads: a stream of at most one part is one UploadArchive; longer streams are a multipart upload
with one power-of-two part size (parts.vault_plan: 128 MiB by default, holding 1.22 TiB; pass
--expected-size for more) and the SHA-256 tree hash of each part and of the whole; the vault
checks them and ``commit`` compares the tree hash it answers with the local one.  Metadata is
the archive description, compact JSON of at most 1,024 printable ASCII characters.  Resume finds
the interrupted upload (ListMultipartUploads) whose part 1 tree hash is the input's and keeps
every part whose tree hash (ListParts) matches.

Thaw is an archive-retrieval job (an unexpired one for the same archive is reused, found with
ListJobs); read is GetJobOutput in 1 MiB-aligned power-of-two ranges, each checked against the
tree hash the vault sends with it, and the whole against the archive's tree hash before the last
range is delivered.  Listing needs an inventory job: AWS takes hours to prepare one and makes
the inventory about once a day, so ``list()`` raises RestorePendingError until one is ready (the
local catalog is the quick way); ``stat`` reads the same inventory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from datetime import datetime
from typing import Iterator, Optional

from ..errors import IntegrityError, NotFoundError, RestorePendingError, StoreError
from ..plumbing.parts import (MAX_PARTS, VAULT_MAX_PART, VAULT_MIN_PART, MiB, OrderedReader, Part, PartDone,
                              PartPlan, retry_call, vault_plan)
from ..plumbing.treehash import combine, tree_hash
from . import _aws
from ._aws import error_code
from .base import (THAW_WAIT, ArchiveInfo, Check, Properties, ExistingPart, IncompleteUpload, Store, ThawStatus,
                   UploadSession, check_id, check_tier, pending, refuse_large_metadata)

ACCOUNT = "-"
DESCRIPTION_LIMIT = 1024
READ_RANGE = 16 * MiB  # power of two: every full range is a node of the archive's tree
# (a smaller part_size, a power of two too, also sets the read range: tests use 1 MiB)
JOB_OUTPUT_TTL = 24 * 3600


NO_VAULT = "ResourceNotFoundException"  # StoreError.code of a vault that does not exist


def describe(metadata: dict[str, str]) -> str:
    """Metadata as the archive description: compact, sorted JSON."""
    return json.dumps(metadata, separators=(",", ":"), sort_keys=True)


def parse_description(text: Optional[str]) -> dict[str, str]:
    """Inverse of ``describe``; a foreign description is kept whole as ``description``."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return value
    return {"description": text}


def _treehash(job: dict) -> Optional[str]:
    """The job's tree hash in checksum notation (None where the server omits it, as moto does)."""
    return f"treehash:{job['ArchiveSHA256TreeHash']}" if job.get("ArchiveSHA256TreeHash") else None


def _epoch(iso: Optional[str]) -> float:
    if not iso:
        return 0.0
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class VaultSession(UploadSession):
    def __init__(self, store: "VaultStore", metadata: dict, plan: PartPlan,
                 upload_id: Optional[str] = None, existing: Optional[dict] = None):
        self.store = store
        self.metadata = metadata
        self.plan = plan
        self.upload_id = upload_id
        self.existing = existing or {}
        self.archive_id: Optional[str] = None

    def _call(self, method: str, action: str, **kw):
        return self.store._call(method, action, **kw)

    wants_part_sha256 = False  # parts are checked by their tree hash
    @property
    def ref(self) -> Optional[str]:
        return self.upload_id

    def begin(self) -> None:
        resp = self._call("initiate_multipart_upload", "start upload",
                          archiveDescription=describe(self.metadata),
                          partSize=str(self.plan.first))
        self.upload_id = resp["uploadId"]

    def send_part(self, part: Part) -> bytes:
        # bytes of its own: botocore's vault checksum handler takes bytes or a file, not the
        # part's buffer (which is filled again once this returns)
        th = tree_hash(part.data)
        resp = self._call("upload_multipart_part", f"upload part {part.number}", retry=True,
                          uploadId=self.upload_id, body=bytes(part.data), checksum=th.hex(),
                          range=f"bytes {part.offset}-{part.offset + part.size - 1}/*")
        if resp.get("checksum") and resp["checksum"] != th.hex():
            raise IntegrityError(f"{self.store.url}: the vault stored part {part.number} with "
                                 f"another tree hash than was sent")
        return th

    def reuse_part(self, existing: ExistingPart, part: Part) -> Optional[bytes]:
        th = tree_hash(part.data)
        return th if existing.check == th.hex() else None

    def put_single(self, data: bytes, sha256: bytes) -> ArchiveInfo:
        if not data:
            raise StoreError(f"{self.store.url}: a vault cannot hold an empty archive")
        th = tree_hash(data).hex()
        resp = self._call("upload_archive", "upload", retry=True,
                          archiveDescription=describe(self.metadata), body=data, checksum=th)
        self.archive_id = resp["archiveId"]
        return self._verified(resp.get("checksum"), th, len(data))

    def complete(self, parts: list[PartDone], size: int, sha256: bytes) -> ArchiveInfo:
        whole = combine([p.receipt for p in parts]).hex()
        resp = self._call("complete_multipart_upload", "complete upload", retry=True,
                          uploadId=self.upload_id, archiveSize=str(size), checksum=whole)
        self.upload_id = None
        self.archive_id = resp["archiveId"]
        return self._verified(resp.get("checksum"), whole, size)

    def _verified(self, remote: Optional[str], local: str, size: int) -> ArchiveInfo:
        if remote != local:
            try:
                self.store.delete(self.archive_id)
                fate = "it was deleted"
            except Exception:  # noqa: BLE001 - report the mismatch, not this
                fate = f"delete archive {self.archive_id} by hand"
            raise IntegrityError(f"{self.store.url}: the vault's tree hash {remote} of the new "
                                 f"archive differs from the local {local}; {fate}")
        return ArchiveInfo(self.archive_id, size, None, time.time(), dict(self.metadata), "GLACIER",
                           "frozen", f"treehash:{local}")

    def abort(self) -> None:
        if self.upload_id is None:
            return
        upload_id, self.upload_id = self.upload_id, None
        try:
            self._call("abort_multipart_upload", "abort upload", uploadId=upload_id)
        except NotFoundError:
            pass


class VaultStore(Store):
    """Archives in one Glacier vault (see module doc)."""

    properties = Properties(cold=True, price_class="VAULT", checksum="treehash", min_part=VAULT_MIN_PART,
                            max_part=VAULT_MAX_PART, max_parts=MAX_PARTS, metadata_limit=DESCRIPTION_LIMIT,
                            lists_at_once=False)

    def __init__(self, vault: str, *, part_size: Optional[int] = None,
                 profile: Optional[str] = None, region: Optional[str] = None, endpoint: Optional[str] = None,
                 retry_mode: str = "standard", max_attempts: int = 8,
                 connect_attempts: int = 3, connect_timeout: float = _aws.CONNECT_TIMEOUT,
                 read_timeout: float = _aws.READ_TIMEOUT, url: Optional[str] = None, client=None):
        self.vault = vault
        self.part_size = part_size
        self.url = url or f"glacier://{vault}"
        self._client = client
        self._client_args = dict(profile=profile, region=region, endpoint=endpoint, retry_mode=retry_mode,
                                 max_attempts=max_attempts, connect_attempts=connect_attempts,
                                 connect_timeout=connect_timeout, read_timeout=read_timeout)
        vault_plan(part_size=part_size)  # refuse a bad part size now

    @property
    def client(self):
        """The boto3 glacier client (created on first use)."""
        if self._client is None:
            self._client = _aws.make_client("glacier", **self._client_args)
        return self._client

    @contextlib.contextmanager
    def _errors(self, what: str, not_found: Optional[str] = None):
        """One-line errors: a missing vault is a StoreError, a missing archive/job/upload a
        NotFoundError, a tree hash the vault refused an IntegrityError."""
        import botocore.exceptions as bx

        try:
            yield
        except bx.ClientError as exc:
            code = error_code(exc)
            message = exc.response.get("Error", {}).get("Message") or ""
            if code == "ResourceNotFoundException":
                if message.startswith("Vault not found"):
                    raise StoreError(f"{self.url}: vault {self.vault} does not exist (in this "
                                     f"region)", code=NO_VAULT) from None
                raise NotFoundError(not_found or f"{what}: {message}") from None
            if code == "InvalidParameterValueException" and "tree-hash" in message.lower():
                raise IntegrityError(f"{what}: the vault refused the data: {message}") from None
            raise _aws.translate(exc, what) from None
        except (bx.BotoCoreError, ConnectionError, TimeoutError) as exc:
            raise _aws.translate(exc, what) from None

    def _call(self, method: str, action: str, *, retry: bool = False,
              not_found: Optional[str] = None, **kw):
        """One vault API call; ``retry`` adds the per-part retry for connection drops."""
        fn = getattr(self.client, method)

        def once():
            return fn(accountId=ACCOUNT, vaultName=self.vault, **kw)

        with self._errors(f"{self.url}: {action}", not_found):
            return retry_call(once, transient=_aws.is_transient) if retry else once()

    def init(self) -> str:
        """Create the vault when it does not exist (AWS stopped taking new vault customers in
        December 2025: an account that never had a vault is refused, and S3 is the way)."""
        try:
            self._call("describe_vault", "describe the vault")
            return f"vault {self.vault} exists: nothing changed (`zg-doctor {self.url}` checks it)"
        except StoreError as err:
            if err.code != NO_VAULT:
                raise
        self._call("create_vault", "create the vault")
        return f"vault {self.vault} created; `zg-doctor {self.url}` checks it"

    def doctor(self) -> list[Check]:
        """The vault and credentials, the clock, and what its inventory says (nothing is written)."""
        try:
            desc = self._call("describe_vault", "describe the vault", not_found=f"no vault {self.vault}")
        except (StoreError, NotFoundError) as err:
            return [Check("vault", "fail", str(err))]
        count, when = desc.get("NumberOfArchives"), desc.get("LastInventoryDate")
        return [Check("vault", "ok", f"{self.vault} answers with these credentials"), _aws.clock_check(desc),
                Check("inventory", "info", f"{count} archives as of {when}" if when else
                      "no inventory yet (AWS makes one about daily; zg-ls --remote asks for one)")]

    def _paginate(self, method: str, key: str, action: str, **kw) -> list:
        with self._errors(f"{self.url}: {action}"):
            pages = self.client.get_paginator(method).paginate(
                accountId=ACCOUNT, vaultName=self.vault, **kw)
            return [item for page in pages for item in page.get(key, []) or []]

    # ---- uploads
    def _plan(self, expected_size=None) -> PartPlan:
        return vault_plan(expected_size, part_size=self.part_size)

    def _new_session(self, metadata, expected_size) -> VaultSession:
        text = describe(metadata)
        refuse_large_metadata(metadata, len(text), DESCRIPTION_LIMIT,
                              "a vault archive description (as JSON)")
        return VaultSession(self, metadata, self._plan(expected_size))

    def _uploads(self) -> list[dict]:
        return self._paginate("list_multipart_uploads", "UploadsList", "list incomplete uploads")

    def _parts(self, upload: dict) -> dict[int, ExistingPart]:
        size = upload["PartSizeInBytes"]
        out = {}
        for p in self._paginate("list_parts", "Parts", "list parts",
                                uploadId=upload["MultipartUploadId"]):
            first, last = (int(x) for x in p["RangeInBytes"].split("-"))
            out[first // size + 1] = ExistingPart(first // size + 1, last - first + 1,
                                                  p["SHA256TreeHash"])
        return out

    def _resume_sessions(self, id, expected_size) -> list[VaultSession]:
        sessions = []
        for up in self._uploads():
            if id is not None and id != up["MultipartUploadId"]:
                continue
            plan = vault_plan(part_size=up["PartSizeInBytes"])
            existing = self._parts(up)
            sessions.append(VaultSession(self, parse_description(up.get("ArchiveDescription")),
                                         plan, up["MultipartUploadId"], existing))
        return sessions

    def incomplete_uploads(self) -> list[IncompleteUpload]:
        out = []
        for up in self._uploads():
            parts = self._parts(up)
            out.append(IncompleteUpload(up["MultipartUploadId"], up["MultipartUploadId"],
                                        _epoch(up.get("CreationDate")), len(parts),
                                        sum(p.size for p in parts.values()),
                                        parse_description(up.get("ArchiveDescription"))))
        return out

    def discard_incomplete(self, ref: str) -> None:
        self._call("abort_multipart_upload", "abort upload", uploadId=ref,
                   not_found=f"no incomplete upload {ref} in {self.url}")

    # ---- jobs
    def _jobs(self) -> list[dict]:
        return self._paginate("list_jobs", "JobList", "list jobs")

    def _retrieval(self, archive_id: str, jobs: Optional[list] = None) -> Optional[dict]:
        """The best unexpired whole-archive retrieval job: a finished one, else the newest."""
        best = None
        for job in self._jobs() if jobs is None else jobs:
            if job.get("Action") != "ArchiveRetrieval" or job.get("ArchiveId") != archive_id:
                continue
            if job.get("StatusCode") == "Failed":
                continue
            size = job.get("ArchiveSizeInBytes")
            if size is not None and job.get("RetrievalByteRange") not in (None, f"0-{size - 1}"):
                continue
            rank = (job.get("StatusCode") == "Succeeded", job.get("CreationDate") or "")
            if best is None or rank > best[0]:
                best = (rank, job)
        return best[1] if best else None

    def _status(self, archive_id: str, job: Optional[dict]) -> ThawStatus:
        if job is None:
            return ThawStatus(archive_id, "frozen", "in the vault; no retrieval job: request one")
        tier = job.get("Tier") or "Standard"
        if job.get("StatusCode") == "Succeeded":
            expires = _epoch(job.get("CompletionDate")) + JOB_OUTPUT_TTL
            return ThawStatus(archive_id, "thawed", f"retrieval job done ({tier}); its output "
                              f"can be read for 24 hours after completion", None, expires)
        wait = THAW_WAIT[("GLACIER", tier)]
        return ThawStatus(archive_id, "thawing", f"retrieval job ({tier}) in progress since "
                          f"{job.get('CreationDate')}; {tier} takes {wait[1]}", wait[0])

    def request_thaw(self, id: str, tier: str = "Standard", days: int = 7,
                     version: Optional[str] = None) -> ThawStatus:
        """Start (or reuse) an archive-retrieval job; ``days`` does not apply: the output of a
        vault job is readable for 24 hours."""
        check_tier(tier)
        check_id(id)
        job = self._retrieval(id)
        if job is None:
            resp = self._call("initiate_job", f"request retrieval of {id}",
                              not_found=f"no archive {id} in {self.url}",
                              jobParameters={"Type": "archive-retrieval", "ArchiveId": id,
                                             "Tier": tier, "Description": "zfsglacier thaw"})
            job = self._call("describe_job", "describe job", jobId=resp["jobId"])
        return self._status(id, job)

    def thaw_status(self, id: str, version: Optional[str] = None) -> ThawStatus:
        check_id(id)
        return self._status(id, self._retrieval(id))

    # ---- inventory
    def request_inventory(self) -> str:
        """Start an inventory-retrieval job (AWS: hours); returns its job id."""
        resp = self._call("initiate_job", "request inventory",
                          jobParameters={"Type": "inventory-retrieval", "Format": "JSON",
                                         "Description": "zfsglacier inventory"})
        return resp["jobId"]

    def _inventory(self, jobs: Optional[list] = None, *, request: bool = True) -> Optional[list]:
        """Rows of the newest finished inventory; None (request=False) or RestorePendingError
        (after starting an inventory job if none runs) when there is none yet."""
        jobs = self._jobs() if jobs is None else jobs
        inventories = [j for j in jobs if j.get("Action") == "InventoryRetrieval"]
        done = sorted((j for j in inventories if j.get("StatusCode") == "Succeeded"),
                      key=lambda j: j.get("CompletionDate") or "")
        if not done:
            if not request:
                return None
            if not any(j.get("StatusCode") == "InProgress" for j in inventories):
                self.request_inventory()
                started = "requested one now"
            else:
                started = "one is being prepared"
            raise RestorePendingError(
                f"{self.url}: listing a vault needs an inventory job, which takes AWS hours "
                f"({started}): run again later, or use the local catalog")
        resp = self._call("get_job_output", "read inventory", jobId=done[-1]["JobId"])
        with resp["body"] as body:
            try:
                inventory = json.loads(body.read())
                rows = inventory.get("ArchiveList", []) or []
            except (ValueError, AttributeError):
                raise StoreError(f"{self.url}: the vault inventory is not JSON") from None
        when = inventory.get("InventoryDate") or done[-1].get("CreationDate")
        try:  # unknown: 0, so that nothing recorded is taken for missing on its word
            self.listed_as_of = _epoch(when) if isinstance(when, str) else 0.0
        except ValueError:
            self.listed_as_of = 0.0
        return rows

    def _info(self, row: dict) -> ArchiveInfo:
        return ArchiveInfo(row["ArchiveId"], int(row["Size"]), None, _epoch(row["CreationDate"]),
                           parse_description(row.get("ArchiveDescription")), "GLACIER",
                           "frozen", f"treehash:{row['SHA256TreeHash']}")

    def list(self) -> Iterator[ArchiveInfo]:
        """Archives as of the newest inventory (AWS makes one about daily; a job takes hours):
        RestorePendingError until one is ready."""
        jobs = self._jobs()
        for row in self._inventory(jobs):
            info = self._info(row)
            info.state = self._status(info.id, self._retrieval(info.id, jobs)).state
            yield info

    def stat(self, id: str) -> ArchiveInfo:
        """From the newest inventory (with the state of its retrieval job), else from a
        retrieval job (no metadata then), else RestorePendingError while an inventory is made."""
        check_id(id)
        jobs = self._jobs()
        job = self._retrieval(id, jobs)
        rows = self._inventory(jobs, request=job is None)
        for row in rows or []:
            if row["ArchiveId"] == id:
                info = self._info(row)
                info.state = self._status(id, job).state
                return info
        if job is not None:
            return ArchiveInfo(id, job.get("ArchiveSizeInBytes") or 0, None, _epoch(job.get("CreationDate")),
                               {}, "GLACIER", self._status(id, job).state,
                               _treehash(job))
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.listed_as_of)) if self.listed_as_of else "undated"
        raise NotFoundError(f"no archive {id} in {self.url} as of its last inventory ({when}); an archive uploaded "
                            f"after that is not in it yet")

    def delete(self, id: str, *, bypass_governance: bool = False) -> None:
        check_id(id)
        self._call("delete_archive", f"delete {id}", archiveId=id,
                   not_found=f"no archive {id} in {self.url}")

    # ---- reads
    def open_read(self, id: str, *, jobs: int = 4, start: int = 0, recorded=None) -> OrderedReader:
        check_id(id)
        job = self._retrieval(id)
        if job is None or job.get("StatusCode") != "Succeeded":
            status = self._status(id, job)
            detail = ("its retrieval job is still running" if job is not None
                      else "no retrieval job was requested")
            raise pending(self.url, id, "a Glacier vault", detail + (f" ({status.detail})" if job is not None else ""))
        # AWS names the archive's size and tree hash in the job; moto's DescribeJob omits the
        # tree hash and says size 0: then what was recorded at upload (the catalog's), checked
        # by the tree hash recorded with it, else by the SHA-256 of the whole.
        checksum, sha256 = getattr(recorded, "checksum", None) or "", getattr(recorded, "sha256", None)
        size = job.get("ArchiveSizeInBytes") or getattr(recorded, "size", None)
        if recorded is not None and size != recorded.size:
            raise IntegrityError(f"{self.url}: archive {id}: the vault says it holds {size} bytes; "
                                 f"{recorded.size} were uploaded")
        want = job.get("ArchiveSHA256TreeHash") or (checksum[len("treehash:"):] if checksum.startswith(
            "treehash:") else None)
        if not size or (want is None and not sha256):
            lacks = "size" if not size else "tree hash"
            raise StoreError(f"{self.url}: archive {id}: the vault's retrieval job names no {lacks} and no catalog "
                             f"records one: read it with the catalog that uploaded it", code="NoTreeHash")
        whole = hashlib.sha256() if want is None else None
        job_id = job["JobId"]
        step = min(self.part_size or READ_RANGE, READ_RANGE)
        ranges = [PartDone(n, off, min(step, size - off), b"")
                  for n, off in enumerate(range(0, size, step), 1)]
        hashes: dict[int, bytes] = {}
        got: list[bytes] = []

        def fetch(r: PartDone) -> bytes:
            for attempt in (1, 2):  # a mismatch may be damage in transit: fetch once more
                data, sent = self._get_range(job_id, id, r.offset, r.size)
                th = tree_hash(data)
                if len(data) == r.size and (sent is None or sent == th.hex()):
                    hashes[r.number] = th
                    return data
            raise IntegrityError(f"{self.url}: archive {id}: bytes {r.offset}-"
                                 f"{r.offset + r.size - 1} do not match the vault's tree hash")

        def deliver(r: PartDone, data: bytes, last: bool) -> None:
            got.append(hashes.pop(r.number))
            if whole is not None:
                whole.update(data)
            if last and (combine(got).hex() != want if whole is None else whole.hexdigest() != sha256):
                raise IntegrityError(f"{self.url}: archive {id}: the {'tree hash' if whole is None else 'SHA-256'} "
                                     f"of the bytes read differs from the archive's")

        reader = OrderedReader(ranges, fetch, jobs=jobs, start=start,
                               deliver=None if start else deliver)
        if not start:
            reader.verifies = f"treehash:{want}" if whole is None else f"sha256:{sha256}"
        return reader

    def _get_range(self, job_id: str, archive_id: str, start: int,
                   length: int) -> tuple[bytes, Optional[str]]:
        def once():
            resp = self.client.get_job_output(accountId=ACCOUNT, vaultName=self.vault,
                                              jobId=job_id,
                                              range=f"bytes={start}-{start + length - 1}")
            with resp["body"] as body:
                return body.read(), resp.get("checksum")

        try:
            with self._errors(f"{self.url}: read {archive_id}"):
                return retry_call(once, transient=_aws.is_transient)
        except NotFoundError:
            raise pending(self.url, archive_id, "a Glacier vault", "its retrieval job expired meanwhile") from None


__all__ = ["VaultStore", "describe", "parse_description"]
