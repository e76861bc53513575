"""ZFS access behind one small interface, so the rest of zfsglacier never spells a zfs command.

``ZfsCli`` drives the ``zfs`` command line; it works with OpenZFS and with zfs-fuse (the only
ZFS on the development machines, where pyzfs cannot run).  ``PyzfsBackend`` uses
``libzfs_core`` for the calls it has.  ``open_zfs()`` picks one.  Every failure raises
``ZfsError`` carrying zfs's own message on one line.

zfs-fuse quirks handled here (checked on zfs-fuse 0.7, pool v23):
  * ``zfs list -p`` and ``zfs get -t`` do not exist, and ``zfs list -o guid`` rounds the guid:
    exact values come from ``zfs get -H -p`` (``createtxg`` is there too, though unlisted).
  * destroying or renaming a mounted filesystem fails with "dataset is busy" (destroy unmounts
    it first, then fails); unmounting first works.
  * a failed command may print nothing (the daemon logs to syslog only, and there is no
    /dev/log): the message then says so instead of being empty.
  * reading files in a received dataset updates atime, which a later incremental receive sees as
    a change ("destination has been modified"): zg-restore then refuses rather than roll it back
    with ``-F`` (``changes_since`` says what changed; there is no ``written`` property).
  * after a receive into a mounted filesystem, files read before it keep showing their old
    contents (a cache) until the filesystem is unmounted and mounted again.  Not worked
    around here: real ZFS remounts by itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

from .plumbing.concurrency import Source
from .errors import DatasetNotFoundError, ZfsError, ZfsMissingError

_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_DATA_RECORDS = {"WRITE", "WRITE_BYREF", "WRITE_EMBEDDED", "SPILL"}
_BUSY_RETRIES = 4  # "dataset is busy" right after an unmount clears within a fraction of a second


@dataclass(frozen=True)
class Snapshot:
    """One snapshot: full name, exact guid, creation time (Unix seconds), creation txg.
    ``planned``: one that --dry-run would take first, so not on disk (no guid: None)."""

    name: str
    guid: int | None
    creation: int
    createtxg: int | None = None
    planned: bool = False

    @property
    def dataset(self) -> str:
        return self.name.split("@", 1)[0]

    @property
    def short(self) -> str:
        return self.name.split("@", 1)[1]


def one_line(stderr: str, what: str, code: int) -> str:
    """zfs's own message as one line (usage text dropped), or a hint when it printed nothing."""
    lines = []
    for line in stderr.splitlines():
        if line.strip().lower().startswith("usage:"):
            break
        if line.strip():
            lines.append(line.strip())
    if lines:
        return " ".join(lines)
    return (f"{what} failed with exit code {code} and no message "
            "(zfs-fuse logs some errors only to syslog)")


def _error(message: str) -> ZfsError | DatasetNotFoundError:
    """A missing dataset or snapshot is "not found" (exit 11); every other failure is zfs's."""
    return DatasetNotFoundError(message) if "does not exist" in message else ZfsError(message)


def find_command(name: str) -> str:
    """Path of a ZFS command, looking in the sbin directories too (absent from some PATHs)."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))
    if path is None:
        raise ZfsMissingError(f"'{name}' command not found: install ZFS (zfs-fuse or OpenZFS)")
    return path


class ZfsProcess(subprocess.Popen):
    """A running ``zfs send`` or ``zfs receive``; ``check()`` waits and raises ZfsError on failure.

    stderr goes to a temporary file, not a pipe, so a chatty zfs can never block on it while the
    caller streams stdout/stdin.
    """

    def __init__(self, argv, **kwargs):
        self._errors = tempfile.TemporaryFile()
        self.what = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv[:2]))
        try:
            super().__init__(argv, stderr=self._errors, **kwargs)
        except OSError as err:
            self._errors.close()
            raise ZfsError(f"cannot run {argv[0]}: {err}") from None

    def check(self) -> None:
        """Close our pipe ends (EOF for receive, EPIPE for an abandoned send), wait, raise on error."""
        for pipe in (self.stdin, self.stdout):
            if pipe is not None and not pipe.closed:
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass
        code = self.wait()
        self._errors.seek(0)
        message = self._errors.read().decode("utf-8", "replace")
        self._errors.close()
        if code != 0:
            raise _error(one_line(message, self.what, code))


class ZfsCli:
    """ZFS through the ``zfs`` command line (OpenZFS or zfs-fuse)."""

    def __init__(self, zfs: str | None = None):
        self._zfs = zfs

    @property
    def zfs(self) -> str:
        if self._zfs is None:
            self._zfs = find_command("zfs")
        return self._zfs

    def _run(self, *args: str) -> str:
        try:
            done = subprocess.run([self.zfs, *args], capture_output=True, text=True, errors="replace")
        except OSError as err:
            raise ZfsError(f"cannot run {self.zfs}: {err}") from None
        if done.returncode != 0:
            raise _error(one_line(done.stderr, f"zfs {args[0]}", done.returncode))
        return done.stdout

    def _lines(self, *args: str) -> list[str]:
        return [line for line in self._run(*args).splitlines() if line]

    # --- queries

    def get(self, name: str, *props: str) -> dict[str, str]:
        """Exact (parsable) values of properties of one dataset or snapshot."""
        out = self._lines("get", "-H", "-p", "-o", "property,value", ",".join(props), name)
        return dict(line.split("\t", 1) for line in out)

    def exists(self, name: str) -> bool:
        try:
            self._run("list", "-H", "-o", "name", name)
        except DatasetNotFoundError:
            return False
        return True

    def snapshots(self, dataset: str) -> list[Snapshot]:
        """Snapshots of ``dataset`` itself (not its children), oldest first (by creation txg)."""
        out = self._lines("get", "-H", "-p", "-r", "-d", "1", "-o", "name,property,value",
                          "guid,creation,createtxg", dataset)
        props: dict[str, dict[str, str]] = {}
        for line in out:
            name, prop, value = line.split("\t", 2)
            if name.startswith(dataset + "@"):
                props.setdefault(name, {})[prop] = value
        snaps = [_snapshot(name, p) for name, p in props.items()]
        return sorted(snaps, key=lambda s: (s.createtxg or 0, s.creation))

    def changes_since(self, dataset: str, snap: Snapshot) -> str | None:
        """What changed in ``dataset`` since its snapshot ``snap`` (which must be its newest), as
        a phrase, or None when nothing did.

        OpenZFS answers with the ``written`` property.  zfs-fuse has no ``written``: there the
        proof is an incremental stream from ``snap`` to a throw-away snapshot, which is exactly
        DRR_BEGIN + DRR_END when nothing changed (checked here: any change, even an access time
        set by reading a file, adds OBJECT records; new data adds WRITE records)."""
        try:
            written = int(self.get(dataset, "written")["written"])
        except (ZfsError, KeyError, ValueError):
            return self._changes_by_send(dataset, snap)
        return None if written == 0 else f"{written} bytes written since @{snap.short}"

    def _changes_by_send(self, dataset: str, snap: Snapshot) -> str | None:
        from .format.zfsstream import iter_records  # noqa: PLC0415 (only for ZFS without `written`)
        probe = f"{dataset}@zfsglacier-probe-{os.getpid()}-{time.monotonic_ns()}"
        self._run("snapshot", probe)
        kinds: set[str] = set()
        try:
            send = self.send(probe, from_snap=snap.name)
            for rec, _ in iter_records(send.stdout):
                kinds.add(rec.type)
                if rec.type in _DATA_RECORDS:
                    break  # enough to know; the rest of the stream could be large
            if kinds & _DATA_RECORDS:
                send.kill()
                try:
                    send.check()
                except ZfsError:
                    pass  # killed on purpose
            else:
                send.check()
        finally:
            self._retry_busy("destroy", probe)
        kinds -= {"BEGIN", "END"}
        if not kinds:
            return None
        if kinds & _DATA_RECORDS:
            return f"files were written since @{snap.short}"
        return f"file attributes changed since @{snap.short} (perhaps only access times, from reading files)"

    def list_datasets(self, root: str, recursive: bool = True) -> list[str]:
        """Filesystems and volumes: ``root`` and (if recursive) everything under it, parents first."""
        return self._lines("list", "-H", "-o", "name", "-t", "filesystem,volume",
                           *(["-r"] if recursive else []), root)

    def mountpoint(self, name: str) -> str | None:
        """Where a filesystem is mounted now, or None when it is not mounted."""
        p = self.get(name, "mounted", "mountpoint")
        return p["mountpoint"] if p.get("mounted") == "yes" else None

    # --- changes

    def snapshot(self, name: str, recursive: bool = False) -> Snapshot:
        """Take a snapshot and read it back (so a silent failure cannot pass unnoticed)."""
        self._run("snapshot", *(["-r"] if recursive else []), name)
        return _snapshot(name, self.get(name, "guid", "creation", "createtxg"))

    def hold(self, tag: str, snap: str, recursive: bool = False, exist_ok: bool = False) -> None:
        try:
            self._run("hold", *(["-r"] if recursive else []), tag, snap)
        except ZfsError as err:
            if not (exist_ok and "tag already exists" in str(err)):
                raise

    def release(self, tag: str, snap: str, recursive: bool = False, missing_ok: bool = False) -> None:
        try:
            self._run("release", *(["-r"] if recursive else []), tag, snap)
        except ZfsError as err:
            if not (missing_ok and "no such tag" in str(err)):
                raise

    def userrefs_all(self, dataset: str) -> dict[str, int]:
        """Snapshot name -> number of user holds, for every snapshot of ``dataset`` (one call)."""
        out = self._lines("get", "-H", "-p", "-r", "-d", "1", "-o", "name,value", "userrefs", dataset)
        pairs = (line.split("\t", 1) for line in out)
        return {name: int(v) for name, v in pairs if name.startswith(dataset + "@") and v.isdigit()}

    def holds(self, snap: str) -> list[str] | None:
        """The tags holding ``snap`` (`zfs holds`), or None where that command does not exist
        (zfs-fuse: only the count, ``userrefs``, is known)."""
        try:
            out = self._lines("holds", "-H", snap)
        except ZfsError:
            return None
        return [line.split("\t")[1] for line in out if line.count("\t") >= 2]

    def mount(self, name: str) -> None:
        self._run("mount", name)

    def unmount(self, name: str) -> None:
        self._run("umount", name)

    def _unmount_tree(self, name: str, recursive: bool = True) -> list[str]:
        """Unmount ``name`` (and its descendants), deepest first; return what was mounted."""
        out = self._lines("list", "-H", "-o", "name,mounted", "-t", "filesystem",
                          *(["-r"] if recursive else []), name)
        mounted = [ds for ds, state in (line.split("\t") for line in out) if state == "yes"]
        for ds in reversed(mounted):
            self.unmount(ds)
        return mounted

    def _retry_busy(self, *args: str) -> None:
        for attempt in range(_BUSY_RETRIES):
            try:
                self._run(*args)
                return
            except ZfsError as err:
                if "busy" not in str(err) or attempt == _BUSY_RETRIES - 1:
                    raise
            time.sleep(0.1 * (attempt + 1))

    def rename(self, old: str, new: str) -> None:
        """Rename a dataset or snapshot; a mounted filesystem is unmounted around it (zfs-fuse)."""
        if "@" in old:
            self._run("rename", old, new)
            return
        mounted = self._unmount_tree(old)
        self._retry_busy("rename", old, new)
        for ds in mounted:
            self.mount(new + ds[len(old):])

    # --- streams

    def send(self, snap: str, from_snap: str | None = None, intermediates: bool = False,
             replicate: bool = False, props: bool = False) -> ZfsProcess:
        """Start ``zfs send``; read ``.stdout`` to EOF, then call ``.check()``.

        ``from_snap`` makes it incremental (-i, or -I with ``intermediates``); ``replicate`` is
        -R and ``props`` is -p (both give compound streams).
        """
        args = [self.zfs, "send"]
        if replicate:
            args.append("-R")
        if props:
            args.append("-p")
        if from_snap is not None:
            args += ["-I" if intermediates else "-i", from_snap]
        elif intermediates:
            raise ZfsError("send: intermediates (-I) needs a from_snap")
        return ZfsProcess([*args, snap], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)

    def receive(self, target: str, *, force: bool = False, mount: bool = True) -> ZfsProcess:
        """Start ``zfs receive`` into ``target``; write the stream to ``.stdin``, then ``.check()``.

        ``force`` is -F (roll back changes made since the last snapshot, e.g. atime updates);
        ``mount=False`` is -u.
        """
        args = [self.zfs, "receive", *(["-F"] if force else []), *([] if mount else ["-u"]), target]
        return ZfsProcess(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)


def _snapshot(name: str, props: dict[str, str]) -> Snapshot:
    txg = props.get("createtxg", "-")
    return Snapshot(name, int(props["guid"]), int(props["creation"]),
                    int(txg) if txg.isdigit() else None)


class _ThreadPipe:
    """A libzfs_core send/receive running in a thread, with the same .stdout/.stdin/.check()."""

    def __init__(self, work, mode: str, what: str):
        rfd, wfd = os.pipe()
        ours, theirs = (rfd, wfd) if mode == "rb" else (wfd, rfd)
        self.stdout = os.fdopen(ours, "rb") if mode == "rb" else None
        self.stdin = os.fdopen(ours, "wb") if mode == "wb" else None
        self.what = what

        def run(emit):  # emits nothing: its error is what check() reports, in the caller's thread
            try:
                work(theirs)
            finally:
                os.close(theirs)

        self._source = Source(run, name=what)

    def check(self) -> None:
        for pipe in (self.stdin, self.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        try:
            self._source.join()
        except Exception as err:
            raise ZfsError(f"{self.what}: {err}") from None


class PyzfsBackend(ZfsCli):
    """libzfs_core (pyzfs) for snapshot, hold, release, plain send and receive; the CLI for the rest.

    Untested: pyzfs needs /dev/zfs and libzfs_core, which the development machines (zfs-fuse)
    do not have.  Kept deliberately thin: each method is one libzfs_core call; compound streams
    (intermediates/replicate/props) and everything else fall back to the zfs command line.
    """

    def __init__(self, lzc, zfs: str | None = None):
        super().__init__(zfs)
        self.lzc = lzc

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # pyzfs raises its own ZFSError family
            raise ZfsError(f"{what}: {err}") from None

    def snapshot(self, name: str, recursive: bool = False) -> Snapshot:
        if recursive:
            return super().snapshot(name, recursive)
        self._call(f"cannot snapshot {name}", self.lzc.lzc_snapshot, [name.encode()])
        return _snapshot(name, self.get(name, "guid", "creation", "createtxg"))

    def hold(self, tag: str, snap: str, recursive: bool = False, exist_ok: bool = False) -> None:
        if recursive or exist_ok:  # the CLI's messages tell "already held" apart
            return super().hold(tag, snap, recursive, exist_ok)
        self._call(f"cannot hold {snap}", self.lzc.lzc_hold, {snap.encode(): tag.encode()})

    def release(self, tag: str, snap: str, recursive: bool = False, missing_ok: bool = False) -> None:
        if recursive or missing_ok:
            return super().release(tag, snap, recursive, missing_ok)
        self._call(f"cannot release {snap}", self.lzc.lzc_release, {snap.encode(): [tag.encode()]})

    def send(self, snap, from_snap=None, intermediates=False, replicate=False, props=False):
        if intermediates or replicate or props:
            return super().send(snap, from_snap, intermediates, replicate, props)
        if from_snap is not None and from_snap.startswith("@"):
            from_snap = snap.split("@", 1)[0] + from_snap
        source = from_snap.encode() if from_snap else None
        return _ThreadPipe(lambda fd: self.lzc.lzc_send(snap.encode(), source, fd), "rb",
                           f"cannot send {snap}")

    def receive(self, target, *, force=False, mount=True):
        def work(fd):  # lzc needs the new snapshot's name: it is in the stream's DRR_BEGIN
            header, record = self.lzc.receive_header(fd)
            snapname = header["drr_toname"].split(b"@", 1)[1]
            self.lzc.lzc_receive_with_header(target.encode() + b"@" + snapname, fd, record,
                                             force=force)
            if mount and self.mountpoint(target) is None:  # lzc never mounts
                self.mount(target)

        return _ThreadPipe(work, "wb", f"cannot receive into {target}")


def open_zfs() -> ZfsCli:
    """pyzfs when ``libzfs_core`` imports and /dev/zfs exists, else the zfs command line."""
    try:
        import libzfs_core  # noqa: PLC0415 (optional dependency, absent with zfs-fuse)
    except ImportError:
        return ZfsCli()
    if not os.path.exists("/dev/zfs"):
        return ZfsCli()
    return PyzfsBackend(libzfs_core)
