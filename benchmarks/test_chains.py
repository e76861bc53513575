"""Issue 4: zg-backup / zg-restore of a real dataset against the bare `zfs send` / `zfs receive`.

A pool on zfs-fuse (tests/zfsfuse.py: reuses a running daemon, stops it only if it started it)
with one dataset holding the corpus files (corpus.fill_dataset, the same files as the corpus
stream) and one snapshot.  The pool lives only while this module runs and is destroyed after.

    zfs send DS@bench > /dev/null                         the bare send
    zg-backup DS file:///DEST --key KEY.pub               fresh catalog (ZG_CATALOG), fresh DEST each round
    zfs receive POOL/target2 < stream                     the snapshot's stream, saved once beforehand
    zg-restore file:///DEST DS@bench POOL/target --key KEY

and what a user would otherwise type for the same backup and restore (issue 14):

    zfs send DS@bench | zstd -T0 -3 | openssl enc -aes-256-ctr -pbkdf2 -pass file:K > DEST/native.bin
    openssl enc -d -aes-256-ctr -pbkdf2 -pass file:K < DEST/native.bin | zstd -d | zfs receive POOL/target3

and the same two to and from S3 (moto in a process of its own, benchmarks/motoserver.py; STANDARD
class so that both restores read at once; 16 MiB parts, 4 at a time for both clients):

    zg-backup DS s3://B/P --key KEY.pub                     fresh catalog and bucket each round
    zfs send DS@bench | zstd -T0 -3 | openssl enc ... | aws s3 cp - s3://B/native.bin
    zg-restore s3://B/P DS@bench POOL/target --key KEY
    aws s3 cp s3://B/native.bin - | openssl enc -d ... | zstd -d | zfs receive POOL/target3

Targets are destroyed (and zg-backup's hold released) before each round, unmeasured.  zfs-fuse does
the pool work in its daemon: its CPU is shown as "zfs-fuse cores", not as other processes' load.
Only correctness is asserted: exit codes, the received snapshot's guid, the stream's length.
"""

from __future__ import annotations

import contextlib
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
from zfsglacier.catalog.db import Catalog
from zfsglacier.errors import ZgError
from zfsglacier.services.backup import hold_tag
from zfsglacier.stores import open_store
from .corpus import AdminZfs
from .motoserver import MotoServer

BUCKET = "zg-chain"

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


@contextlib.contextmanager
def bench_pool(name: str, size: str):
    """(work directory, zfs-fuse pool in it), both new; zfs-fuse started when it was not running;
    all of it destroyed after (the pool with everything in it, zg-backup's holds included)."""
    work = corpus_mod.bench_dir() / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        started = zfsfuse.start()
    except zfsfuse.HarnessError as err:
        pytest.fail(f"real ZFS unavailable: {err}", pytrace=False)
    try:
        pool = zfsfuse.Pool.create(size=size, workdir=work / "pool")
        try:
            yield work, pool
        finally:
            pool.destroy()
    finally:
        if started:
            zfsfuse.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def chain(corpus):
    mb = corpus.info["mb"]
    with bench_pool("chains", corpus_mod.pool_size(mb, copies=3)) as (work, pool):
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


def _row(benchmark, chain, key, label, command, stages, *, plain_bytes, setup, after=None, helpers=None, **run_kw):
    return report.measure(benchmark, key, label, command, stages, rounds=FAST, setup=setup, after=after,
                          plain_bytes=plain_bytes, helpers=helpers or (chain.daemon,),
                          helper="zfs-fuse" if helpers is None else "zfs-fuse + moto", **run_kw)


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


def _openssl(keys, *decrypt):
    return ["openssl", "enc", *decrypt, "-aes-256-ctr", "-pbkdf2", "-pass", f"file:{keys.openssl_pass}"]


def test_chain_native_backup(benchmark, chain, keys):
    out = chain.work / "native.bin"

    def after(res):
        assert out.stat().st_size > 0

    _row(benchmark, chain, report.CHAIN_NATIVE_BACKUP, "zfs send | zstd -T0 -3 | openssl enc > file",
         "zfs send DS@snap | zstd -T0 -3 | openssl enc -aes-256-ctr -pbkdf2 > DEST/native.bin",
         [[chain.zfs.zfs, "send", chain.snap], ["zstd", "-T0", "-3", "-q", "-c"], _openssl(keys)],
         plain_bytes=chain.stream.stat().st_size, setup=None, after=after, source=None, sink=out)


def test_chain_native_restore(benchmark, chain, keys):
    target, native = f"{chain.pool}/target3", chain.work / "native.bin"
    if not native.exists():  # run alone (-k): make it, unmeasured
        with open(native, "wb") as out:
            subprocess.run(f"{chain.zfs.zfs} send {chain.snap} | zstd -T0 -3 -q -c | {' '.join(_openssl(keys))}",
                           shell=True, stdout=out, check=True)

    def after(res):
        assert chain.zfs.guid(f"{target}@{SNAP}") == chain.zfs.guid(chain.snap)

    _row(benchmark, chain, report.CHAIN_NATIVE_RESTORE, "openssl enc -d < file | zstd -d | zfs receive",
         "openssl enc -d -aes-256-ctr -pbkdf2 < DEST/native.bin | zstd -d | zfs receive POOL/target",
         [_openssl(keys, "-d"), ["zstd", "-d", "-q", "-c"], [chain.zfs.zfs, "receive", target]],
         plain_bytes=chain.stream.stat().st_size, setup=lambda: chain.drop(target), after=after, source=native)
    chain.drop(target)


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


# ---- to and from S3 (moto): what a user feels end to end (issue 14)

@dataclass
class S3Chain:
    moto: MotoServer
    zg_env: dict
    aws_env: dict

    dest = f"s3://{BUCKET}/zg"
    native = f"s3://{BUCKET}/native.bin"


@pytest.fixture(scope="module")
def s3chain(chain):
    if shutil.which("aws") is None:
        pytest.fail("missing command: aws (`make bench` installs awscli)", pytrace=False)
    work = chain.work / "s3"
    work.mkdir()
    part = report.PART_MIB << 20
    with MotoServer(work) as moto:
        moto.make_bucket(BUCKET)
        (work / "zg.toml").write_text(f'[destinations.chain]\nurl = "{S3Chain.dest}"\nstorage_class = "STANDARD"\n'
                                      f'host = ""\npart_size = {part}\njobs = {report.JOBS}\n')
        (work / "aws.ini").write_text(
            f"[default]\nregion = us-east-1\ns3 =\n    multipart_chunksize = {part}\n"
            f"    multipart_threshold = {part}\n    max_concurrent_requests = {report.JOBS}\n")
        yield S3Chain(moto, {**chain.env, **moto.env, "ZG_CONFIG": str(work / "zg.toml")},
                      {**moto.env, "AWS_CONFIG_FILE": str(work / "aws.ini")})


def _fresh_bucket(chain, s3):
    for dest in (f"file://{chain.dest}", S3Chain.dest):  # the file:// rows' hold, and this destination's
        try:
            chain.zfs.release(hold_tag(dest), chain.snap)
        except ZgError:
            pass  # not held for it
    (chain.work / "catalog.db").unlink(missing_ok=True)
    s3.moto.clear(BUCKET)


def test_chain_zg_backup_s3(benchmark, chain, s3chain, keys):
    _row(benchmark, chain, report.CHAIN_BACKUP_S3, "zg-backup DS s3://... (full, moto)",
         "zg-backup DS s3://B/P --key KEY.pub", [zg("backup", chain.dataset, "chain", "--key", keys.zg_public)],
         plain_bytes=chain.stream.stat().st_size, setup=lambda: _fresh_bucket(chain, s3chain), source=None,
         env=s3chain.zg_env, sink=chain.work / "stdout", helpers=(chain.daemon, s3chain.moto.pid))


def test_chain_native_backup_s3(benchmark, chain, s3chain, keys):
    _row(benchmark, chain, report.CHAIN_NATIVE_BACKUP_S3, "zfs send | zstd -T0 -3 | openssl enc | aws s3 cp -",
         "zfs send DS@snap | zstd -T0 -3 | openssl enc -aes-256-ctr -pbkdf2 | aws s3 cp - s3://B/native.bin",
         [[chain.zfs.zfs, "send", chain.snap], ["zstd", "-T0", "-3", "-q", "-c"], _openssl(keys),
          ["aws", "s3", "cp", "--only-show-errors", "-", S3Chain.native]],
         plain_bytes=chain.stream.stat().st_size, setup=None, source=None, env=s3chain.aws_env,
         helpers=(chain.daemon, s3chain.moto.pid))


def test_chain_zg_restore_s3(benchmark, chain, s3chain, keys):
    target = f"{chain.pool}/target"
    with Catalog(str(chain.work / "catalog.db")) as cat:
        made = bool(cat.archives(S3Chain.dest))
    if not made:  # run alone (-k): make the backup to restore, unmeasured
        _fresh_bucket(chain, s3chain)
        subprocess.run(zg("backup", chain.dataset, "chain", "--key", keys.zg_public), env=s3chain.zg_env,
                       check=True, capture_output=True)

    def after(res):
        assert chain.zfs.guid(f"{target}@{SNAP}") == chain.zfs.guid(chain.snap)

    _row(benchmark, chain, report.CHAIN_RESTORE_S3, "zg-restore s3://... DS@snap POOL/target (moto)",
         "zg-restore s3://B/P DS@snap POOL/target --key KEY",
         [zg("restore", "chain", chain.snap, target, "--key", keys.zg_secret)],
         plain_bytes=chain.stream.stat().st_size, setup=lambda: chain.drop(target), after=after, source=None,
         env=s3chain.zg_env, helpers=(chain.daemon, s3chain.moto.pid))
    chain.drop(target)


def test_chain_native_restore_s3(benchmark, chain, s3chain, keys):
    target = f"{chain.pool}/target3"
    listed = s3chain.moto.client().list_objects_v2(Bucket=BUCKET, Prefix="native.bin").get("KeyCount", 0)
    if not listed:  # run alone (-k): make it, unmeasured
        subprocess.run(f"{chain.zfs.zfs} send {chain.snap} | zstd -T0 -3 -q -c | {' '.join(_openssl(keys))} | "
                       f"aws s3 cp --only-show-errors - {S3Chain.native}", shell=True, env=s3chain.aws_env, check=True)

    def after(res):
        assert chain.zfs.guid(f"{target}@{SNAP}") == chain.zfs.guid(chain.snap)

    _row(benchmark, chain, report.CHAIN_NATIVE_RESTORE_S3, "aws s3 cp - | openssl enc -d | zstd -d | zfs receive",
         "aws s3 cp s3://B/native.bin - | openssl enc -d -aes-256-ctr -pbkdf2 | zstd -d | zfs receive POOL/target",
         [["aws", "s3", "cp", "--only-show-errors", S3Chain.native, "-"], _openssl(keys, "-d"),
          ["zstd", "-d", "-q", "-c"], [chain.zfs.zfs, "receive", target]],
         plain_bytes=chain.stream.stat().st_size, setup=lambda: chain.drop(target), after=after, source=None,
         env=s3chain.aws_env, helpers=(chain.daemon, s3chain.moto.pid))
    chain.drop(target)
