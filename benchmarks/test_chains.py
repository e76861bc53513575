"""Issue 4: zg-backup / zg-restore of a real dataset against the bare `zfs send` / `zfs receive`.

A pool on zfs-fuse (tests/zfsfuse.py: reuses a running daemon, stops it only if it started it)
with one dataset holding the corpus files (corpus.fill_dataset, the same files as the corpus
stream) and one snapshot.  The pool lives only while this module runs and is destroyed after.

    zfs send DS@bench > /dev/null                         the bare send
    zg-backup DS file:///DEST --key KEY.pub               fresh catalog (ZG_CATALOG), fresh DEST each round
    zfs receive POOL/target2 < stream                     the snapshot's stream, saved once beforehand
    zg-restore file:///DEST DS@bench POOL/target --key KEY

Targets are destroyed (and zg-backup's hold released) before each round, unmeasured.  zfs-fuse does
the pool work in its daemon: its CPU is shown as "zfs-fuse cores", not as other processes' load.
Only correctness is asserted: exit codes, the received snapshot's guid, the stream's length.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import corpus as corpus_mod
from . import report
from .corpus import zfsfuse
from .test_filters import zg
from zfsglacier.services.backup import hold_tag
from zfsglacier.stores import open_store
from .corpus import AdminZfs

FAST = 3
SNAP = "bench"


@dataclass
class Chain:
    zfs: AdminZfs
    pool: str
    dataset: str
    work: Path
    stream: Path  # the snapshot's `zfs send` stream, for the bare receive
    daemon: int  # zfs-fuse's pid

    @property
    def snap(self) -> str:
        return f"{self.dataset}@{SNAP}"

    @property
    def dest(self) -> Path:
        return self.work / "dest"

    @property
    def env(self) -> dict:
        return {**os.environ, "ZG_CATALOG": str(self.work / "catalog.db")}

    def drop(self, name: str) -> None:
        if self.zfs.exists(name):
            self.zfs.destroy(name, recursive=True)

    def release(self) -> None:
        if self.zfs.userrefs(self.snap):
            self.zfs.release(hold_tag(f"file://{self.dest}"), self.snap)

    def fresh_destination(self) -> None:
        self.release()
        shutil.rmtree(self.dest, ignore_errors=True)
        (self.work / "catalog.db").unlink(missing_ok=True)
        open_store(f"file://{self.dest}").init()


def _daemon_pid() -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == "zfs-fuse":
                    return int(entry)
            except OSError:
                continue
    pytest.fail("zfs-fuse answers but no zfs-fuse process was found", pytrace=False)


@pytest.fixture(scope="module")
def chain(corpus):
    mb = corpus.info["mb"]
    work = corpus_mod.bench_dir() / "chains"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        started = zfsfuse.start()
    except zfsfuse.HarnessError as err:
        pytest.fail(f"real ZFS unavailable: {err}", pytrace=False)
    try:
        pool = zfsfuse.Pool.create(size=corpus_mod.pool_size(mb, copies=3), workdir=work / "pool")
        try:
            zfs = AdminZfs()
            ds = f"{pool.name}/bench"
            corpus_mod.fill_dataset(zfs, ds, mb)
            zfs.snapshot(f"{ds}@{SNAP}")
            c = Chain(zfs, pool.name, ds, work, work / "stream.zfs", _daemon_pid())
            with open(c.stream, "wb") as out:
                subprocess.run([zfs.zfs, "send", c.snap], stdout=out, check=True)
            report.CONTEXT["chains"] = {
                "setup": f"a zfs-fuse pool (sparse file) with one dataset (compression off) holding the corpus "
                         f"files ({mb} MiB, benchmarks/corpus.py), snapshot @{SNAP}: a full stream of "
                         f"{c.stream.stat().st_size / 1e6:.1f} MB. zg-backup writes to a fresh file:// directory "
                         "with a fresh catalog each round (default zstd -3); zg-restore reads the last backup; "
                         "`zfs receive` reads the same snapshot's stream from a file (page cache). Targets are "
                         "destroyed between rounds.",
            }
            yield c
        finally:
            pool.destroy()  # with everything in it, zg-backup's hold included
    finally:
        if started:
            zfsfuse.stop()
        shutil.rmtree(work, ignore_errors=True)


def _row(benchmark, chain, key, label, command, stages, *, plain_bytes, setup, after=None, **run_kw):
    return report.measure(benchmark, key, label, command, stages, rounds=FAST, setup=setup, after=after,
                          plain_bytes=plain_bytes, helpers=(chain.daemon,), helper="zfs-fuse", **run_kw)


def test_chain_zfs_send(benchmark, chain):
    size = chain.stream.stat().st_size
    _row(benchmark, chain, report.CHAIN_SEND, "zfs send DS@snap > /dev/null", "zfs send DS@snap > /dev/null",
         [[chain.zfs.zfs, "send", chain.snap]], plain_bytes=size, setup=None, source=None, expect_out=size)


def test_chain_zg_backup(benchmark, chain, keys):
    def after(res):
        assert any(chain.dest.rglob("*")), "zg-backup left nothing in the destination"

    _row(benchmark, chain, report.CHAIN_BACKUP, "zg-backup DS file:///... (full)",
         "zg-backup DS file:///DEST --key KEY.pub", [zg("backup", chain.dataset, f"file://{chain.dest}", "--key",
                                                        keys.zg_public)],
         plain_bytes=chain.stream.stat().st_size, setup=chain.fresh_destination, after=after, source=None,
         env=chain.env, sink=chain.work / "stdout")


def test_chain_zfs_receive(benchmark, chain):
    target = f"{chain.pool}/target2"

    def after(res):
        assert chain.zfs.guid(f"{target}@{SNAP}") == chain.zfs.guid(chain.snap)

    _row(benchmark, chain, report.CHAIN_RECV, "zfs receive POOL/target < stream", "zfs receive POOL/target < stream",
         [[chain.zfs.zfs, "receive", target]], plain_bytes=chain.stream.stat().st_size,
         setup=lambda: chain.drop(target), after=after, source=chain.stream)
    chain.drop(target)


def test_chain_zg_restore(benchmark, chain, keys):
    target = f"{chain.pool}/target"
    if not chain.dest.exists():  # run alone (-k): make the backup to restore, unmeasured
        chain.fresh_destination()
        subprocess.run(zg("backup", chain.dataset, f"file://{chain.dest}", "--key", keys.zg_public), env=chain.env,
                       check=True, capture_output=True)

    def after(res):
        assert chain.zfs.guid(f"{target}@{SNAP}") == chain.zfs.guid(chain.snap)

    _row(benchmark, chain, report.CHAIN_RESTORE, "zg-restore file:///... DS@snap POOL/target",
         "zg-restore file:///DEST DS@snap POOL/target --key KEY",
         [zg("restore", f"file://{chain.dest}", chain.snap, target, "--key", keys.zg_secret)],
         plain_bytes=chain.stream.stat().st_size, setup=lambda: chain.drop(target), after=after, source=None,
         env=chain.env)
    chain.drop(target)
