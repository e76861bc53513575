"""``file:///path``: archives in a local directory; the default destination, needing no account.

Layout: ``<id>.zg`` (the bytes) and ``<id>.zg.json`` (sidecar: metadata, size, SHA-256 of the
whole and of each part).  An upload writes ``<id>.zg.partial`` (parts in parallel with pwrite)
next to ``<id>.zg.partial.json``; commit reads the data back against the part hashes, fsyncs,
writes the sidecar atomically, then renames the data into place and fsyncs the directory.  So an
``<id>.zg`` always has its sidecar and complete, verified bytes; a partial file is never listed as
an archive; a killed upload leaves the partial pair for ``open_resume``.  Reads check every part
and the whole SHA-256 (the last part is delivered only after it matched).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from typing import Iterator, Optional

from ..errors import IntegrityError, NotFoundError, StoreError, UsageError
from ..parts import MiB, OrderedReader, Part, PartDone, PartPlan, fixed_plan
from .base import (ArchiveInfo, ExistingPart, IncompleteUpload, Store, ThawStatus, UploadSession,
                   check_id, check_tier, new_archive_id)

FILE_PART = 16 * MiB
SUFFIX = ".zg"
SIDECAR = ".zg.json"
PARTIAL = ".zg.partial"
PARTIAL_META = ".zg.partial.json"


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a torn one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def pread_exact(fd: int, size: int, offset: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = os.pread(fd, size - got, offset + got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class FileSession(UploadSession):
    def __init__(self, store: "FileStore", archive_id: str, metadata: dict, created: float,
                 plan: PartPlan, fd: Optional[int] = None,
                 existing: Optional[dict[int, ExistingPart]] = None):
        self.store = store
        self.id = archive_id
        self.metadata = metadata
        self.created = created
        self.plan = plan
        self.fd = fd
        self.existing = existing or {}

    @property
    def partial(self) -> str:
        return self.store._path(self.id, PARTIAL)

    def begin(self) -> None:
        os.makedirs(self.store.path, exist_ok=True)
        head = {"version": 1, "id": self.id, "created": self.created,
                "metadata": self.metadata, "part_size": self.plan.first}
        write_atomic(self.store._path(self.id, PARTIAL_META), json.dumps(head).encode())
        try:
            self.fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise StoreError(f"cannot create {self.partial}: {exc.strerror}") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def send_part(self, part: Part) -> None:
        try:
            pwrite_all(self.fd, part.data, part.offset)
        except OSError as exc:
            raise StoreError(f"writing {self.partial}: {exc.strerror}") from None

    def reuse_part(self, existing: ExistingPart, part: Part):
        stored = pread_exact(self.fd, existing.size, part.offset)
        return True if hashlib.sha256(stored).digest() == part.sha256 else None

    def put_single(self, data: bytes, sha256: bytes) -> ArchiveInfo:
        self.begin()
        part = Part(1, 0, data, hashlib.sha256(data).digest())
        self.send_part(part)
        return self.complete([PartDone(1, 0, len(data), part.sha256)], len(data), sha256)

    def complete(self, parts: list[PartDone], size: int, sha256: bytes) -> ArchiveInfo:
        try:
            os.ftruncate(self.fd, size)  # a resumed partial may be longer than the stream
            os.fsync(self.fd)
        except OSError as exc:
            raise StoreError(f"writing {self.partial}: {exc.strerror}") from None
        # Read back what is on disk: parts kept from an interrupted run are in there too.
        with self.store._reader(self.fd, self.partial, parts, None, jobs=4) as r:
            while r.read(8 * MiB):
                pass
        side = {"version": 1, "id": self.id, "size": size, "sha256": sha256.hex(),
                "created": self.created, "metadata": self.metadata,
                "part_size": self.plan.first, "parts": [p.sha256.hex() for p in parts]}
        final = self.store._path(self.id, SUFFIX)
        write_atomic(self.store._path(self.id, SIDECAR), json.dumps(side).encode())
        os.rename(self.partial, final)
        fsync_dir(self.store.path)
        self._close()
        try:
            os.unlink(self.store._path(self.id, PARTIAL_META))
        except FileNotFoundError:
            pass
        fsync_dir(self.store.path)
        return self.store._info(side)

    def abort(self) -> None:
        self._close()
        for suffix in (PARTIAL, PARTIAL_META):
            try:
                os.unlink(self.store._path(self.id, suffix))
            except FileNotFoundError:
                pass
        if os.path.isdir(self.store.path):
            fsync_dir(self.store.path)

    def release(self) -> None:
        self._close()

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class FileStore(Store):
    """Archives in a directory (see module doc); ``part_size`` sets the verified unit."""

    kind = "file"

    def __init__(self, path: str, *, part_size: int = FILE_PART, url: Optional[str] = None,
                 **_ignored):
        if not os.path.isabs(path):
            raise UsageError(f"file destination needs an absolute path, not {path!r}")
        self.path = os.path.normpath(path)
        self.part_size = int(part_size)
        self.url = url or f"file://{self.path}"

    def _path(self, archive_id: str, suffix: str) -> str:
        return os.path.join(self.path, archive_id + suffix)

    def _plan(self, expected_size=None) -> PartPlan:
        return fixed_plan(self.part_size, what="file")

    def _new_session(self, metadata, expected_size) -> FileSession:
        return FileSession(self, new_archive_id(), metadata, time.time(), self._plan())

    def _scan(self, suffix: str) -> list[str]:
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot list {self.path}: {exc.strerror}") from None
        return sorted(n[: -len(suffix)] for n in names if n.endswith(suffix))

    def _load(self, path: str) -> dict:
        try:
            with open(path, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{path}: unreadable sidecar ({exc})") from None

    def _resume_sessions(self, id, expected_size) -> list[FileSession]:
        sessions = []
        for archive_id in self._scan(PARTIAL_META):
            if id is not None and archive_id != id:
                continue
            try:
                head = self._load(self._path(archive_id, PARTIAL_META))
                fd = os.open(self._path(archive_id, PARTIAL), os.O_RDWR)
            except (FileNotFoundError, IntegrityError):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another process is writing it right now
                os.close(fd)
                continue
            plan = fixed_plan(head["part_size"], what="file")
            have = os.fstat(fd).st_size // plan.first
            existing = {n: ExistingPart(n, plan.first, (n - 1) * plan.first)
                        for n in range(1, have + 1)}
            sessions.append(FileSession(self, archive_id, head.get("metadata", {}),
                                        head.get("created", time.time()), plan, fd, existing))
        return sessions

    def incomplete_uploads(self) -> list[IncompleteUpload]:
        out = []
        for archive_id in self._scan(PARTIAL):
            try:
                head = self._load(self._path(archive_id, PARTIAL_META))
            except (FileNotFoundError, IntegrityError):
                head = {}
            try:
                st = os.stat(self._path(archive_id, PARTIAL))
            except FileNotFoundError:
                continue
            part = head.get("part_size") or self.part_size
            out.append(IncompleteUpload(archive_id, archive_id, head.get("created", st.st_mtime),
                                        st.st_size // part, st.st_size, head.get("metadata", {})))
        return out

    def discard_incomplete(self, ref: str) -> None:
        check_id(ref)
        if not os.path.exists(self._path(ref, PARTIAL)) and \
                not os.path.exists(self._path(ref, PARTIAL_META)):
            raise NotFoundError(f"no incomplete upload {ref} in {self.url}")
        FileSession(self, ref, {}, 0, self._plan()).abort()

    # ---- archives
    def _side(self, archive_id: str) -> dict:
        check_id(archive_id)
        if not os.path.exists(self._path(archive_id, SUFFIX)):
            raise NotFoundError(f"no archive {archive_id} in {self.url}")
        try:
            return self._load(self._path(archive_id, SIDECAR))
        except FileNotFoundError:
            raise IntegrityError(f"archive {archive_id} in {self.url} has no sidecar "
                                 f"{archive_id}{SIDECAR}: cannot verify it") from None

    def _info(self, side: dict) -> ArchiveInfo:
        return ArchiveInfo(side["id"], side["size"], side["sha256"], side["created"],
                           dict(side.get("metadata", {})), "LOCAL", "ready",
                           checksum=f"sha256:{side['sha256']}")

    def stat(self, id: str) -> ArchiveInfo:
        return self._info(self._side(id))

    def list(self) -> Iterator[ArchiveInfo]:
        if not os.path.isdir(self.path):
            raise StoreError(f"{self.path} is not a directory")
        for archive_id in self._scan(SUFFIX):
            try:
                yield self._info(self._side(archive_id))
            except (NotFoundError, IntegrityError):
                continue  # vanished meanwhile, or not ours

    def delete(self, id: str) -> None:
        self._side(id)
        os.unlink(self._path(id, SUFFIX))  # data first: a lone sidecar is never listed
        try:
            os.unlink(self._path(id, SIDECAR))
        except FileNotFoundError:
            pass
        fsync_dir(self.path)

    def request_thaw(self, id: str, tier: str = "Standard", days: int = 7) -> ThawStatus:
        check_tier(tier)
        return self.thaw_status(id)

    def thaw_status(self, id: str) -> ThawStatus:
        self._side(id)
        return ThawStatus(id, "ready", "local file: readable at once")

    def open_read(self, id: str, *, jobs: int = 4, start: int = 0) -> OrderedReader:
        side = self._side(id)
        path = self._path(id, SUFFIX)
        fd = os.open(path, os.O_RDONLY)
        try:
            if os.fstat(fd).st_size != side["size"]:
                raise IntegrityError(f"archive {id}: {os.fstat(fd).st_size} bytes on disk, "
                                     f"{side['size']} recorded")
            size, step = side["size"], side["part_size"]
            parts = [PartDone(n + 1, off, min(step, size - off), bytes.fromhex(h))
                     for n, (off, h) in enumerate(zip(range(0, max(size, 1), step),
                                                      side["parts"]))]
            if sum(p.size for p in parts) != size:
                raise IntegrityError(f"archive {id}: sidecar part list does not cover its size")
            whole = None if start else bytes.fromhex(side["sha256"])
            reader = self._reader(fd, path, parts, whole, jobs=jobs, own_fd=True, start=start)
            if whole is not None:
                reader.verifies = f"sha256:{side['sha256']}"
            return reader
        except BaseException:
            os.close(fd)
            raise

    def _reader(self, fd: int, path: str, parts: list[PartDone], whole: Optional[bytes], *,
                jobs: int, own_fd: bool = False, start: int = 0) -> OrderedReader:
        """Verified parallel reader over parts with known SHA-256 (and optionally the whole's)."""
        hasher = hashlib.sha256()

        def fetch(p: PartDone) -> bytes:
            data = pread_exact(fd, p.size, p.offset)
            if len(data) != p.size or hashlib.sha256(data).digest() != p.sha256:
                raise IntegrityError(f"{path}: part {p.number} (bytes {p.offset}-"
                                     f"{p.offset + p.size - 1}) does not match its SHA-256")
            return data

        def deliver(p: PartDone, data: bytes, last: bool) -> None:
            if whole is None:
                return
            hasher.update(data)
            if last and hasher.digest() != whole:
                raise IntegrityError(f"{path}: SHA-256 of the whole does not match the sidecar")

        return OrderedReader(parts, fetch, jobs=jobs, deliver=deliver, start=start,
                             on_close=(lambda: os.close(fd)) if own_fd else None)
