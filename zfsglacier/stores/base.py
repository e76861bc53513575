"""The one storage interface: every destination (S3, vault, local directory) implements ``Store``.

A store keeps archives: opaque byte streams with an id chosen by the store, a few public
metadata fields, and checksums that are verified on the way in (``Upload.commit``) and on the way
out (``Store.open_read``).  The upload and download machinery (part splitting, hashing, parallel
transfer, resume) is written once, here and in ``zfsglacier.parts``; a store only supplies an
``UploadSession`` (how to start, send a part, complete, abort) and a ranged, verified fetch.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import re
import secrets
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator, Optional

from ..errors import (IntegrityError, NotFoundError, RestorePendingError, ResumeMismatchError, StoreError,
                      UsageError)
from ..plumbing.parts import Part, PartDone, PartPipeline, PartPlan, too_big_message

STATES = ("ready", "frozen", "thawing", "thawed")
TIERS = ("Expedited", "Standard", "Bulk")

# Published restore times (AWS documentation): (upper bound in seconds, words).
THAW_WAIT = {
    ("GLACIER", "Expedited"): (5 * 60, "1-5 minutes"),
    ("GLACIER", "Standard"): (5 * 3600, "3-5 hours"),
    ("GLACIER", "Bulk"): (12 * 3600, "5-12 hours"),
    ("DEEP_ARCHIVE", "Standard"): (12 * 3600, "up to 12 hours"),
    ("DEEP_ARCHIVE", "Bulk"): (48 * 3600, "up to 48 hours"),
}


@dataclass(frozen=True)
class Properties:
    """What a store is, as data (restic's capabilities): commands and services ask this, never
    the URL, the class or an attribute one store happens to have.

    ``cold``: archives must be thawed (``request_thaw``) before they can be read.
    ``price_class``: the row of the price table (zfsglacier/data/prices.toml) new archives are
    billed at; ``Store.price_class`` gives an older archive's.
    ``checksum``: how whole archives are checked: ``sha256`` (file), ``sha256-composite`` (S3,
    MD5 ETags where the server keeps no SHA-256), ``treehash`` (vault).
    ``min_part``, ``max_part``, ``max_parts``: the limits of one upload's parts.
    ``metadata_limit``: bytes of public metadata one archive may carry (``None``: no limit).
    ``lists_at_once``: ``list()`` answers now (a vault's needs an inventory job: hours).
    ``hot_options``: ``open_store`` options that make the same destination readable at once
    (S3's STANDARD class, for catalog copies), or ``None`` when it already is or cannot be.
    ``locks``: every archive written is locked (S3 Object Lock) for a while; ``retain`` extends it.
    """

    cold: bool
    price_class: str
    checksum: str
    min_part: int
    max_part: int
    max_parts: int
    metadata_limit: Optional[int] = None
    lists_at_once: bool = True
    hot_options: Optional[dict] = None
    locks: bool = False


@dataclass
class ArchiveInfo:
    """What a store knows about one archive.

    ``sha256`` is the hex SHA-256 of the stored bytes when known (the file store and S3 single
    uploads record it; ``commit()`` always fills it from the local stream); ``checksum`` is the
    store's own notation (``sha256:``, ``sha256-composite:<b64>-N``, ``treehash:<hex>``).
    ``locked_until`` (epoch) and ``lock_mode`` (governance | compliance): the server refuses to
    delete it before then (S3 Object Lock), as the server itself said.  ``version``: the
    server's id of these bytes where it keeps versions (S3 VersionId): reads name it, so that
    whatever is later written or marked deleted over the key is never what a restore reads.
    """

    id: str
    size: int
    sha256: Optional[str]
    created: float
    metadata: dict[str, str]
    storage_class: str
    state: str  # one of STATES
    checksum: Optional[str] = None
    locked_until: Optional[float] = None
    lock_mode: Optional[str] = None
    version: Optional[str] = None


@dataclass
class ThawStatus:
    """Where a thaw stands: ``state`` from STATES, ``detail`` one human line, ``expected_wait``
    the published upper bound in seconds for the tier (None when nothing to wait for),
    ``expires`` when a thawed copy goes away (epoch, when known)."""

    id: str
    state: str
    detail: str
    expected_wait: Optional[int] = None
    expires: Optional[float] = None


@dataclass
class IncompleteUpload:
    """An upload that was started and neither completed nor aborted (killed process).
    ``ref`` is what ``discard_incomplete`` and ``open_resume(id=...)`` take."""

    id: str
    ref: str
    started: float
    parts: int
    size: int
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Check:
    """One finding of ``Store.doctor``: ``status`` ok (as zfsglacier needs it), warn (works, but
    the user should know: a lifecycle rule, a clock off by minutes), fail (backups cannot work
    as configured) or info; ``detail`` one line, saying what to do where something is wrong."""

    name: str
    status: str
    detail: str


@dataclass
class ExistingPart:
    """A part an interrupted upload already stored; ``check`` is whatever the store can verify
    it with (S3 checksum or ETag, vault tree hash, file offset)."""

    number: int
    size: int
    check: Any = None


def new_archive_id(now: Optional[float] = None) -> str:
    """Sortable, unique id: UTC time and 8 random hex digits (20261127T163200Z-1a2b3c4d)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(4)}"


def id_time(archive_id: str) -> Optional[float]:
    """When an id made by new_archive_id was made (None for other ids: vault ids, foreign objects)."""
    try:
        return calendar.timegm(time.strptime(archive_id[:16], "%Y%m%dT%H%M%SZ"))
    except (ValueError, TypeError):
        return None


_ID_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,200}$")  # vault ids may start with "-"
_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def check_id(archive_id: str) -> str:
    """Refuse ids that could escape a prefix or directory (``/``, ``..``, control characters)."""
    if not isinstance(archive_id, str) or not _ID_RE.match(archive_id) or ".." in archive_id:
        raise NotFoundError(f"no archive {archive_id!r}: not a valid archive id")
    return archive_id


_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def check_host(host: str) -> str:
    """A host id: the last component of a fleet's per-host prefix."""
    if not isinstance(host, str) or not _HOST.match(host):
        raise UsageError(f"host {host!r}: a host id is 1 to 63 letters, digits, '.', '_' or '-' (no '/'), "
                         f"starting with a letter or digit")
    return host


def is_host(name: str) -> bool:
    return isinstance(name, str) and bool(_HOST.match(name))


def check_metadata(metadata: Optional[dict]) -> dict[str, str]:
    """Metadata travels as HTTP headers or vault descriptions, so: keys lower-case
    ``[a-z0-9][a-z0-9_.-]*`` up to 64, values printable ASCII without edge spaces.  Refused,
    never rewritten, so what is read back is what was written."""
    out: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise UsageError(f"metadata key {key!r}: use lower-case letters, digits, '.', '_', "
                             f"'-' (at most 64)")
        if not isinstance(value, str):
            value = str(value)
        if any(not 32 <= ord(c) < 127 for c in value) or value != value.strip():
            raise UsageError(f"metadata value of {key!r} must be printable ASCII without "
                             f"leading or trailing spaces")
        out[key] = value
    return out


def metadata_size(metadata: dict[str, str]) -> int:
    """Bytes S3 counts against its 2 KiB user-metadata limit: keys plus values."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())


def refuse_large_metadata(metadata: dict[str, str], size: int, limit: int, where: str) -> None:
    if size > limit:
        top = sorted(metadata, key=lambda k: -len(metadata[k]))[:3]
        raise UsageError(f"metadata is {size} bytes, over the {limit}-byte limit of {where} "
                         f"(largest fields: {', '.join(top)}): shorten or drop fields")


def pending(dest: str, archive_id: str, storage_class: str, detail: str) -> RestorePendingError:
    """The error of a read that needs a thaw first (the command line adds how to ask for one)."""
    return RestorePendingError(f"archive {archive_id} is in {storage_class} and {detail}", thaw=(dest, archive_id))


class UploadSession(ABC):
    """One upload at one destination, driven by ``Upload``.  Methods may be called from worker
    threads (send_part, reuse_part) concurrently; the others from the writing thread."""

    plan: PartPlan
    existing: dict[int, ExistingPart]

    @property
    def wants_part_sha256(self) -> bool:
        """Whether a part needs its SHA-256 (``Part.sha256``; else it is b""): the store checks or
        records it.  Asked after ``begin()``; a vault, which checks tree hashes, says no."""
        return True

    @property
    def ref(self) -> Optional[str]:
        """The store's id of this upload once begun (``IncompleteUpload.ref``), else None."""
        return None

    def size_of(self, n: int) -> int:
        """Part n's size: what an interrupted upload stored there, else the plan's."""
        ep = self.existing.get(n)
        return ep.size if ep is not None else self.plan.size(n)

    @abstractmethod
    def begin(self) -> None:
        """Start a multipart upload (called once, when the stream outgrows one part)."""

    @abstractmethod
    def send_part(self, part: Part) -> Any:
        """Store one part (retrying connection drops), check the store's echo of its checksum;
        return a receipt for ``complete``."""

    def reuse_part(self, existing: ExistingPart, part: Part) -> Any:
        """Receipt for an already stored part if it holds exactly ``part``'s bytes, else None."""
        return None

    @abstractmethod
    def put_single(self, data: bytes, sha256: bytes) -> ArchiveInfo:
        """Store a stream that fit in one part with one request, verified."""

    @abstractmethod
    def complete(self, parts: list[PartDone], size: int, sha256: bytes) -> ArchiveInfo:
        """Finish the multipart upload, then compare the store's checksum of the whole with the
        local one: IntegrityError (and nothing left behind) when they differ."""

    @abstractmethod
    def abort(self) -> None:
        """Discard everything this upload stored (idempotent)."""

    def release(self) -> None:
        """Let go of local resources (file descriptors, locks) without discarding anything:
        called on the resume candidates that were not chosen."""


class Upload(io.BufferedIOBase):
    """A writable binary stream into a store; ``commit()`` completes and verifies it.

    The stream is cut into parts that are sent ``jobs`` at a time while writing goes on; memory
    is about (jobs + 1) x part size.  Errors of a part in flight surface from the next
    ``write()``.  ``close()`` only ends writing (so wrapping writers may close it);
    ``commit()`` flushes the last part, completes and verifies, returning the ``ArchiveInfo``;
    ``abort()`` discards.  As a context manager it aborts on exception, and also when left
    without ``commit()``.  A failing ``commit()`` aborts too (unless journaled: see below).  Only
    a killed process leaves an incomplete upload behind, for ``Store.open_resume``.

    With a ``journal`` (plumbing.journal) every part is admitted by it before it is sent or
    kept, and ``keep()`` leaves the upload for a later run instead of discarding it; ``fallback``
    makes a new session where no interrupted one matches (see ``Store.open_continued``).
    """

    def __init__(self, sessions: list[UploadSession], *, jobs: int = 4, resume: bool = False,
                 dest: str = "", journal=None, fallback=None):
        super().__init__()
        self._jobs = jobs
        self._resume = resume
        self._dest = dest
        self._journal = journal
        self._fallback = fallback
        self._candidates = sessions
        self.session: Optional[UploadSession] = sessions[0] if not resume else None
        self._probe = bytearray()
        self._probe_need = max((s.existing[1].size for s in sessions if 1 in s.existing),
                               default=0) if resume else 0
        self._pipeline: Optional[PartPipeline] = None
        self._state = "open"
        self._stats_lock = threading.Lock()
        self.stats = {"parts_sent": 0, "parts_reused": 0, "bytes_sent": 0, "bytes_reused": 0}
        self.info: Optional[ArchiveInfo] = None
        if self.session is not None:
            self._make_pipeline()

    # ---- io plumbing
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self._state != "open" or self.closed:
            raise ValueError(f"write to an upload that is {'closed' if self.closed else self._state}")
        n = len(data)
        if self.session is None:
            self._probe += data
            if len(self._probe) >= self._probe_need:
                self._choose(at_eof=False)
            return n
        return self._pipeline.write(data)

    def close(self) -> None:
        """End writing; neither commits nor aborts (see class doc)."""
        super().close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._state == "open":
            try:
                self.abort()
            except Exception:  # noqa: BLE001 - keep the original error
                if exc is None:
                    raise
        return False

    # ---- life cycle
    @property
    def plan(self) -> Optional[PartPlan]:
        return self.session.plan if self.session is not None else None

    def commit(self) -> ArchiveInfo:
        """Complete the upload and verify it against the store; return what was stored."""
        if self._state == "committed":
            return self.info
        if self._state != "open":
            raise ValueError(f"commit of an upload that is {self._state}")
        try:
            if self.session is None:
                self._choose(at_eof=True)
            result = self._pipeline.finish()
            if result.single is not None and not self._resume:
                if self._journal is not None:
                    self._journal.admit(0, len(result.single), result.sha256)
                info = self.session.put_single(result.single, result.sha256)
                self._count("parts_sent", "bytes_sent", len(result.single))
            else:
                parts = result.parts
                if result.single is not None:  # resumed stream that is exactly one part
                    part = Part(1, 0, result.single, hashlib.sha256(result.single).digest())
                    parts = [PartDone(1, 0, part.size, part.sha256, self._handle(part))]
                info = self.session.complete(parts, result.size, result.sha256)
        except BaseException:
            self._state = "failed"
            if self._journal is None:  # a journaled upload's caller says: keep() or abort()
                self._abort_quietly()
            raise
        info.sha256 = result.sha256.hex()
        self.info = info
        self._state = "committed"
        return info

    def abort(self) -> None:
        """Discard the upload and whatever parts of it were stored."""
        self._stop("aborted")
        if self.session is not None:
            self.session.abort()
        else:  # resume that never chose an upload: discard nothing
            for session in self._candidates:
                session.release()

    def keep(self) -> None:
        """Stop, leaving what was stored for a later run to continue (a journaled upload)."""
        self._stop("kept")
        for session in [self.session] if self.session is not None else self._candidates:
            session.release()

    def _stop(self, state: str) -> None:
        """No more parts: wait for those in flight (nothing is sent after this returns)."""
        if self._state == "committed":
            raise ValueError(f"{state} after the upload was committed")
        self._state = state
        if self._pipeline is not None:
            self._pipeline.cancel()

    # ---- internals
    def _abort_quietly(self) -> None:
        try:
            if self._pipeline is not None:
                self._pipeline.cancel()
            if self.session is not None:
                self.session.abort()
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass

    def _make_pipeline(self) -> None:
        s = self.session
        self._pipeline = PartPipeline(
            s.size_of, self._handle, jobs=self._jobs, capacity=s.plan.capacity,
            too_big=lambda: StoreError(too_big_message(s.plan)),
            start=None if self._resume else self._begin, part_sha256=lambda: s.wants_part_sha256)

    def _begin(self) -> None:
        self.session.begin()
        if self._journal is not None and self.session.ref is not None:
            self._journal.opened(self.session.ref)

    def _handle(self, part: Part) -> Any:
        if self._journal is not None:  # before anything of the part can reach the store
            self._journal.admit(part.offset, part.size, part.sha256 or hashlib.sha256(part.data).digest())
        existing = self.session.existing.get(part.number)
        if existing is not None and existing.size == part.size:
            receipt = self.session.reuse_part(existing, part)
            if receipt is not None:
                self._count("parts_reused", "bytes_reused", part.size)
                return receipt
        receipt = self.session.send_part(part)
        self._count("parts_sent", "bytes_sent", part.size)
        return receipt

    def _count(self, parts_key: str, bytes_key: str, size: int) -> None:
        with self._stats_lock:
            self.stats[parts_key] += 1
            self.stats[bytes_key] += size

    def _choose(self, *, at_eof: bool) -> None:
        """Resume: continue the interrupted upload that this input's start matches."""
        data = bytes(self._probe)
        best = matching_upload(self._candidates, data)
        for session in self._candidates:
            if session is not best:
                session.release()
        if best is None and self._fallback is not None:
            best, self._resume = self._fallback(), False
        elif best is not None and self._journal is not None:
            offset = 0
            for n in range(1, max(best.existing) + 1):  # every part the store holds was journaled
                size = best.size_of(n)
                if n in best.existing and not self._journal.covers(offset, size):
                    best.release()
                    self._state = "failed"
                    raise ResumeMismatchError(
                        f"{self._dest} holds part {n} of the interrupted upload, which the resume journal does not "
                        f"record: the journal is incomplete, so resuming could send other bytes where some have "
                        f"left already")
                offset += size
        if best is None:
            self._state = "failed"
            raise NotFoundError(
                f"no incomplete upload in {self._dest} starts with this input "
                f"({len(self._candidates)} checked): resume needs the very same bytes; "
                f"upload it anew without --resume")
        self.session = best
        self._make_pipeline()
        self._probe = bytearray()
        self._pipeline.write(data)


def matching_upload(candidates: list[UploadSession], head: bytes) -> Optional[UploadSession]:
    """Of interrupted uploads, the one to continue with an input that starts with ``head``: its
    stored first part must be exactly that start (checked by the store: hash, ETag, bytes), and of
    several, the one with the most parts stored.  None when no upload matches."""
    best = None
    for session in candidates:
        first = session.existing.get(1)
        if first is None or first.size > len(head):
            continue
        start = head[: first.size]
        if session.reuse_part(first, Part(1, 0, start, hashlib.sha256(start).digest())) is not None:
            if best is None or len(session.existing) > len(best.existing):
                best = session
    return best


def copy_into(src: BinaryIO, dst, bufsize: int = 1 << 20) -> int:
    """Copy a readable binary stream into a writable one; return the byte count."""
    total = 0
    read = getattr(src, "read1", None) or src.read
    while True:
        chunk = read(bufsize)
        if not chunk:
            return total
        dst.write(chunk)
        total += len(chunk)


class Store(ABC):
    """A destination holding archives.  See the module doc; every method raises ZgError
    subclasses with one-line messages (StoreError, NotFoundError, RestorePendingError,
    IntegrityError, UsageError)."""

    url: str = ""
    problems: list = ()  # (id, why) of each object the last list() skipped as not of its documented form
    listed_as_of: Optional[float] = None  # when the last list() was true, if not when it ran (an inventory)

    @property
    @abstractmethod
    def properties(self) -> Properties:
        """What this store is and can do (see Properties)."""

    def price_class(self, storage_class: Optional[str] = None) -> str:
        """The price-table class of an archive stored with ``storage_class`` (as its ArchiveInfo
        or catalog row says; None: as new archives are stored)."""
        return self.properties.price_class

    def warning(self) -> Optional[str]:
        """A sentence the user should see about this destination (say, a directory others can
        write), or None."""
        return None

    def check_ready(self) -> None:
        """Raise StoreError now if the destination cannot be used at all (a file:// directory
        without its marker: an unmounted disk), before a command changes anything."""

    def doctor(self) -> list[Check]:
        """Probe the destination once (zg-doctor): what it is, what it lacks, what would hurt the
        backups.  Writes nothing that stays.  What was learned is then in ``capabilities()``."""
        try:
            self.check_ready()
        except StoreError as err:
            return [Check("destination", "fail", str(err))]
        return [Check("destination", "ok", f"{self.url} is ready")]

    def capabilities(self) -> dict:
        """What this store has found out about its server (JSON-able; zg-doctor records it in
        the catalog, and the commands give it back through ``assume``)."""
        return {}

    def assume(self, found: dict) -> None:
        """Take what an earlier probe found (``capabilities()``): nothing asked again."""

    def init(self) -> str:
        """Prepare a new destination for use (zg-init); returns what was done, as a sentence."""
        raise UsageError(f"{self.url}: this kind of destination has nothing zg-init can prepare")

    # ---- uploads
    def open_upload(self, metadata: dict[str, str], *, expected_size: Optional[int] = None,
                    jobs: int = 4) -> Upload:
        """Start an upload; write the stream to it, then ``commit()``.  ``expected_size`` (an
        upper bound) lets the store pick part sizes that fit."""
        session = self._new_session(check_metadata(metadata), expected_size)
        return Upload([session], jobs=jobs, dest=self.url)

    def open_resume(self, *, id: Optional[str] = None, expected_size: Optional[int] = None,
                    jobs: int = 4) -> Upload:
        """Continue an interrupted upload: write the very same stream again from its start;
        parts already stored are verified by hash and not sent again.  The upload is the one
        whose stored first part matches the input (``id`` narrows the choice); none matching
        raises NotFoundError."""
        sessions = [s for s in self._resume_sessions(id, expected_size) if 1 in s.existing]
        if not sessions:
            what = f" {id}" if id else ""
            raise NotFoundError(f"no incomplete upload{what} in {self.url} to resume "
                                f"(none with its first part stored)")
        return Upload(sessions, jobs=jobs, resume=True, dest=self.url)

    def open_continued(self, metadata: dict[str, str], journal, *, jobs: int = 4) -> Upload:
        """Upload a stream whose bytes an earlier run may in part have sent (a resumed backup):
        into the upload ``journal.ref`` where the store still holds it (its stored parts checked
        and kept), else into a new one; either way every part is admitted by ``journal`` first
        (plumbing.journal), and a part it refuses raises ResumeMismatchError unsent."""
        fresh = lambda: self._new_session(check_metadata(metadata), None)  # noqa: E731
        sessions = [s for s in self._resume_sessions(journal.ref, None) if 1 in s.existing] \
            if journal.ref is not None else []
        if not sessions:
            return Upload([fresh()], jobs=jobs, dest=self.url, journal=journal)
        return Upload(sessions, jobs=jobs, resume=True, dest=self.url, journal=journal, fallback=fresh)

    def resume_upload(self, src: BinaryIO, *, id: Optional[str] = None,
                      expected_size: Optional[int] = None, jobs: int = 4) -> ArchiveInfo:
        """``open_resume`` fed from ``src`` to its end, then committed."""
        with self.open_resume(id=id, expected_size=expected_size, jobs=jobs) as up:
            copy_into(src, up)
            return up.commit()

    def upload(self, src: BinaryIO, metadata: dict[str, str], *,
               expected_size: Optional[int] = None, jobs: int = 4) -> ArchiveInfo:
        """``open_upload`` fed from ``src`` to its end, then committed."""
        with self.open_upload(metadata, expected_size=expected_size, jobs=jobs) as up:
            copy_into(src, up)
            return up.commit()

    def part_plan(self, expected_size: Optional[int] = None) -> PartPlan:
        """The part sizes an upload of this size would use (``plan.describe(jobs)`` for help)."""
        return self._plan(expected_size)

    @abstractmethod
    def _plan(self, expected_size: Optional[int]) -> PartPlan: ...

    @abstractmethod
    def _new_session(self, metadata: dict[str, str], expected_size: Optional[int]) -> UploadSession: ...

    @abstractmethod
    def _resume_sessions(self, id: Optional[str], expected_size: Optional[int]) -> list[UploadSession]:
        """Sessions for the interrupted uploads (narrowed to ``id``), existing parts loaded."""

    @abstractmethod
    def incomplete_uploads(self) -> list[IncompleteUpload]:
        """Uploads started and never completed nor aborted."""

    @abstractmethod
    def discard_incomplete(self, ref: str) -> None:
        """Abort one incomplete upload (``IncompleteUpload.ref``) and free what it stored."""

    # ---- archives
    @abstractmethod
    def stat(self, id: str) -> ArchiveInfo:
        """One archive's info; NotFoundError when missing."""

    @abstractmethod
    def list(self) -> Iterator[ArchiveInfo]:
        """Every complete archive, read from the store itself (a catalog can be rebuilt)."""

    @abstractmethod
    def delete(self, id: str, *, bypass_governance: bool = False) -> None:
        """Delete an archive; NotFoundError when missing, RetainedError while the server keeps it
        locked (a governance lock yields to ``bypass_governance``, where the credentials may)."""

    def policy(self, role: str) -> dict:
        """The IAM policy document that lets ``role`` (backup, restore, prune, admin) do its
        commands' work here and no more.  Stores without IAM policies of their own refuse."""
        raise UsageError(f"{self.url}: zg-doctor --policy is for s3:// destinations (IAM policies of S3 actions)")

    def hosts(self) -> list[str]:
        """The host ids with archives under a prefix of their own right under this store's
        (a fleet sharing one bucket: zg-ls --all-hosts).  Stores without prefixes have none."""
        return []

    def retain(self, id: str, until: float, version: Optional[str] = None) -> ArchiveInfo:
        """Make the server keep archive ``id`` (its ``version``, as recorded, where the store
        keeps versions) locked until at least ``until`` (never shorter); returns its info as the
        server then reports it.  Stores that lock nothing refuse."""
        raise UsageError(f"{self.url}: this destination locks no archive (object_lock is S3's)")

    @abstractmethod
    def request_thaw(self, id: str, tier: str = "Standard", days: int = 7,
                     version: Optional[str] = None) -> ThawStatus:
        """Ask for a readable copy of a cold archive (no-op for ready ones); ``version``: the one
        recorded at upload, where the store keeps versions (S3), as reads name it."""

    @abstractmethod
    def thaw_status(self, id: str, version: Optional[str] = None) -> ThawStatus:
        """Where a thaw stands (ready, frozen, thawing, thawed)."""

    @abstractmethod
    def open_read(self, id: str, *, jobs: int = 4, start: int = 0, recorded=None) -> io.RawIOBase:
        """Readable binary stream of the archive: ranges fetched ``jobs`` at a time, delivered in
        order, each verified (IntegrityError); the last bytes are delivered only after the whole
        archive's checksum matched.  RestorePendingError when the archive is not thawed.
        ``start`` > 0 resumes a download at that offset: every range is still verified, but the
        whole-archive check is then the caller's (it holds the bytes before ``start``).
        ``recorded`` is what a catalog recorded at upload (anything with ``size``, ``sha256``
        (hex) and ``checksum``: a catalog row, an ArchiveInfo): a store uses it only where the
        server names nothing to check against itself (an S3-compatible server that lists no
        parts, a vault job without its tree hash or size); the reader's ``verifies`` says which
        check it made."""

    def read_all(self, id: str, *, jobs: int = 4) -> bytes:
        with self.open_read(id, jobs=jobs) as r:
            return r.read()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def vouches(reader, checksum: Optional[str], sha256: Optional[str]) -> bool:
    """Did ``reader`` check the whole archive against what was recorded at upload (its store
    checksum, or its SHA-256)?  Otherwise the caller hashes the bytes itself."""
    made = getattr(reader, "verifies", None)
    return made is not None and made in (checksum, f"sha256:{sha256}" if sha256 else None)


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise UsageError(f"unknown retrieval tier {tier!r}: use one of {', '.join(TIERS)}")
    return tier


def verify_equal(what: str, local, remote) -> None:
    """Raise IntegrityError when the store's checksum is not the local one."""
    if local != remote:
        raise IntegrityError(f"{what}: the store's checksum {remote} differs from the local "
                             f"{local}")


__all__ = [
    "ArchiveInfo", "Check", "Properties", "ThawStatus", "IncompleteUpload", "ExistingPart", "Store", "Upload",
    "UploadSession", "check_metadata", "check_id", "new_archive_id", "copy_into",
    "THAW_WAIT", "STATES", "TIERS", "vouches",
]
