"""One run at a time per dataset and destination: `flock` on a file beside the catalog.

Two zg-backup runs of one dataset to one destination (a cron job that overlaps the previous
night's long full, a person running it by hand meanwhile) would both upload, and DEEP_ARCHIVE
bills the duplicate for 180 days.  So a run takes the lock of every (destination, dataset) it
will back up before it takes a snapshot or plans anything, and keeps it until it has recorded
the archive.  ``flock`` locks die with their process (kill -9 included), so a stale lock file
never blocks anybody; the file's content only says who holds it.
"""

import hashlib
import os
import time

import fcntl

from ..errors import CatalogError, LockedError

POLL = 0.5  # seconds between tries while waiting for a lock


class Locks:
    """Exclusive locks on (what, name) pairs, under ``directory``; release() or use as a context."""

    def __init__(self, directory, *, wait=0.0, say=lambda s: None):
        self.directory, self.wait, self.say = directory, wait, say
        self._held = []

    def _path(self, what, name):
        digest = hashlib.sha256(f"{what}\0{name}".encode()).hexdigest()[:24]
        return os.path.join(self.directory, f"{digest}.lock")

    def take(self, what, name, doing, *, shared=False):
        """Lock (what, name), e.g. (destination URL, dataset); ``doing`` says who holds it.
        ``shared``: many may hold it at once, but not while someone holds it exclusively."""
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(self._path(what, name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as err:
            raise CatalogError(f"cannot make a lock in {self.directory}: {err.strerror}") from None
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another run"
                    os.close(fd)
                    raise LockedError(f"{name} at {what} is locked by {holder}: wait for it to finish"
                                      f"{'' if self.wait else ', or pass --lock-wait SECONDS'}") from None
                self.say(f"waiting for the lock on {name} at {what}")
                time.sleep(POLL)
        if not shared:  # sharers would overwrite each other's note
            os.ftruncate(fd, 0)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            os.pwrite(fd, f"pid {os.getpid()} ({doing}, since {stamp})\n".encode(), 0)
        self._held.append(fd)

    def release(self):
        while self._held:
            os.close(self._held.pop())  # closing drops the flock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


UPLOADS = "uploads in progress"  # the name every upload to a destination shares; zg-rm --incomplete takes it alone


def lock_directory(catalog_path):
    """Locks live beside the catalog: every run that shares a catalog shares its locks."""
    return os.path.join(os.path.dirname(os.path.abspath(catalog_path)), "locks")
