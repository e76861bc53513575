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
import re
import secrets
import stat
import time
from typing import Iterator, Optional

from ..errors import IntegrityError, NotFoundError, StoreError, UsageError
from ..format.metadata import printable
from ..plumbing.parts import HEADROOM, MiB, OrderedReader, Part, PartBuffers, PartDone, PartPlan, fixed_plan
from ..plumbing.writes import start_writeback, write_all
from .base import (ArchiveInfo, Properties, ExistingPart, IncompleteUpload, Store, ThawStatus, UploadSession,
                   check_id, check_metadata, check_tier, new_archive_id)

FILE_PART = 16 * MiB
SUFFIX = ".zg"
SIDECAR = ".zg.json"
PARTIAL = ".zg.partial"
PARTIAL_META = ".zg.partial.json"
MARKER = ".zfsglacier-destination"


def mount_point(path: str) -> str:
    """The mount point of the filesystem holding ``path`` (where st_dev changes going up)."""
    path = os.path.realpath(path)
    dev = os.stat(path).st_dev
    while path != "/":
        parent = os.path.dirname(path)
        if os.stat(parent).st_dev != dev:
            break
        path = parent
    return path


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The directory may be writable by someone else (a shared NAS folder) while zfsglacier runs as
# root: nothing here follows a symlink planted in it (O_NOFOLLOW), every file is created new under
# a name nobody can predict (O_CREAT | O_EXCL), and everything is 0600 / 0700 whatever the umask.
CREATE = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
OPEN = os.O_NOFOLLOW | os.O_CLOEXEC
FILE_MODE, DIR_MODE = 0o600, 0o700
MAX_SIDECAR = 8 << 20  # the largest sidecar read: it lists one hash per part, 68 bytes each
MAX_PARTS = 100_000  # so an upload stops at this many parts: its sidecar (6.8 MB) stays readable
MAX_PART = 256 << 20  # the largest part read at once (the configured size, or a sidecar's)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def write_atomic(path: str, data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a torn one."""
    tmp = f"{path}.tmp-{secrets.token_hex(8)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | CREATE, FILE_MODE)
    except OSError as exc:
        raise StoreError(f"cannot create {tmp}: {exc.strerror}") from None
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        os.unlink(tmp)
        if isinstance(exc, OSError):  # a full disk, say: the destination failed, nothing is left half-written
            raise StoreError(f"writing {path}: {exc.strerror}") from None
        raise
    os.close(fd)
    os.replace(tmp, path)  # replaces a planted symlink itself, never its target
    fsync_dir(os.path.dirname(path) or ".")


def check_sidecar(side, archive_id: str) -> dict:
    """A sidecar's fields, each checked (the directory's writer may not be us)."""
    def bad(why):
        return IntegrityError(f"archive {archive_id}: sidecar {why}")
    if not isinstance(side, dict) or side.get("id") != archive_id:
        raise bad("names another archive, or is not a sidecar")
    size, step, parts = side.get("size"), side.get("part_size"), side.get("parts")
    if not isinstance(size, int) or not 0 <= size < 1 << 50:
        raise bad("has no valid size")
    if not isinstance(step, int) or not MiB <= step <= MAX_PART:
        raise bad(f"part size is not between 1 MiB and {MAX_PART >> 20} MiB")
    if not isinstance(side.get("sha256"), str) or not _HEX64.match(side["sha256"]):
        raise bad("has no valid SHA-256")
    if not isinstance(parts, list) or len(parts) != max(1, -(-size // step)) or \
            not all(isinstance(h, str) and _HEX64.match(h) for h in parts):
        raise bad("part hashes do not cover its size")
    if not isinstance(side.get("created"), (int, float)):
        raise bad("has no valid creation time")
    meta = side.get("metadata", {})
    if not isinstance(meta, dict):
        raise bad("metadata is not a map")
    try:
        check_metadata(meta)
    except UsageError as err:
        raise bad(f"metadata: {err}") from None
    return side


def pread_into(fd: int, buf: bytearray, offset: int) -> int:
    """Fill ``buf`` from ``offset``; the bytes read, fewer only at end of file."""
    view, got = memoryview(buf), 0
    while got < len(buf):
        n = os.preadv(fd, [view[got:]], offset + got)
        if not n:
            break
        got += n
    return got


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
    def ref(self) -> Optional[str]:
        return self.id

    @property
    def partial(self) -> str:
        return self.store._path(self.id, PARTIAL)

    def begin(self) -> None:
        self.store.check_ready()
        head = {"version": 1, "id": self.id, "created": self.created,
                "metadata": self.metadata, "part_size": self.plan.first}
        write_atomic(self.store._path(self.id, PARTIAL_META), json.dumps(head).encode())
        try:
            self.fd = os.open(self.partial, os.O_RDWR | CREATE, FILE_MODE)
        except OSError as exc:
            raise StoreError(f"cannot create {self.partial}: {exc.strerror}") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def send_part(self, part: Part) -> None:
        try:
            write_all(self.fd, part.data, part.offset)
            start_writeback(self.fd, part.offset, len(part.data))  # complete()'s fsync: writes.py
        except OSError as exc:
            raise StoreError(f"writing {self.partial}: {exc.strerror}") from None

    def reuse_part(self, existing: ExistingPart, part: Part):
        stored = bytearray(existing.size)
        if pread_into(self.fd, stored, part.offset) != existing.size:
            return None
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

    properties = Properties(cold=False, price_class="LOCAL", checksum="sha256", min_part=MiB, max_part=MAX_PART,
                            max_parts=MAX_PARTS)

    def __init__(self, path: str, *, part_size: int = FILE_PART, url: Optional[str] = None,
                 **_ignored):
        if not os.path.isabs(path):
            raise UsageError(f"file destination needs an absolute path, not {path!r}")
        self.path = os.path.normpath(path)
        self.part_size = int(part_size)
        if not MiB <= self.part_size <= MAX_PART:
            raise UsageError(f"file destination part_size must be between 1 MiB and {MAX_PART >> 20} MiB")
        self.url = url or f"file://{self.path}"
        self.problems: list[tuple[str, str]] = []  # (id, why) of what list() skipped
        self._ready = False

    # A destination is a directory that says so: `zg-init` writes MARKER into it, and nothing is
    # ever written to (or read from) a directory without one.  An unmounted disk is then an empty
    # mount point, or no directory at all, and a backup fails instead of filling the root
    # filesystem.  A directory that already holds archives (zfsglacier < 0.4) is adopted.
    def check_ready(self) -> None:
        if self._ready:
            return
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            raise StoreError(f"{self.url}: no such directory (is the disk mounted? a new destination is "
                             f"made with `zg-init {self.url}`)") from None
        except OSError as exc:
            raise StoreError(f"cannot list {self.path}: {exc.strerror}") from None
        if MARKER in names:
            self._check_marker()
        elif any(n.endswith((SIDECAR, PARTIAL_META)) for n in names):
            self._write_marker()
        else:
            raise StoreError(f"{self.url} is not a zfsglacier destination (no {MARKER} in it): if it is a disk, "
                             f"is it mounted? To start a new destination there: `zg-init {self.url}`")
        self._ready = True

    def _check_marker(self) -> None:
        try:
            mark = self._load(os.path.join(self.path, MARKER))
        except (FileNotFoundError, IntegrityError):
            mark = None
        if not isinstance(mark, dict) or mark.get("zfsglacier") != "destination":
            raise StoreError(f"{self.path}/{MARKER} is not a zfsglacier destination marker: refusing to use "
                             f"{self.url}")

    def _write_marker(self) -> None:
        body = json.dumps({"zfsglacier": "destination", "url": self.url, "created": time.time()}).encode()
        write_atomic(os.path.join(self.path, MARKER), body)
        fsync_dir(self.path)

    def init(self) -> str:
        """Make the directory (its parent must exist: an unmounted disk's parent is no place to
        invent it) and the marker."""
        created = False
        try:
            os.mkdir(self.path, DIR_MODE)
            created = True
        except FileExistsError:
            pass
        except FileNotFoundError:
            raise StoreError(f"{os.path.dirname(self.path)} does not exist: mount the disk, or create the "
                             f"parent directory first") from None
        except OSError as exc:
            raise StoreError(f"cannot create {self.path}: {exc.strerror}") from None
        if not os.path.isdir(self.path):
            raise StoreError(f"{self.path} exists and is not a directory")
        if os.path.exists(os.path.join(self.path, MARKER)):
            self._check_marker()
            return f"{self.url} is already a zfsglacier destination"
        self._write_marker()
        self._ready = True
        return (f"{'created' if created else 'marked'} {self.url} as a zfsglacier destination, on the filesystem "
                f"mounted at {mount_point(self.path)}")

    def warning(self) -> Optional[str]:
        """A sentence for the user when the directory is writable by others (or None)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return (f"{self.path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}): anyone who can "
                    f"write it can delete or replace archives (restore detects replacement, not deletion); "
                    f"chmod 700 {self.path}")
        return None

    def _path(self, archive_id: str, suffix: str) -> str:
        return os.path.join(self.path, archive_id + suffix)

    def _plan(self, expected_size=None) -> PartPlan:
        """The configured part size (16 MiB: 1.5 TiB in MAX_PARTS parts), doubled until an
        expected size (with headroom) fits."""
        size = self.part_size
        while expected_size and size * MAX_PARTS < expected_size * HEADROOM and size * 2 <= MAX_PART:
            size *= 2
        return fixed_plan(size, max_parts=MAX_PARTS, what="file")

    def _new_session(self, metadata, expected_size) -> FileSession:
        return FileSession(self, new_archive_id(), metadata, time.time(), self._plan(expected_size))

    def _scan(self, suffix: str) -> list[str]:
        self.check_ready()
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            raise StoreError(f"cannot list {self.path}: {exc.strerror}") from None
        return sorted(n[: -len(suffix)] for n in names if n.endswith(suffix))

    def _load(self, path: str) -> dict:
        try:
            fd = os.open(path, os.O_RDONLY | OPEN)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise IntegrityError(f"{path}: unreadable sidecar ({exc.strerror})") from None
        try:
            with os.fdopen(fd, "rb") as f:
                data = f.read(MAX_SIDECAR + 1)
            if len(data) > MAX_SIDECAR:
                raise ValueError("larger than any sidecar")
            return json.loads(data)
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{path}: unreadable sidecar ({exc})") from None

    def _resume_sessions(self, id, expected_size) -> list[FileSession]:
        sessions = []
        for archive_id in self._scan(PARTIAL_META):
            if id is not None and archive_id != id:
                continue
            try:
                head = self._load(self._path(archive_id, PARTIAL_META))
                if not isinstance(head, dict) or not isinstance(head.get("part_size"), int) or \
                        not MiB <= head["part_size"] <= MAX_PART or not isinstance(head.get("metadata", {}), dict):
                    continue  # not a partial upload of ours
                fd = os.open(self._path(archive_id, PARTIAL), os.O_RDWR | OPEN)
            except (OSError, IntegrityError):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another process is writing it right now
                os.close(fd)
                continue
            plan = fixed_plan(head["part_size"], max_parts=MAX_PARTS, what="file")
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
        self.check_ready()
        if not os.path.lexists(self._path(archive_id, SUFFIX)):
            raise NotFoundError(f"no archive {archive_id} in {self.url}")
        try:
            return check_sidecar(self._load(self._path(archive_id, SIDECAR)), archive_id)
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
        self.problems = []
        for archive_id in self._scan(SUFFIX):
            try:
                check_id(archive_id)
                yield self._info(self._side(archive_id))
            except NotFoundError as err:  # vanished meanwhile, or a name that is no archive id
                if os.path.lexists(self._path(archive_id, SUFFIX)):
                    self.problems.append((printable(archive_id), str(err)))
            except IntegrityError as err:  # reported, skipped: one bad object is never fatal
                self.problems.append((archive_id, str(err)))

    def delete(self, id: str, *, bypass_governance: bool = False) -> None:
        self._side(id)
        os.unlink(self._path(id, SUFFIX))  # data first: a lone sidecar is never listed
        try:
            os.unlink(self._path(id, SIDECAR))
        except FileNotFoundError:
            pass
        fsync_dir(self.path)

    def request_thaw(self, id: str, tier: str = "Standard", days: int = 7,
                     version: Optional[str] = None) -> ThawStatus:
        check_tier(tier)
        return self.thaw_status(id)

    def thaw_status(self, id: str, version: Optional[str] = None) -> ThawStatus:
        self._side(id)
        return ThawStatus(id, "ready", "local file: readable at once")

    def open_read(self, id: str, *, jobs: int = 4, start: int = 0, recorded=None) -> OrderedReader:
        side = self._side(id)
        path = self._path(id, SUFFIX)
        try:
            fd = os.open(path, os.O_RDONLY | OPEN)
        except OSError as exc:
            raise IntegrityError(f"archive {id}: cannot open {path} ({exc.strerror}; a symlink is never "
                                 f"followed)") from None
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
        buffers = PartBuffers()  # parts are read into buffers the reader hands back (parts.py: why)

        def fetch(p: PartDone) -> bytearray:
            data = buffers.get(p.size)
            if pread_into(fd, data, p.offset) != p.size or hashlib.sha256(data).digest() != p.sha256:
                raise IntegrityError(f"{path}: part {p.number} (bytes {p.offset}-"
                                     f"{p.offset + p.size - 1}) does not match its SHA-256")
            return data

        def deliver(p: PartDone, data: bytes, last: bool) -> None:
            if whole is None:
                return
            hasher.update(data)
            if last and hasher.digest() != whole:
                raise IntegrityError(f"{path}: SHA-256 of the whole does not match the sidecar")

        return OrderedReader(parts, fetch, jobs=jobs, deliver=deliver, start=start, release=buffers.put,
                             on_close=(lambda: os.close(fd)) if own_fd else None)
