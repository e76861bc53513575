"""Resumable backups: a zg-backup killed, stopped or cut off from its store part way through an
archive continues it on the next run, sending only what the store does not hold (SPEC section 11).

``zfs send`` of one snapshot with the same flags gives the same bytes (checked on zfs-fuse and on
OpenZFS 2.3, tests/test_resume_zfs.py and tests/openzfs), and so does block compression at a fixed
level; so the same file key and header (kept in a journal beside the catalog, 0600) make the same
archive again.  Every part is held to the journal before it may leave (plumbing.journal): the
first part that differs from what an earlier run may have sent is refused unsent, and the archive
starts anew under a new key.  A journal belongs to one (destination, dataset), which the run's
lock already makes one writer's.
"""

import hashlib
import io
import os
import time

from ..errors import NotFoundError, ResumeMismatchError, StoreError, ZgError
from ..format.header import read_header
from ..format.keys import Passphrase, PublicRecipient, SecretKey
from ..plumbing.journal import Journal

DIRECTORY = "resume"


def journal_path(catalog_path, dest, dataset):
    """Where (dest, dataset)'s journal lives: beside the catalog, as its locks do."""
    name = hashlib.sha256(f"{dest}\0{dataset}".encode()).hexdigest()[:32]
    return os.path.join(os.path.dirname(os.path.abspath(catalog_path)), DIRECTORY, name + ".journal")


def _recipient(r):
    if isinstance(r, PublicRecipient):
        return r.encode()
    if isinstance(r, SecretKey):
        return "secret slot for " + r.recipient().encode()
    if isinstance(r, Passphrase):
        return "passphrase"
    return type(r).__name__


def settings(step, *, algorithm, level, intermediates, recipients, sign, chunk_size):
    """What must be the same for a run to continue another's archive: the snapshot and its base,
    the send and compression flags, the keys and the signer."""
    return {
        "target": step.target.name, "toguid": str(step.target.guid),
        "base": step.base.source if step.base is not None else None,
        "fromguid": str(step.base.guid) if step.base is not None else "0",
        "send": list(step.flags.cli()),
        # as run_step sends: -I only for an incremental from a snapshot (a full or a bookmark has none)
        "intermediates": bool(intermediates and step.base is not None and not step.base.bookmark),
        "compression": algorithm, "level": level, "chunk_size": chunk_size,
        "recipients": sorted(_recipient(r) for r in recipients),
        "signer": sign.signer().encode() if sign is not None else None,
    }


_WORDS = {
    "target": "the snapshot", "toguid": "the snapshot's guid (it was destroyed and taken again?)",
    "base": "the incremental's base", "fromguid": "the base's guid", "send": "the zfs send flags",
    "intermediates": "-I", "compression": "the compression", "level": "the compression level",
    "chunk_size": "the chunk size", "recipients": "the keys", "signer": "the signing key",
}


class Pending:
    """A journaled archive that a run may continue: its journal and what it recorded."""

    def __init__(self, journal):
        self.journal = journal
        meta = journal.meta
        self.dest, self.dataset, self.token = meta["dest"], meta["dataset"], meta["token"]
        self.settings, self.metadata = meta["settings"], meta["metadata"]
        self.file_key, self.header = bytes.fromhex(meta["file_key"]), bytes.fromhex(meta["header"])
        self.started = meta["started"]

    @property
    def snapshot(self):
        return self.settings["target"].partition("@")[2]

    def differs(self, now):
        """Why ``now`` (settings()) cannot continue this archive, or None when it can."""
        for key, words in _WORDS.items():
            if self.settings.get(key) != now.get(key):
                return f"{words} changed ({_show(self.settings.get(key))}, now {_show(now.get(key))})"
        return None

    def key_opens(self, recipients):
        """A secret key or passphrase given now must open the journaled header (a public key's
        slot cannot be checked without its secret; its encoding was compared)."""
        header = read_header(io.BytesIO(self.header))
        for r in recipients:
            if isinstance(r, (SecretKey, Passphrase)) and not any(
                    r.unwrap(t, b) == self.file_key for t, b in header.slots if not isinstance(b, bytes)):
                return False
        return True

    def describe(self):
        j = self.journal
        return dict(token=self.token, dataset=self.dataset, snapshot=self.settings["target"],
                    started=self.started, parts=len(j.parts), bytes=j.recorded_bytes, ref=j.ref)


def _show(value):
    if isinstance(value, list):
        return " ".join(value) if value else "none"
    return "none" if value is None else str(value)


def _pending(journal):
    try:
        return Pending(journal)
    except (KeyError, TypeError, ValueError, AttributeError):
        journal.close()
        raise ResumeMismatchError(f"resume journal {journal.path} lacks what a resume needs: refused") from None


def load(path, *, write=True):
    """The Pending archive journaled at ``path``, or None.  ResumeMismatchError for a damaged
    journal (the caller removes it and starts anew)."""
    if not os.path.exists(path):
        return None
    return _pending(Journal.load(path, write=write))


def peek(path):
    """The Pending archive at ``path`` read only (for a plan), or None, also when unreadable."""
    try:
        return load(path, write=False)
    except (ZgError, OSError):
        return None


def listed(catalog_path, dest):
    """Every readable journal of ``dest`` (for zg-ls), read-only."""
    where = os.path.join(os.path.dirname(os.path.abspath(catalog_path)), DIRECTORY)
    out = []
    try:
        names = sorted(os.listdir(where))
    except OSError:
        return out
    for name in names:
        if not name.endswith(".journal"):
            continue
        try:
            p = _pending(Journal.load(os.path.join(where, name), write=False))
        except (ZgError, OSError):
            continue
        if p.dest == dest:
            out.append(p)
    return out


def start(path, dest, dataset, token, now, prep, metadata):
    """Journal a new archive (its file key and header) before any byte of it is sent."""
    if os.path.exists(path):
        os.unlink(path)  # an earlier journal the caller decided not to continue
    return Journal.create(path, {
        "dest": dest, "dataset": dataset, "token": token, "started": time.time(), "settings": now,
        "file_key": prep.file_key.hex(), "header": prep.header.raw.hex(), "metadata": metadata})


def abandon(store, journal):
    """Give an archive up: free what the store holds of it (where the store still answers) and
    remove its journal.  Returns a warning when the store's part could not be freed."""
    warning = None
    if journal.ref is not None:
        try:
            store.discard_incomplete(journal.ref)
        except NotFoundError:
            pass  # freed already
        except ZgError as err:
            warning = f"the interrupted upload {journal.ref} could not be freed ({err}): `zg-rm --incomplete` does"
    journal.discard()
    return warning


def worth_keeping(err, journal):
    """Whether a run that failed with ``err`` leaves its archive for the next run to continue:
    when it was stopped (a signal, Ctrl-C) or lost its store, and something was sent already.
    A failed zfs send, a broken stream or a refused resume discard it, as before."""
    return isinstance(err, (KeyboardInterrupt, StoreError)) and not isinstance(err, ResumeMismatchError) \
        and bool(journal.parts)
