"""A write-ahead journal of what bytes of an upload may have left this host (a resumable backup).

The rule it serves is AES-GCM's: never encrypt different bytes under a key and nonce whose
ciphertext may already have left the host.  A resumed backup encrypts its stream again, under the
same key and nonces, so it may only send, at each offset, the very bytes a run before may have
sent there.  The journal is how it knows them:

- ``admit(offset, size, sha256)`` is called for every part *before* the part is handed to a store
  (and for parts the store is found to hold already).  A part at an offset never journaled is
  recorded and flushed to disk (fsync) before it may be sent: so a killed run's journal covers
  everything it may have sent, whatever the store acknowledged.  A part at a journaled offset must
  have the journaled size and SHA-256; anything else (another size, a range across journaled
  parts) raises ``ResumeMismatchError``, and nothing of it is sent.
- Lines are JSON, each followed by a tab and the SHA-256 of the JSON: a line that fails its
  checksum is damage, and the whole journal is refused.  Only a last line cut short (no newline:
  a run killed inside ``write``) is dropped; the part it was about was not sent, since sending
  waits for the fsync.
- Files are created 0600 with O_EXCL: the first line holds what the caller keeps there (for a
  backup the archive's file key and header, so the journal is as secret as the data).

The checksum finds damage, not an attacker: one who can write the journal can also read the key
in it.  What such a change can do is refused by comparison (a hash that differs, a part that is
not where the journal says) except one thing: lines removed from the end make the journal forget
parts that may have left.  ``covers`` lets the caller hold the store's own list of parts to the
journal, which finds that where the store lists what it holds.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import threading
from typing import Optional

from ..errors import ResumeMismatchError
from .writes import write_all

FORMAT = "zfsglacier-journal/1"
MAX_LINE = 1 << 20  # the first line holds a header of at most 1 MiB, hex-encoded


def _line(record: dict) -> bytes:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return f"{text}\t{hashlib.sha256(text.encode()).hexdigest()}\n".encode()


def _parse(line: bytes, path: str, n: int) -> dict:
    try:
        text, _, digest = line.decode().partition("\t")
        if hashlib.sha256(text.encode()).hexdigest() != digest:
            raise ValueError("checksum")
        record = json.loads(text)
        if not isinstance(record, dict):
            raise ValueError("not an object")
        return record
    except (UnicodeDecodeError, ValueError):
        raise ResumeMismatchError(f"resume journal {path} is damaged at line {n}: refused") from None


class Journal:
    """One upload's journal (see module doc).  ``meta`` is the caller's first line; ``ref`` the
    store's id of the upload, once one was started; ``parts`` {offset: (size, sha256 hex)}."""

    def __init__(self, path: str, meta: dict, fd: int, parts=None, ref=None):
        self.path = path
        self.meta = meta
        self.parts: dict[int, tuple[int, str]] = dict(parts or {})
        self.ref: Optional[str] = ref
        self._offsets = sorted(self.parts)
        self._fd = fd
        self._lock = threading.Lock()

    # ---- life cycle
    @classmethod
    def create(cls, path: str, meta: dict) -> "Journal":
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        journal = cls(path, meta, fd)
        journal._append({"format": FORMAT, "meta": meta})
        dfd = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return journal

    @classmethod
    def load(cls, path: str, *, write: bool = True) -> "Journal":
        """The journal at ``path``, opened to go on appending (``write``; else only read);
        ResumeMismatchError if damaged."""
        with open(path, "rb") as f:
            data = f.read(64 * MAX_LINE)
        lines = data.split(b"\n")
        lines.pop()  # after the last newline: empty, or a line cut short by a kill (dropped)
        if not lines:
            raise ResumeMismatchError(f"resume journal {path} is empty: refused")
        first = _parse(lines[0], path, 1)
        if first.get("format") != FORMAT or not isinstance(first.get("meta"), dict):
            raise ResumeMismatchError(f"resume journal {path} is not a {FORMAT} journal: refused")
        parts, ref = {}, None
        for n, line in enumerate(lines[1:], 2):
            record = _parse(line, path, n)
            if "ref" in record and isinstance(record["ref"], str):
                ref = record["ref"]
                continue
            try:
                offset, size, digest = record["part"]
                if not (isinstance(offset, int) and isinstance(size, int) and offset >= 0 and size > 0
                        and isinstance(digest, str) and len(digest) == 64):
                    raise ValueError
            except (KeyError, TypeError, ValueError):
                raise ResumeMismatchError(f"resume journal {path} has a malformed record at line {n}: "
                                          f"refused") from None
            if offset in parts:
                raise ResumeMismatchError(f"resume journal {path} records a part twice: refused")
            parts[offset] = (size, digest)
        starts = sorted(parts)
        if any(a + parts[a][0] > b for a, b in zip(starts, starts[1:])):
            raise ResumeMismatchError(f"resume journal {path} records overlapping parts: refused")
        fd = None
        if write:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            if not data.endswith(b"\n"):  # cut short: drop the torn line for good
                os.ftruncate(fd, data.rfind(b"\n") + 1)
        return cls(path, first["meta"], fd, parts, ref)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Forget the upload: remove the journal (its key with it)."""
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    # ---- what the transfer calls
    def opened(self, ref: str) -> None:
        """The store started the upload ``ref``: recorded, so a later run finds that one."""
        with self._lock:
            if ref != self.ref:
                self._append({"ref": ref})
                self.ref = ref

    def admit(self, offset: int, size: int, sha256: bytes) -> None:
        """Allow a part to be sent (see module doc); returns only once that is safe."""
        digest = sha256.hex()
        with self._lock:
            known = self.parts.get(offset)
            if known is not None:
                if known != (size, digest):
                    raise ResumeMismatchError(
                        f"bytes {offset}..{offset + size} of the archive differ from what an earlier run may "
                        f"already have sent: nothing of them is sent")
                return
            if _overlaps(self.parts, self._offsets, offset, size):
                raise ResumeMismatchError(
                    f"bytes {offset}..{offset + size} of the archive cross parts an earlier run cut "
                    f"otherwise: they cannot be compared, so they are not sent")
            self._append({"part": [offset, size, digest]})
            self.parts[offset] = (size, digest)
            bisect.insort(self._offsets, offset)

    def covers(self, offset: int, size: int) -> bool:
        """Whether the journal records a part at exactly this range."""
        return self.parts.get(offset, (None,))[0] == size

    @property
    def recorded_bytes(self) -> int:
        return sum(size for size, _ in self.parts.values())

    def _append(self, record: dict) -> None:
        line = _line(record)
        if len(line) > MAX_LINE * 2 + 200:
            raise ValueError("journal record too large")
        write_all(self._fd, line)
        os.fsync(self._fd)


def _overlaps(parts: dict, offsets: list, offset: int, size: int) -> bool:
    """Whether [offset, offset + size) meets a recorded part that does not start at ``offset``
    (``offsets``: the recorded starts, sorted)."""
    i = bisect.bisect_left(offsets, offset)
    before = offsets[i - 1] if i > 0 else None
    after = offsets[i] if i < len(offsets) and offsets[i] != offset else \
        (offsets[i + 1] if i + 1 < len(offsets) else None)
    return (before is not None and before + parts[before][0] > offset) or \
        (after is not None and after < offset + size)
