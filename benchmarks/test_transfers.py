"""Issue 3: zg-upload / zg-fetch against `aws s3 cp` and `rclone rcat` on one local moto server.

Every client talks to the same moto server (benchmarks/motoserver.py: its own process, 127.0.0.1)
with the same part size (16 MiB) and the same concurrency (4): zg through `--jobs 4` and a config
destination with ``part_size``, awscli through a temporary AWS_CONFIG_FILE (multipart_chunksize,
multipart_threshold, max_concurrent_requests), rclone through an s3 remote defined by
RCLONE_CONFIG_ZGMOTO_* variables and `--s3-chunk-size 16M --s3-upload-concurrency 4`.

Upload input is the zg-encrypt archive of the corpus stream (test_filters.archive: cached in the
bench dir), fed from the file through a pipe (benchmarks/procs.py), as a `zfs send | zg-encrypt`
pipeline would feed it; STANDARD class, so no thaw is involved.  The download rows fetch the same
object.  The memory rows feed larger inputs: the `zstd | openssl` reference output repeated to
~1 GB and ~4 GB (never written to disk), uploaded with `--raw` (a zg archive repeated would still
begin with the archive magic, and zg-upload refuses it as an archive cut short), then fetched.
Objects are deleted before every round (moto keeps them in memory or its temporary files).

The bucket is versioned, for every client: moto answers CompleteMultipartUpload on an unversioned
bucket with `x-amz-version-id: null` and then refuses the `HEAD ?versionId=null` that rclone sends to
check its upload (400); on a versioned bucket all three clients work unchanged.

Only correctness is asserted (every process exits 0, objects and downloads have the right size).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import corpus as corpus_mod
from . import report
from .motoserver import MotoServer
from .test_filters import archive, zg

BUCKET, PREFIX, DEST = "zg-bench", "zg", "bench"
REMOTE = "ZGMOTO"  # rclone remote, from environment variables
FAST = 3
UP_ROUNDS = 5  # upload rounds vary most (the server's own pauses): best of more
XMEM_BYTES = {"1gb": 1e9, "4gb": 4e9}  # at the default corpus size; scaled down with ZG_BENCH_MB
FLOOR_BYTES = 1 << 20


@dataclass
class Clients:
    server: MotoServer  # or anything with its url, pid, client() and clear(bucket): the RGW rows' server
    dir: Path  # configs, catalog, scratch
    zg_env: dict
    aws_env: dict
    rclone_env: dict
    last_id: str = ""  # the archive a memory row uploaded, for the fetch row after it
    helper: str = "moto"  # what the server's CPU is reported as

    def s3(self):
        return self.server.client()

    def clear(self) -> None:
        """Empty the bucket, then flush dirty pages (earlier rows wrote gigabytes) so that the disk's
        write-back does not stall the server's spool files in the middle of the next round."""
        self.server.clear(BUCKET)
        os.sync()

    def objects(self) -> list[dict]:
        return self.s3().list_objects_v2(Bucket=BUCKET).get("Contents", [])

    def object_size(self, key: str) -> int:
        return self.s3().head_object(Bucket=BUCKET, Key=key)["ContentLength"]

    def zg_upload(self, source: Path, *extra) -> str:
        """Upload (unmeasured) and return the archive id."""
        with open(source, "rb") as f:
            done = subprocess.run(zg("upload", DEST, "--jobs", report.JOBS, *extra), stdin=f, env=self.zg_env,
                                  capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"zg-upload failed: {done.stderr.strip()}", pytrace=False)
        return done.stdout.strip()


def _version(argv) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    return ((done.stdout or done.stderr).strip().splitlines() or ["?"])[0]


@pytest.fixture(scope="module")
def clients(corpus):
    missing = [t for t in ("aws", "rclone") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing commands: {', '.join(missing)} (`make bench` installs awscli, "
                    "`make install` rclone)", pytrace=False)
    work = corpus_mod.bench_dir() / "transfers"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    part = report.PART_MIB << 20
    try:
        with MotoServer(work) as moto:
            moto.make_bucket(BUCKET, versioned=True)
            (work / "zg.toml").write_text(
                f'[destinations.{DEST}]\nurl = "s3://{BUCKET}/{PREFIX}"\nstorage_class = "STANDARD"\n'
                f"part_size = {part}\njobs = {report.JOBS}\n")
            (work / "aws.ini").write_text(
                f"[default]\nregion = us-east-1\ns3 =\n    multipart_chunksize = {part}\n"
                f"    multipart_threshold = {part}\n    max_concurrent_requests = {report.JOBS}\n")
            (work / "rclone.conf").write_text("")  # the remote comes from the environment
            c = Clients(
                moto, work,
                zg_env={**moto.env, "ZG_CONFIG": str(work / "zg.toml"), "ZG_CATALOG": str(work / "catalog.db"),
                        "ZG_POLL_SECONDS": "0.1"},
                aws_env={**moto.env, "AWS_CONFIG_FILE": str(work / "aws.ini")},
                rclone_env={**moto.env, **{f"RCLONE_CONFIG_{REMOTE}_{k}": v for k, v in {
                    "TYPE": "s3", "PROVIDER": "Other", "ENDPOINT": moto.url, "REGION": "us-east-1",
                    "ACCESS_KEY_ID": moto.env["AWS_ACCESS_KEY_ID"],
                    "SECRET_ACCESS_KEY": moto.env["AWS_SECRET_ACCESS_KEY"]}.items()}})
            import moto as moto_pkg
            report.CONTEXT["transfers"] = {
                "moto": f"moto {moto_pkg.__version__}",
                "aws": _version(["aws", "--version"]).split()[0],
                "rclone": _version(["rclone", "version"]),
                "input": "the zg-encrypt archive of the corpus stream",
                "notes": "The bucket is versioned for every client (rclone's upload check fails on moto "
                         "otherwise); the server reads ranged GETs from the stored bytes instead of copying the "
                         "whole object per range (benchmarks/motoserver.py).",
            }
            yield c
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def zg_archive(corpus, keys) -> Path:
    return archive("zg-default.zg", corpus, keys)


def _upload_row(benchmark, clients, key, label, command, stages, env, source, *, rounds=UP_ROUNDS, repeat=1,
                expect_key=None):
    """Measure an upload from stdin; after each round check that one object of the input's size exists."""
    size = source.stat().st_size * repeat

    def after(res):
        objs = clients.objects()
        assert len(objs) == 1 and objs[0]["Size"] == size, f"{label}: stored {objs}, expected {size} bytes"
        assert expect_key is None or objs[0]["Key"] == expect_key

    return report.measure(benchmark, key, label, command, stages, rounds=rounds, setup=clients.clear, after=after,
                          source=source, repeat=repeat, sink=clients.dir / "stdout", env=env,
                          helpers=(clients.server.pid,), helper=clients.helper)


def _fetch_row(benchmark, clients, key, label, command, stages, env, size, *, rounds=FAST, setup=None):
    return report.measure(benchmark, key, label, command, stages, rounds=rounds, setup=setup, source=None,
                          plain_bytes=size, expect_out=size, env=env, helpers=(clients.server.pid,), helper=clients.helper)


# ---------------------------------------------------------------- upload from stdin


def up_zg(benchmark, clients, zg_archive, key, config="part_size 16 MiB in config"):
    """zg-upload of the archive from stdin (the moto and RGW rows)."""
    _upload_row(benchmark, clients, key, f"zg-upload --jobs {report.JOBS}",
                f"zg-upload {DEST} --jobs {report.JOBS} < archive ({config})",
                [zg("upload", DEST, "--jobs", report.JOBS)], clients.zg_env, zg_archive)


def up_aws(benchmark, clients, zg_archive, key):
    _upload_row(benchmark, clients, key, "aws s3 cp - s3://...",
                "aws s3 cp - s3://bucket/key < archive",
                [["aws", "s3", "cp", "-", f"s3://{BUCKET}/aws/archive", "--endpoint-url", clients.server.url,
                  "--only-show-errors"]], clients.aws_env, zg_archive, expect_key="aws/archive")


def test_up_zg(benchmark, clients, zg_archive):
    up_zg(benchmark, clients, zg_archive, report.UP_ZG)


def test_up_aws(benchmark, clients, zg_archive):
    up_aws(benchmark, clients, zg_archive, report.UP_AWS)


def test_up_aws_sha256(benchmark, clients, zg_archive):
    """awscli with the per-part checksum zg uses (SHA-256): moto computes the composite checksum at
    completion from the stored parts, which costs the server more for SHA-256 than for CRC32."""
    _upload_row(benchmark, clients, report.UP_AWS_SHA, "aws s3 cp --checksum-algorithm SHA256 - s3://...",
                "aws s3 cp --checksum-algorithm SHA256 - s3://bucket/key < archive",
                [["aws", "s3", "cp", "--checksum-algorithm", "SHA256", "-", f"s3://{BUCKET}/aws/archive",
                  "--endpoint-url", clients.server.url, "--only-show-errors"]], clients.aws_env, zg_archive,
                expect_key="aws/archive")


def test_up_rclone(benchmark, clients, zg_archive):
    _upload_row(benchmark, clients, report.UP_RCLONE, "rclone rcat",
                f"rclone rcat --s3-chunk-size {report.PART_MIB}M --s3-upload-concurrency {report.JOBS} "
                "remote:bucket/key < archive",
                [["rclone", "rcat", "--config", str(clients.dir / "rclone.conf"), "-q",
                  "--s3-chunk-size", f"{report.PART_MIB}M", "--s3-upload-concurrency", str(report.JOBS),
                  f"{REMOTE.lower()}:{BUCKET}/rclone/archive"]], clients.rclone_env, zg_archive,
                expect_key="rclone/archive")


# ---------------------------------------------------------------- download to stdout


@pytest.fixture(scope="module")
def stored(clients, zg_archive) -> tuple[str, str, int]:
    """(archive id, object key, size): the archive uploaded once by zg-upload, for both download rows."""
    clients.clear()
    archive_id = clients.zg_upload(zg_archive)
    (obj,) = clients.objects()
    return archive_id, obj["Key"], obj["Size"]


def down_zg(benchmark, clients, stored, key, suffix=""):
    """zg-fetch of the stored archive to stdout (the moto and RGW rows)."""
    archive_id, _, size = stored
    _fetch_row(benchmark, clients, key, f"zg-fetch --jobs {report.JOBS}{suffix}",
               f"zg-fetch {DEST} ID --jobs {report.JOBS} > /dev/null",
               [zg("fetch", DEST, archive_id, "--jobs", report.JOBS)], clients.zg_env, size)


def down_aws(benchmark, clients, stored, key, suffix=""):
    _, obj, size = stored
    _fetch_row(benchmark, clients, key, f"aws s3 cp s3://... -{suffix}", "aws s3 cp s3://bucket/key - > /dev/null",
               [["aws", "s3", "cp", f"s3://{BUCKET}/{obj}", "-", "--endpoint-url", clients.server.url,
                 "--only-show-errors"]], clients.aws_env, size)


def test_down_zg(benchmark, clients, stored):
    down_zg(benchmark, clients, stored, report.DOWN_ZG)


def test_down_aws(benchmark, clients, stored):
    down_aws(benchmark, clients, stored, report.DOWN_AWS)


def test_cold_zg(benchmark, clients, zg_archive):
    """A fresh DEEP_ARCHIVE object per round: zg-fetch asks for the thaw, waits, then downloads."""
    ids = []

    def setup():
        clients.clear()
        ids.append(clients.zg_upload(zg_archive, "--storage-class", "DEEP_ARCHIVE"))

    _fetch_row(benchmark, clients, "cold/zg-fetch", "zg-fetch --tier Standard, DEEP_ARCHIVE (thaw + fetch)",
               f"zg-fetch {DEST} ID --tier Standard --jobs {report.JOBS} > /dev/null",
               lambda: [zg("fetch", DEST, ids[-1], "--tier", "Standard", "--jobs", report.JOBS)], clients.zg_env,
               zg_archive.stat().st_size, setup=setup)


# ---------------------------------------------------------------- memory at ~1 GB and ~4 GB


@pytest.fixture(scope="module")
def raw_input(corpus, keys) -> Path:
    """Not a zg archive: the `zstd | openssl` output (as incompressible as the archive), repeated by the harness."""
    return archive("zstd-openssl.bin", corpus, keys)


@pytest.fixture(scope="module")
def floor_input(clients) -> Path:
    path = clients.dir / "floor.bin"
    path.write_bytes(os.urandom(FLOOR_BYTES))
    return path


def _repeat(source: Path, name: str) -> int:
    """How many times to feed ``source`` for about XMEM_BYTES[name] (scaled like the corpus)."""
    scale = min(1.0, corpus_mod.bench_mb() / corpus_mod.DEFAULT_MB)
    return max(1, math.ceil(XMEM_BYTES[name] * scale / source.stat().st_size))


# in this order: each fetch row reads what the upload row before it stored, then empties the bucket
XMEM_STEPS = [("upload", "floor"), ("fetch", "floor")] + [(op, n) for n in report.XMEM_SIZES for op in ("upload", "fetch")]


@pytest.mark.parametrize("op,name", XMEM_STEPS, ids=[f"{op}-{n}" for op, n in XMEM_STEPS])
def test_xmem(benchmark, clients, raw_input, floor_input, op, name):
    source, n = (floor_input, 1) if name == "floor" else (raw_input, _repeat(raw_input, name))
    size = source.stat().st_size * n
    what = "1 MiB" if name == "floor" else f"{size / 1e9:.2f} GB"
    floor = " (the command's own footprint)" if name == "floor" else ""
    if op == "upload":
        _upload_row(benchmark, clients, f"xmem/zg-upload-{name}", f"zg-upload --raw, {what} input{floor}",
                    f"zg-upload {DEST} --raw --jobs {report.JOBS} < input",
                    [zg("upload", DEST, "--raw", "--jobs", report.JOBS)], clients.zg_env, source, rounds=1, repeat=n)
        clients.last_id = (clients.dir / "stdout").read_text().strip()
        return
    archive_id, clients.last_id = clients.last_id, ""
    if not archive_id:
        pytest.fail("the upload row before this one did not run", pytrace=False)
    _fetch_row(benchmark, clients, f"xmem/zg-fetch-{name}", f"zg-fetch, {what} object{floor}",
               f"zg-fetch {DEST} ID --jobs {report.JOBS} > /dev/null",
               [zg("fetch", DEST, archive_id, "--jobs", report.JOBS)], clients.zg_env, size, rounds=1)
    clients.clear()
