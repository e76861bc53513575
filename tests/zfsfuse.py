#!/usr/bin/env python3
"""Real ZFS for tests and the demo: start/stop a zfs-fuse daemon, make throwaway pools.

Why a helper: zfs-fuse fails silently (it logs only to syslog, and there is no /dev/log), a
stale pidfile stops it from starting, only one daemon can run per machine, and a pool may be
"busy" for a moment after an unmount.  This module deals with all of that in one place.

    python3 tests/zfsfuse.py start|stop|status
    python3 tests/zfsfuse.py create-pool NAME [--size 1G]   # file under $TMPDIR, mounted there
    python3 tests/zfsfuse.py destroy-pool NAME

``start`` reuses a daemon that already answers; ``stop`` stops only the daemon whose pid is in
our pidfile ($ZG_ZFS_FUSE_PIDFILE, default /var/run/zfsglacier-zfs-fuse.pid).  Pools are made
with cachefile=none, so a crashed run never leaves a pool that the next daemon re-imports.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:  # the CLI runs uninstalled, from anywhere
    sys.path.insert(0, _REPO)
from zfsglacier.errors import ZfsError  # noqa: E402
from zfsglacier.zfs import ZfsCli, find_command  # noqa: E402

PIDFILE = Path(os.environ.get("ZG_ZFS_FUSE_PIDFILE", "/var/run/zfsglacier-zfs-fuse.pid"))
START_TIMEOUT = 20.0  # seconds for `zpool list` to answer after the daemon forks
STOP_TIMEOUT = 30.0  # it takes about 5 s to exit after SIGTERM
BUSY_RETRIES = 40  # "pool is busy" right after unmounting: retry every 0.25 s


class HarnessError(RuntimeError):
    """zfs-fuse could not be started, used or stopped; the message says what to do."""


def _command(name: str) -> str:
    try:
        return find_command(name)
    except ZfsError as err:
        raise HarnessError(f"{err} (here: `apt-get install -y zfs-fuse`)") from None


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([_command(argv[0]), *argv[1:]], capture_output=True, text=True)
    if check and done.returncode != 0:
        msg = " ".join(done.stderr.split()) or f"exit code {done.returncode}, no message"
        raise HarnessError(f"`{' '.join(argv)}` failed: {msg}")
    return done


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _our_daemon(pidfile: Path = PIDFILE) -> int | None:
    """Pid of the zfs-fuse recorded in our pidfile, if that process is alive and is zfs-fuse."""
    try:
        pid = int(pidfile.read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == "zfs-fuse" and _alive(pid) else None


def daemon_answers() -> bool:
    """Whether some zfs-fuse daemon (ours or not) answers `zpool list` now."""
    return _run("zpool", "list", "-H", "-o", "name", check=False).returncode == 0


def status(pidfile: Path = PIDFILE) -> str:
    pid = _our_daemon(pidfile)
    if pid is not None:
        return f"running (pid {pid}, started by us)" + ("" if daemon_answers() else ", not answering")
    return "running (not started by us)" if daemon_answers() else "stopped"


def start(pidfile: Path = PIDFILE) -> bool:
    """Make sure a zfs-fuse daemon answers; return True if this call started it."""
    daemon = _command("zfs-fuse")
    _command("zpool")
    _command("zfs")
    if os.geteuid() != 0:
        raise HarnessError("zfs-fuse needs root")
    if not os.path.exists("/dev/fuse"):
        raise HarnessError("/dev/fuse is missing: zfs-fuse cannot run on this machine")
    if daemon_answers():
        return False
    if _our_daemon(pidfile) is None:
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()  # stale: zfs-fuse would exit 1 without a word
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([daemon, "--pidfile", str(pidfile), "--no-kstat-mount"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise HarnessError(
                f"zfs-fuse exited with code {done.returncode} at start (it logs only to syslog)"
                f"{': ' + done.stderr.strip() if done.stderr.strip() else ''}; is another zfs-fuse"
                " running in this mount namespace (lock /var/lock/zfs/zfs_lock)?")
    deadline = time.monotonic() + START_TIMEOUT
    while not daemon_answers():
        if time.monotonic() > deadline:
            raise HarnessError(f"zfs-fuse did not answer `zpool list` within {START_TIMEOUT:.0f} s")
        if _our_daemon(pidfile) is None:
            raise HarnessError("zfs-fuse exited right after starting (it logs only to syslog)")
        time.sleep(0.05)
    return True


def stop(pidfile: Path = PIDFILE) -> bool:
    """Unmount everything and stop the daemon in our pidfile; return False if none was running."""
    pid = _our_daemon(pidfile)
    if pid is None:
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()
        return False
    _run("zfs", "umount", "-a", check=False)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid):
        if time.monotonic() > deadline:
            raise HarnessError(f"zfs-fuse (pid {pid}) still running {STOP_TIMEOUT:.0f} s after SIGTERM")
        time.sleep(0.1)
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()  # zfs-fuse leaves it behind
    return True


@dataclass
class Pool:
    """A pool on a sparse file in ``workdir``; its root filesystem is mounted at ``mountpoint``."""

    name: str
    workdir: Path

    @property
    def image(self) -> Path:
        return self.workdir / "pool.img"

    @property
    def mountpoint(self) -> Path:
        return self.workdir / "mnt"

    @classmethod
    def create(cls, name: str | None = None, size: str = "512M", workdir: Path | None = None) -> "Pool":
        name = name or f"zgt{os.getpid()}x{secrets.token_hex(3)}"
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix=f"zfsglacier-{name}-"))
        pool = cls(name, Path(workdir))
        pool.mountpoint.mkdir(parents=True, exist_ok=True)
        _run("truncate", "-s", size, str(pool.image))
        try:
            _run("zpool", "create", "-o", "cachefile=none", "-m", str(pool.mountpoint), name,
                 str(pool.image))
        except HarnessError:
            shutil.rmtree(pool.workdir, ignore_errors=True)
            raise
        return pool

    def destroy(self) -> None:
        """Destroy the pool (retrying while it is "busy") and delete its files."""
        for attempt in range(BUSY_RETRIES):
            done = _run("zpool", "destroy", "-f", self.name, check=False)
            if done.returncode == 0 or "no such pool" in done.stderr:
                break
            if "busy" not in done.stderr or attempt == BUSY_RETRIES - 1:
                raise HarnessError(f"cannot destroy pool {self.name}: {' '.join(done.stderr.split())}")
            time.sleep(0.25)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _cli_workdir(name: str) -> Path:
    return Path(tempfile.gettempdir()) / f"zfsglacier-pool-{name}"


def kernel_zfs() -> bool:
    """Whether this machine's kernel runs ZFS itself (OpenZFS: /dev/zfs), as in the OpenZFS test
    tier's guest: then there is no daemon to start, and pools are made the same way."""
    return os.path.exists("/dev/zfs") and os.path.isdir("/sys/module/zfs")


@contextlib.contextmanager
def running_pool(size: str = "512M"):
    """A fresh pool for the duration; starts zfs-fuse if needed (and no kernel ZFS answers) and
    stops it only if it did."""
    started = False if kernel_zfs() else start()
    try:
        pool = Pool.create(size=size)
        try:
            yield pool
        finally:
            pool.destroy()
    finally:
        if started:
            stop()


class AdminZfs(ZfsCli):
    """ZfsCli plus what the tests do to ZFS and zfsglacier never does (so it is not in the
    package): create and destroy datasets, read a guid or a snapshot's hold count."""

    def guid(self, name: str) -> int:
        return int(self.get(name, "guid")["guid"])

    def userrefs(self, snap: str) -> int:
        """Number of user holds on a snapshot (zfs-fuse has no ``zfs holds``)."""
        return int(self.get(snap, "userrefs")["userrefs"])

    def create(self, name: str, properties: dict[str, str] | None = None) -> None:
        opts = [arg for k, v in (properties or {}).items() for arg in ("-o", f"{k}={v}")]
        self._run("create", *opts, name)

    def destroy(self, name: str, recursive: bool = False) -> None:
        """Destroy a dataset or snapshot; a mounted filesystem is unmounted first (zfs-fuse)."""
        if "@" not in name:
            self._unmount_tree(name, recursive)
        self._retry_busy("destroy", *(["-r"] if recursive else []), name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="zfsfuse.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("start", help="start zfs-fuse unless one answers already")
    sub.add_parser("stop", help="unmount all and stop the zfs-fuse that `start` started")
    sub.add_parser("status")
    cp = sub.add_parser("create-pool", help="start zfs-fuse if needed and make a pool on a sparse file")
    cp.add_argument("name")
    cp.add_argument("--size", default="1G")
    dp = sub.add_parser("destroy-pool", help="destroy a pool made by create-pool and its file")
    dp.add_argument("name")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "start":
            print("started" if start() else "already running")
        elif args.cmd == "stop":
            print("stopped" if stop() else "not running (not started by us)")
        elif args.cmd == "status":
            print(status())
        elif args.cmd == "create-pool":
            start()
            pool = Pool.create(args.name, args.size, _cli_workdir(args.name))
            print(f"{pool.name} mounted at {pool.mountpoint} (file {pool.image})")
        elif args.cmd == "destroy-pool":
            Pool(args.name, _cli_workdir(args.name)).destroy()
            print(f"{args.name} destroyed")
    except HarnessError as err:
        print(f"zfsfuse.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
