"""Issue 12: zg-upload / zg-fetch against `aws s3 cp` on Ceph's radosgw, a real S3 server that is not
the bottleneck (moto is: on it both clients looked equal because moto was the slow side).

One RGW (tests/servers/ceph_rgw.py: a mon, a memstore OSD and radosgw on 127.0.0.1, started here)
for both clients, with the moto rows' part size and concurrency (zg `--jobs` and a config
destination with ``part_size``; awscli through a temporary AWS_CONFIG_FILE).  Three directions:
upload from stdin, fetch to a pipe, fetch to a file (`zg-fetch -o FILE`: FILE.partial, verified,
renamed; `aws s3 cp s3://... FILE`).  The object is the zg-encrypt archive of the corpus stream,
in STANDARD.  Only correctness is asserted (exit 0, sizes, the file's bytes).
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers.ceph_rgw import CephRgw, RgwUnavailable

from . import corpus as corpus_mod
from . import report
from .motoserver import client_env
from .test_filters import archive, zg
from .test_transfers import (BUCKET, DEST, FAST, PREFIX, Clients, down_aws, down_zg, stored,  # noqa: F401 (stored:
                             up_aws, up_zg)                                           # a fixture, on this module's clients)


class _Rgw:
    """The bits of MotoServer the transfer rows use, for a CephRgw."""

    def __init__(self, rgw: CephRgw):
        self.rgw, self.url = rgw, rgw.url

    @property
    def pid(self) -> int:
        return next(p.pid for p in self.rgw.procs if p.args[0] == "radosgw")

    @property
    def env(self) -> dict:
        return client_env(AWS_ENDPOINT_URL_S3=self.url)

    def client(self):
        import boto3
        env = self.env
        return boto3.client("s3", endpoint_url=self.url, region_name=env["AWS_DEFAULT_REGION"],
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])

    def clear(self, bucket: str) -> None:
        c = self.client()
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                c.delete_object(Bucket=bucket, Key=o["Key"])
        for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for up in page.get("Uploads", []):
                c.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        self.rgw.gc()  # memstore keeps deleted objects' bytes until RGW collects them


@pytest.fixture(scope="module")
def clients(corpus):
    if shutil.which("aws") is None:
        pytest.fail("missing command: aws (`make bench` installs awscli)", pytrace=False)
    work = corpus_mod.bench_dir() / "transfers-rgw"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    part = report.PART_MIB << 20
    rgw = CephRgw()
    try:
        rgw.start()
    except RgwUnavailable as err:
        pytest.fail(f"Ceph RGW unavailable: {err}", pytrace=False)
    try:
        server = _Rgw(rgw)
        server.client().create_bucket(Bucket=BUCKET)
        (work / "zg.toml").write_text(
            f'[destinations.{DEST}]\nurl = "s3://{BUCKET}/{PREFIX}"\nstorage_class = "STANDARD"\n'
            f'endpoint = "{rgw.url}"\npart_size = {part}\njobs = {report.JOBS}\n')
        (work / "aws.ini").write_text(
            f"[default]\nregion = us-east-1\ns3 =\n    multipart_chunksize = {part}\n"
            f"    multipart_threshold = {part}\n    max_concurrent_requests = {report.JOBS}\n")
        version = subprocess.run(["radosgw", "--version"], capture_output=True, text=True).stdout.split("(")[0]
        report.CONTEXT["rgw"] = {"rgw": version.strip() or "radosgw", "aws": subprocess.run(
            ["aws", "--version"], capture_output=True, text=True).stdout.split()[0]}
        yield Clients(server, work, zg_env={**server.env, "ZG_CONFIG": str(work / "zg.toml"),
                                            "ZG_CATALOG": str(work / "catalog.db")},
                      aws_env={**server.env, "AWS_CONFIG_FILE": str(work / "aws.ini")}, rclone_env={},
                      helper="rgw")
    finally:
        rgw.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def zg_archive(corpus, keys) -> Path:
    return archive("zg-default.zg", corpus, keys)


def test_rgw_up_zg(benchmark, clients, zg_archive):
    up_zg(benchmark, clients, zg_archive, report.RGW_UP_ZG, "endpoint and part_size 16 MiB in config")


def test_rgw_up_aws(benchmark, clients, zg_archive):
    up_aws(benchmark, clients, zg_archive, report.RGW_UP_AWS)


def test_rgw_down_zg(benchmark, clients, stored):
    down_zg(benchmark, clients, stored, report.RGW_DOWN_ZG, " (to a pipe)")


def test_rgw_down_aws(benchmark, clients, stored):
    down_aws(benchmark, clients, stored, report.RGW_DOWN_AWS, " (to a pipe)")


def _file_row(benchmark, clients, zg_archive, key, label, command, argv, env, size, out: Path):
    def setup():
        out.unlink(missing_ok=True)

    row = report.measure(benchmark, key, label, command, [argv], rounds=FAST, setup=setup, source=None,
                         plain_bytes=size, expect_out=0, env=env, helpers=(clients.server.pid,), helper="rgw")
    assert filecmp.cmp(out, zg_archive, shallow=False), f"{label}: the file differs from the archive"
    return row


def test_rgw_file_zg(benchmark, clients, stored, zg_archive):
    archive_id, _, size = stored
    out = clients.dir / "zg.out"
    _file_row(benchmark, clients, zg_archive, report.RGW_FILE_ZG, f"zg-fetch -o FILE --jobs {report.JOBS}",
              f"zg-fetch {DEST} ID -o FILE --jobs {report.JOBS}",
              zg("fetch", DEST, archive_id, "-o", str(out), "--jobs", report.JOBS), clients.zg_env, size, out)


def test_rgw_file_aws(benchmark, clients, stored, zg_archive):
    _, key, size = stored
    out = clients.dir / "aws.out"
    _file_row(benchmark, clients, zg_archive, report.RGW_FILE_AWS, "aws s3 cp s3://... FILE",
              "aws s3 cp s3://bucket/key FILE",
              ["aws", "s3", "cp", f"s3://{BUCKET}/{key}", str(out), "--endpoint-url", clients.server.url,
               "--only-show-errors"], clients.aws_env, size, out)
