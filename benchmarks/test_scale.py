"""Issue 14: zg-backup / zg-restore memory from 1 to 16 GB, one full each, on real ZFS (zfs-fuse).

A pool (sparse file) with one dataset that grows: the corpus files (benchmarks/corpus.py, recipe
mixed, written once to a local directory and cached) are copied into it again and again; at about
1, 4 and 16 GB of file data a snapshot is taken and cloned, so that three datasets of those sizes
exist while the data is written only once (16 GB).  For each size, one round of

    zg-backup POOL/sN file:///DEST --key KEY.pub            fresh catalog and destination
    zg-restore file:///DEST POOL/sN@s POOL/rN --key KEY      into a new dataset, destroyed after

records wall time and peak RSS (report section "scale").  The only assertions are correctness:
exit codes and the restored snapshot's guid.  About 8 minutes on 2 cores, 40 GB of free disk.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import corpus as corpus_mod
from . import report
from .corpus import AdminZfs, zfsfuse
from .test_chains import _daemon_pid, bench_pool
from .test_filters import zg
from zfsglacier.stores import open_store

GB = 10 ** 9
SIZES = (1, 4, 16)  # GB of file data


@dataclass
class Scale:
    zfs: AdminZfs
    pool: str
    work: Path
    daemon: int
    datasets: dict  # size -> (dataset, stream bytes)

    def env(self, size: int) -> dict:
        return {**os.environ, "ZG_CATALOG": str(self.work / f"catalog-{size}.db")}

    def dest(self, size: int) -> Path:
        return self.work / f"dest-{size}"


def _source_tree(mb: int) -> Path:
    """The corpus files in a local directory, written once and kept (a stamp names the recipe)."""
    d = corpus_mod.bench_dir() / f"scale-src-mb{mb}"
    stamp = d / ".made"
    want = f"mixed {corpus_mod.GENERATOR} {corpus_mod.SEED} {mb}"
    if stamp.exists() and stamp.read_text() == want:
        return d
    shutil.rmtree(d, ignore_errors=True)
    (d / "files").mkdir(parents=True)
    corpus_mod.RECIPES["mixed"](d / "files", mb * corpus_mod.MiB, random.Random(corpus_mod.SEED))
    stamp.write_text(want)
    return d


def _stream_bytes(zfs: AdminZfs, snap: str) -> int:
    send = subprocess.Popen([zfs.zfs, "send", snap], stdout=subprocess.PIPE)
    n = 0
    while chunk := send.stdout.read(1 << 20):
        n += len(chunk)
    assert send.wait() == 0, f"zfs send {snap} failed"
    return n


@pytest.fixture(scope="module")
def scale(corpus):
    mb = corpus.info["mb"]
    src = _source_tree(mb)
    copy_gb = mb * corpus_mod.MiB / GB
    with bench_pool("scale", f"{int(max(SIZES) * 2.3 * 1000) + 2048}M") as (work, pool):
        zfs = AdminZfs()
        grow = f"{pool.name}/grow"
        zfs.create(grow, {"compression": "off", "atime": "off"})
        root, copies, datasets = Path(zfs.mountpoint(grow)), 0, {}
        for size in SIZES:
            while copies * copy_gb < size:
                subprocess.run(["cp", "-a", str(src / "files"), str(root / f"copy{copies:03d}")], check=True)
                copies += 1
            snap = f"{grow}@g{size}"
            zfs.snapshot(snap)
            ds = f"{pool.name}/s{size}"
            subprocess.run([zfs.zfs, "clone", snap, ds], check=True)
            zfs.snapshot(f"{ds}@s")
            datasets[size] = (ds, _stream_bytes(zfs, f"{ds}@s"))
        report.CONTEXT["scale"] = {
            "setup": f"a zfs-fuse pool with one dataset filled by copies of the corpus files ({mb} MiB each, "
                     f"recipe mixed), cloned at " + ", ".join(f"{s} GB ({datasets[s][1] / GB:.1f} GB stream)"
                                                            for s in SIZES)
                     + "; one round of each row, fresh catalog and file:// destination per size.",
        }
        yield Scale(zfs, pool.name, work, _daemon_pid(), datasets)


@pytest.mark.parametrize("size", SIZES)
def test_scale_zg_backup(benchmark, scale, keys, size):
    ds, stream = scale.datasets[size]
    dest = scale.dest(size)

    def setup():
        shutil.rmtree(dest, ignore_errors=True)
        open_store(f"file://{dest}").init()

    report.measure(benchmark, f"scale/zg-backup-{size}gb", f"zg-backup file://, {stream / GB:.1f} GB stream",
                   "zg-backup DS file:///DEST --key KEY.pub",
                   [zg("backup", ds, f"file://{dest}", "--key", keys.zg_public, "--no-hold")],
                   rounds=1, setup=setup, plain_bytes=stream, source=None, env=scale.env(size),
                   helpers=(scale.daemon,), helper="zfs-fuse", sink=scale.work / "stdout")


@pytest.mark.parametrize("size", SIZES)
def test_scale_zg_restore(benchmark, scale, keys, size):
    ds, stream = scale.datasets[size]
    dest, target = scale.dest(size), f"{scale.pool}/r{size}"
    if not dest.exists():  # run alone (-k): make the backup, unmeasured
        open_store(f"file://{dest}").init()
        subprocess.run(zg("backup", ds, f"file://{dest}", "--key", keys.zg_public, "--no-hold"),
                       env=scale.env(size), check=True, capture_output=True)

    def after(res):
        assert scale.zfs.guid(f"{target}@s") == scale.zfs.guid(f"{ds}@s")

    report.measure(benchmark, f"scale/zg-restore-{size}gb", f"zg-restore file://, {stream / GB:.1f} GB stream",
                   "zg-restore file:///DEST DS@s POOL/target --key KEY",
                   [zg("restore", f"file://{dest}", f"{ds}@s", target, "--key", keys.zg_secret)],
                   rounds=1, after=after, plain_bytes=stream, source=None, env=scale.env(size),
                   helpers=(scale.daemon,), helper="zfs-fuse")
    scale.zfs.destroy(target, recursive=True)
    shutil.rmtree(dest, ignore_errors=True)
