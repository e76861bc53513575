"""Issue 9 on real ZFS and moto: an interrupted zg-backup.  SIGTERM and SIGHUP end it with one line
and exit 128 + N, nothing recorded (since issue 14 the upload is kept for the next run to continue);
kill -9 leaves an upload that zg-ls shows, with a hint that fits a zg-backup, and that
`zg-rm --incomplete` frees."""

import os
import re
import signal
import subprocess
import sys
import time

import boto3
import pytest

from zfsglacier.catalog.db import Catalog
from tests.helpers import BIN, zg
from tests.servers.faultproxy import FaultProxy
from tests.test_chains_zfs import env  # noqa: F401 (a fixture)

pytestmark = pytest.mark.zfs


def big_dataset(ds, mib=24):
    """Incompressible data: the archive takes two 16 MiB parts."""
    (ds.path / "random.bin").write_bytes(os.urandom(mib << 20))


def backup_stalled_at_part_2(env, ds, aws, signum):  # noqa: F811
    """zg-backup to S3 through a proxy that stalls the second part; deliver ``signum`` then."""
    with FaultProxy(aws.s3_url, stall_seconds=60) as proxy:
        proxy.inject("stall", when=lambda req: bool(re.match(r"^PUT \S*partNumber=2", req.request_line)))
        run_env = {**os.environ, **env["env"], "AWS_ENDPOINT_URL_S3": proxy.url}
        proc = subprocess.Popen([sys.executable, str(BIN / "zg-backup"), ds.name, env["dest"], "--key",
                                 str(env["pub"]), "--snapshot", "s0"], env=run_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not proxy.injected.get("stall") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.injected.get("stall"), "the backup never reached its second part"
        proc.send_signal(signum)
        if signum != signal.SIGKILL:
            proxy.clear()  # the abort must reach S3
        out, err = proc.communicate(timeout=60)
    return proc.returncode, out.decode(), err.decode()


def multipart_uploads(aws, dest):
    bucket = dest[len("s3://"):].split("/", 1)[0]
    return boto3.client("s3", endpoint_url=aws.s3_url).list_multipart_uploads(Bucket=bucket).get("Uploads", [])


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_keep_a_resumable_upload(zfs_dataset, destination, env, aws, signum):  # noqa: F811
    """Since issue 14 a stopped backup keeps what it stored, for the next run to continue (before,
    as Ctrl-C, it aborted the upload): nothing is recorded as complete, one line says so."""
    big_dataset(zfs_dataset)
    code, out, err = backup_stalled_at_part_2(env, zfs_dataset, aws, signum)
    assert code == 128 + signum, err
    assert err.count("\n") == 1 and f"stopped by {signal.Signals(signum).name}" in err and "Traceback" not in err
    assert "nothing half-done is recorded" in err and "are kept" in err
    assert len(multipart_uploads(aws, env["dest"])) == 1
    with Catalog(env["catalog"]) as cat:
        assert cat.archives(env["dest"]) == [] and len(cat.uploads(env["dest"])) == 1


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_a_killed_backup_is_shown_and_collectable(zfs_dataset, destination, env, aws):  # noqa: F811
    big_dataset(zfs_dataset)
    code, _, _ = backup_stalled_at_part_2(env, zfs_dataset, aws, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert len(multipart_uploads(aws, env["dest"])) == 1  # billed until someone aborts it
    listing = zg("ls", env["dest"], env=env["env"]).stdout.decode()
    assert "incomplete upload" in listing and "zg-backup" in listing and "zg-rm --incomplete" in listing
    assert "resumable" in listing  # the next zg-backup continues it (tests/test_resume_zfs.py)
    assert "zg-upload --resume" not in listing  # that cannot apply to a zg-backup pipeline
    remote = zg("ls", env["dest"], "--remote", env=env["env"]).stdout.decode()
    assert "incomplete upload" in remote
    p = zg("rm", "--incomplete", env["dest"], "--older-than", "1h", env=env["env"])
    assert p.returncode == 0 and "0 incomplete uploads aborted, 1 kept" in p.stdout.decode(), p.stdout  # too young
    assert len(multipart_uploads(aws, env["dest"])) == 1
    p = zg("rm", "--incomplete", env["dest"], env=env["env"])
    assert p.returncode == 0 and "aborted" in p.stdout.decode(), p.stderr.decode()
    assert multipart_uploads(aws, env["dest"]) == []
    with Catalog(env["catalog"]) as cat:
        assert cat.uploads(env["dest"]) == []
    assert "incomplete" not in zg("ls", env["dest"], env=env["env"]).stdout.decode()
    assert not os.listdir(os.path.join(os.path.dirname(env["catalog"]), "resume"))  # its journal is gone too


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_a_failed_catalog_copy_is_a_warning_and_is_retried(zfs_dataset, destination, env, aws, tmp_path):  # noqa: F811
    (zfs_dataset.path / "f").write_text("f")
    config = tmp_path / "config.toml"  # few attempts: the copy fails on every one of them
    config.write_text(f'[destinations.offsite]\nurl = "{env["dest"]}"\nhost = ""\nmax_attempts = 2\n')
    env["env"]["ZG_CONFIG"] = str(config)
    with FaultProxy(aws.s3_url) as proxy:
        proxy.inject("http500", count=None, when=lambda req: req.method == "PUT" and
                     req.header("x-amz-storage-class") == "STANDARD")  # the copy only
        run_env = {**env["env"], "AWS_ENDPOINT_URL_S3": proxy.url}
        p = zg("backup", zfs_dataset.name, "offsite", "--key", env["pub"], "--snapshot", "s0", env=run_env)
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert err.count("\n") == 1 and "warning: the backup is complete and recorded" in err and "tries again" in err
    assert proxy.injected["http500"] >= 1
    with Catalog(env["catalog"]) as cat:
        assert len(cat.archives(env["dest"])) == 1 and cat.copies(env["dest"]) == []
    # nothing new to back up, but the copy is due: uploaded now
    p = zg("backup", zfs_dataset.name, "offsite", "--key", env["pub"], env=env["env"])
    assert p.returncode == 0 and "up to date" in p.stdout.decode(), p.stderr.decode()
    with Catalog(env["catalog"]) as cat:
        assert len(cat.copies(env["dest"])) == 1


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_an_endpoint_that_refuses_fails_in_seconds(zfs_dataset, destination, env):  # noqa: F811
    import socket
    (zfs_dataset.path / "f").write_text("f")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_env = {**os.environ, **env["env"], "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}"}
    run_env.pop("ZG_DEBUG", None)
    p = zg("upload", env["dest"], "--raw", input=b"x" * 1000, env=run_env)
    err = p.stderr.decode()
    assert p.returncode == 10 and err.count("\n") == 1 and "Could not connect" in err and "is the endpoint" in err
    # on a terminal, each retry says so: 3 attempts in all (botocore alone made 8, and each part 4 x 8)
    pipeline = f"head -c 1000 /dev/zero | {sys.executable} {BIN / 'zg-upload'} {env['dest']} --raw"
    tty = subprocess.run(["script", "-qec", pipeline, "/dev/null"], env=run_env, capture_output=True, timeout=300)
    out = tty.stdout.decode()
    assert out.count("retrying (1/2) in 1 s") == 1 and out.count("retrying (2/2) in 2 s") == 1, out
    assert "retrying (3/" not in out and "is the endpoint right" in out, out
