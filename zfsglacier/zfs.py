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

from .format.zfsstream import RAW
from .plumbing.concurrency import Source
from .plumbing.pipes import widen_pipe
from .errors import DatasetNotFoundError, ZfsError, ZfsMissingError, ZgError

_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_DATA_RECORDS = {"WRITE", "WRITE_BYREF", "WRITE_EMBEDDED", "SPILL"}
_BUSY_RETRIES = 4  # "dataset is busy" right after an unmount clears within a fraction of a second


@dataclass(frozen=True)
class Snapshot:
    """One snapshot: full name, exact guid, creation time (Unix seconds), creation txg.
    ``planned``: one that --dry-run would take first, so not on disk (no guid: None).
    ``bookmark``: the snapshot itself is gone, but this bookmark (``pool/ds#name``) of it is
    here: enough to be the source of an incremental send (a bookmark keeps its snapshot's guid
    and txg), not to be sent itself."""

    name: str
    guid: int | None
    creation: int
    createtxg: int | None = None
    planned: bool = False
    bookmark: str | None = None

    @property
    def dataset(self) -> str:
        return self.name.split("@", 1)[0]

    @property
    def short(self) -> str:
        return self.name.split("@", 1)[1]

    @property
    def source(self) -> str:
        """What `zfs send -i` names to start from this snapshot: itself, or its bookmark."""
        return self.bookmark or self.name


@dataclass(frozen=True)
class Bookmark:
    """One bookmark (``pool/ds#name``) with its snapshot's guid, creation time and txg."""

    name: str
    guid: int
    creation: int
    createtxg: int | None = None


@dataclass(frozen=True)
class SendFlags:
    """zfs send options beyond the source: -w (raw: blocks as stored, encrypted with the dataset's
    ZFS key), -L (records over 128 KiB stay whole), -e (WRITE_EMBEDDED records), -c (blocks
    compressed as on disk), -p (properties: the stream becomes a compound one), -R (replication:
    the dataset, every dataset under it, their properties and snapshots, as one compound stream).
    Only -p and -R exist on zfs-fuse."""

    raw: bool = False
    large_blocks: bool = False
    embedded: bool = False
    compressed: bool = False
    props: bool = False  # -p: the dataset's properties too (a compound stream)
    replicate: bool = False  # -R: the tree under the dataset (a compound stream)

    def cli(self) -> list[str]:
        return [f for f, on in (("-w", self.raw), ("-L", self.large_blocks), ("-e", self.embedded),
                                ("-c", self.compressed), ("-p", self.props), ("-R", self.replicate)) if on]

    @property
    def compound(self) -> bool:
        """-p and -R streams start with an outer DRR_BEGIN that names no guids."""
        return self.props or self.replicate

    def lzc(self) -> list[str]:
        return [f for f, on in (("raw", self.raw), ("large_blocks", self.large_blocks),
                                ("embedded_data", self.embedded), ("compress", self.compressed)) if on]

    def describe(self) -> str:
        return " ".join(self.cli()) or "none"


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
        # A 64 KiB pipe between zfs send and zg-backup made them take turns: 2.6-2.7 s for a 277 MB
        # stream to file:// against 2.1 s for `zfs send | zg-encrypt > file`, whose stdin zg-encrypt
        # widens (2026-12-03, zfs-fuse).
        for pipe in (self.stdin, self.stdout):
            if pipe is not None:
                widen_pipe(pipe)

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
        self._pools: dict[str, dict[str, str]] = {}  # _pool_props, once per pool per process

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

        OpenZFS answers with the ``written`` property, once `zpool sync` has made the open txg
        count (found in the OpenZFS tier: a file written a second before read as no change, and
        the receive then failed on zfs's own check instead of this clear refusal).  zfs-fuse has
        no ``written``: there the
        proof is an incremental stream from ``snap`` to a throw-away snapshot, which is exactly
        DRR_BEGIN + DRR_END when nothing changed (checked here: any change, even an access time
        set by reading a file, adds OBJECT records; new data adds WRITE records)."""
        try:
            self.get(dataset, "written")
        except (ZfsError, KeyError, ValueError):
            return self._changes_by_send(dataset, snap)
        self.sync(dataset.split("/", 1)[0])  # `written` counts synced txgs only: a change of a second ago too
        written = int(self.get(dataset, "written")["written"])
        return None if written == 0 else f"{written} bytes written since @{snap.short}"

    def sync(self, pool: str) -> None:
        """`zpool sync POOL` (OpenZFS): what is written so far reaches disk and the properties."""
        try:
            subprocess.run([find_command("zpool"), "sync", pool], capture_output=True, check=True)
        except (OSError, subprocess.CalledProcessError) as err:
            raise ZfsError(f"zpool sync {pool} failed: {err}") from None

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

    def bookmarks(self, dataset: str) -> list[Bookmark]:
        """Bookmarks of ``dataset`` itself, oldest first; [] where ZFS has none (zfs-fuse)."""
        try:
            out = self._lines("get", "-H", "-p", "-r", "-d", "1", "-t", "bookmark", "-o", "name,property,value",
                              "guid,creation,createtxg", dataset)
        except DatasetNotFoundError:
            raise
        except ZfsError:
            return []  # zfs-fuse: no `-t bookmark`
        props: dict[str, dict[str, str]] = {}
        for line in out:
            name, prop, value = line.split("\t", 2)
            if name.startswith(dataset + "#"):
                props.setdefault(name, {})[prop] = value
        marks = [Bookmark(name, int(p["guid"]), int(p["creation"]),
                          int(p["createtxg"]) if p.get("createtxg", "-").isdigit() else None)
                 for name, p in props.items()]
        return sorted(marks, key=lambda b: (b.createtxg or 0, b.creation))

    def bookmark(self, snap: str, bookmark: str) -> None:
        """``zfs bookmark snap pool/ds#name``; an existing bookmark of the same snapshot is fine."""
        try:
            self._run("bookmark", snap, bookmark)
        except ZfsError as err:
            if "exists" not in str(err):
                raise
            mine = {b.name: b.guid for b in self.bookmarks(bookmark.split("#", 1)[0])}
            if mine.get(bookmark) != int(self.get(snap, "guid")["guid"]):
                raise

    def destroy_bookmark(self, bookmark: str) -> None:
        if "#" not in bookmark:  # never a dataset or snapshot by mistake
            raise ZfsError(f"{bookmark} is not a bookmark")
        self._run("destroy", bookmark)

    def _pool_props(self, pool: str) -> dict[str, str]:
        """`zpool get all POOL` as property -> value (columns, no -H: zfs-fuse's zpool has none).
        Asked once per pool by this object: one zg-* command asks for the features and the version
        several times (zg-backup once for each dataset's flags and bookmarks), and what it reads
        (which features are enabled, the version) does not change while a command runs."""
        if pool in self._pools:
            return self._pools[pool]
        zpool = find_command("zpool")
        try:
            done = subprocess.run([zpool, "get", "all", pool], capture_output=True, text=True, errors="replace")
        except OSError as err:
            raise ZfsError(f"cannot run {zpool}: {err}") from None
        if done.returncode != 0:
            raise _error(one_line(done.stderr, "zpool get", done.returncode))
        props = {}
        for line in done.stdout.splitlines()[1:]:
            cols = line.split(None, 3)
            if len(cols) >= 3 and cols[0] == pool:
                props[cols[1]] = cols[2]
        self._pools[pool] = props
        return props

    def pool_features(self, pool: str) -> dict[str, str] | None:
        """Feature flag -> enabled|active|disabled for ``pool``; None for a pool without feature
        flags (a numbered version, as zfs-fuse's v23), where none of them exist."""
        features = {k[len("feature@"):]: v for k, v in self._pool_props(pool).items() if k.startswith("feature@")}
        return features or None

    def pool_version(self, pool: str) -> int | None:
        """The pool's numbered version (zfs-fuse: 23), or None for a feature-flags pool ("-")."""
        value = self._pool_props(pool).get("version", "-")
        return int(value) if value.isdigit() else None

    def encryption(self, dataset: str) -> dict[str, str] | None:
        """``encryption``, ``encryptionroot``, ``keystatus``, ``keylocation``, ``keyformat`` of an
        encrypted dataset; None when it is not encrypted, or ZFS has no native encryption."""
        try:
            p = self.get(dataset, "encryption", "encryptionroot", "keystatus", "keylocation", "keyformat")
        except DatasetNotFoundError:
            raise
        except ZfsError:
            return None  # zfs-fuse: no such properties
        if p.get("encryption", "off") in ("off", "-", ""):
            return None
        return p

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

    def destroy_drilled(self, name: str, guid: int) -> None:
        """Destroy ``name``, a scratch dataset a restore drill received in this very run (it holds
        the snapshot ``guid`` it received, checked first): the only dataset zfsglacier ever
        destroys, and only one it made."""
        if guid not in {s.guid for s in self.snapshots(name)}:
            raise ZfsError(f"{name} does not hold the snapshot the drill received (guid {guid}): left as it is")
        self._unmount_tree(name)
        self._retry_busy("destroy", "-r", name)

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
             flags: SendFlags = SendFlags()) -> ZfsProcess:
        """Start ``zfs send``; read ``.stdout`` to EOF, then call ``.check()``.

        ``from_snap`` (a snapshot, or a bookmark ``pool/ds#name``) makes it incremental (-i, or -I
        with ``intermediates``, which a bookmark cannot be); ``flags`` adds -w/-L/-e/-c/-p/-R.
        """
        if intermediates and from_snap is not None and "#" in from_snap:
            raise ZfsError("send: -I cannot start from a bookmark (zfs send allows only -i there)")
        if flags.replicate and from_snap is not None and "#" in from_snap:
            raise ZfsError("send: -R cannot start from a bookmark (every dataset of the tree needs the snapshot)")
        args = [self.zfs, "send", *flags.cli()]
        if from_snap is not None:
            args += ["-I" if intermediates else "-i", from_snap]
        elif intermediates:
            raise ZfsError("send: intermediates (-I) needs a from_snap")
        return ZfsProcess([*args, snap], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)

    def send_size(self, snap: str, from_snap: str | None = None, flags: SendFlags = SendFlags()) -> int | None:
        """Bytes ``zfs send`` of these arguments would write, as ZFS estimates them (`zfs send -nP`:
        OpenZFS; from a bookmark too, where the ``written`` property cannot say); None where ZFS
        cannot estimate (zfs-fuse has no -P)."""
        args = ["send", "-n", "-P", *flags.cli(), *(["-i", from_snap] if from_snap else []), snap]
        try:
            lines = self._lines(*args)
        except ZgError:
            return None
        sizes = [line.split()[1] for line in lines if line.startswith("size") and len(line.split()) == 2]
        return int(sizes[-1]) if sizes and sizes[-1].isdigit() else None

    def can_exclude_props(self) -> bool:
        """Whether `zfs receive -x PROP` exists (OpenZFS 0.7+; not zfs-fuse): asked of zfs itself,
        with a dry run (-n) of an empty stream, which fails either way, for its words."""
        try:
            done = subprocess.run([self.zfs, "receive", "-n", "-x", "mountpoint", "zfsglacier-probe/x"],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
        except OSError as err:
            raise ZfsError(f"cannot run {self.zfs}: {err}") from None
        return "invalid option" not in done.stderr

    def receive(self, target: str, *, force: bool = False, mount: bool = True, compound: bool = False,
                exclude: tuple = ()) -> ZfsProcess:
        """Start ``zfs receive`` into ``target``; write the stream to ``.stdin``, then ``.check()``.

        ``force`` is -F (roll back changes made since the last snapshot, e.g. atime updates);
        ``mount=False`` is -u; ``compound``: the stream is a `zfs send -I`/-R/-p one (the CLI reads
        any stream; pyzfs needs to know); ``exclude``: properties the stream carries that the
        target must not take (-x).
        """
        args = [self.zfs, "receive", *(["-F"] if force else []), *([] if mount else ["-u"]),
                *[a for prop in exclude for a in ("-x", prop)], target]
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
        widen_pipe(self.stdout or self.stdin)
        self.what = what

        def run(emit):  # emits nothing: its error is what check() reports, in the caller's thread
            try:
                work(theirs)
            finally:
                os.close(theirs)

        self._source = Source(run, name=what)

    def kill(self) -> None:
        """Stop early, as Popen.kill stops a `zfs send`: our end closes, so the libzfs_core call
        gets EPIPE and returns (its error is check()'s to report or drop)."""
        for pipe in (self.stdin, self.stdout):
            if pipe is not None and not pipe.closed:
                try:
                    pipe.close()
                except OSError:
                    pass

    def check(self) -> None:
        for pipe in (self.stdin, self.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        try:
            self._source.join()
        except Exception as err:
            raise ZfsError(f"{self.what}: {err}") from None


def _pyzfs_words(err: Exception) -> str:
    """A pyzfs exception in the CLI's words where the callers look for them ("already exists",
    "does not exist"), else its class and message."""
    name = type(err).__name__
    if name in ("SnapshotExists", "BookmarkExists", "FilesystemExists", "DatasetExists"):
        return f"dataset already exists ({err})"
    if name in ("SnapshotNotFound", "FilesystemNotFound", "DatasetNotFound", "BookmarkNotFound", "PoolNotFound"):
        return f"dataset does not exist ({err})"
    return f"{name}: {err}" if name not in str(err) else str(err)


class PyzfsBackend(ZfsCli):
    """libzfs_core (pyzfs) for snapshot, hold, release, bookmark, bookmark listing (with guids),
    plain send (raw, from a bookmark, with -L/-e/-c) and receive (raw too); the CLI for the rest.

    Where pyzfs lacks something and the zfs command line is used (run in the OpenZFS guest tier,
    tests/openzfs/, against OpenZFS 2.3.2's python3-pyzfs):
      * listing snapshots and reading properties (guid, creation, createtxg, written, userrefs):
        libzfs_core has no call that lists datasets or reads their properties;
      * recursive snapshots, holds and releases, and "already held"/"no such tag" tolerance
        (the CLI's messages tell those apart; lzc's errors for them differ per version);
      * compound streams (-I, -R, -p): lzc_send sends one snapshot;
      * mount, unmount, rename, destroy: not in libzfs_core (lzc never mounts, so receive mounts
        with the CLI afterwards).
    Each method here is one libzfs_core call.
    """

    def __init__(self, lzc, zfs: str | None = None):
        super().__init__(zfs)
        self.lzc = lzc

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # pyzfs raises its own ZFSError family
            # a MultipleOperationsFailure ("Creation of snapshot(s) failed for one or more reasons")
            # says why only in .errors: SnapshotExists, ... (found in the OpenZFS tier, where two
            # zg-backup --snapshot auto of the same second must tell "exists" from other failures)
            inner = [e for e in getattr(err, "errors", None) or [] if isinstance(e, Exception)]
            why = "; ".join(_pyzfs_words(e) for e in inner) if inner else _pyzfs_words(err)
            raise _error(f"{what}: {why}") from None

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

    def bookmark(self, snap: str, bookmark: str) -> None:
        if any(b.name == bookmark for b in self.bookmarks(bookmark.split("#", 1)[0])):
            return super().bookmark(snap, bookmark)  # same-snapshot check
        self._call(f"cannot bookmark {snap}", self.lzc.lzc_bookmark, {bookmark.encode(): snap.encode()})

    def bookmarks(self, dataset: str) -> list[Bookmark]:
        got = self._call(f"cannot list bookmarks of {dataset}", self.lzc.lzc_get_bookmarks, dataset.encode(),
                         [b"guid", b"createtxg", b"creation"])

        def text(v):
            return v.decode() if isinstance(v, bytes) else v

        marks = []
        for name, props in got.items():  # {b"m": {b"guid": {b"value": N}, ...}}
            p = {text(k): v.get(b"value", v.get("value")) if isinstance(v, dict) else v for k, v in props.items()}
            marks.append(Bookmark(f"{dataset}#{text(name).split('#')[-1]}", int(p["guid"]), int(p["creation"]),
                                  int(p["createtxg"])))
        return sorted(marks, key=lambda b: (b.createtxg or 0, b.creation))

    def send(self, snap, from_snap=None, intermediates=False, flags=SendFlags()):
        if intermediates or flags.compound:  # lzc_send makes one snapshot's stream
            return super().send(snap, from_snap, intermediates, flags)
        if from_snap is not None and from_snap[0] in "@#":
            from_snap = snap.split("@", 1)[0] + from_snap
        source = from_snap.encode() if from_snap else None
        options = flags.lzc()
        return _ThreadPipe(lambda fd: self.lzc.lzc_send(snap.encode(), source, fd, flags=options), "rb",
                           f"cannot send {snap}")

    def receive(self, target, *, force=False, mount=True, compound=False, exclude=()):
        if compound or exclude:  # lzc_receive takes one snapshot's stream; `zfs receive` unpacks compound ones
            return super().receive(target, force=force, mount=mount, compound=compound, exclude=exclude)

        def work(fd):  # lzc needs the new snapshot's name: it is in the stream's DRR_BEGIN
            header, record = self.lzc.receive_header(fd)
            snapname = header["drr_toname"].split(b"@", 1)[1]
            raw = bool((header["drr_versioninfo"] >> 2) & RAW)  # lzc must be told; the CLI reads the stream
            self.lzc.lzc_receive_with_header(target.encode() + b"@" + snapname, fd, record,
                                             force=force, raw=raw)
            if mount and self.mountpoint(target) is None:  # lzc never mounts
                self.mount(target)

        return _ThreadPipe(work, "wb", f"cannot receive into {target}")


BACKENDS = ("auto", "cli", "pyzfs")


def open_zfs(choice: str | None = None) -> ZfsCli:
    """pyzfs when ``libzfs_core`` imports and /dev/zfs exists, else the zfs command line.
    ``choice`` (default ``$ZG_ZFS``): ``cli`` or ``pyzfs`` forces one; a forced pyzfs that cannot
    load is an error, not a silent fallback."""
    choice = choice or os.environ.get("ZG_ZFS") or "auto"
    if choice not in BACKENDS:
        raise ZfsError(f"ZG_ZFS={choice}: expected one of {', '.join(BACKENDS)}")
    if choice == "cli":
        return ZfsCli()
    try:
        import libzfs_core  # noqa: PLC0415 (optional dependency, absent with zfs-fuse)
    except ImportError as err:
        if choice == "pyzfs":
            raise ZfsMissingError(f"ZG_ZFS=pyzfs, but libzfs_core does not import ({err}): install python3-pyzfs")
        return ZfsCli()
    if not os.path.exists("/dev/zfs"):
        if choice == "pyzfs":
            raise ZfsMissingError("ZG_ZFS=pyzfs, but there is no /dev/zfs (no kernel ZFS here)")
        return ZfsCli()
    return PyzfsBackend(libzfs_core)
