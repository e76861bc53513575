"""Issue 9 on real ZFS and moto: an interrupted zg-backup.  SIGTERM and SIGHUP clean up as Ctrl-C
does (the multipart upload aborted, nothing recorded, exit 128 + N); kill -9 leaves an upload
that zg-ls shows, with a hint that fits a zg-backup, and that `zg-rm --incomplete` frees."""

import os
import re
import signal
import subprocess
import sys
import time

import boto3
import pytest

from zfsglacier.catalog import Catalog
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
def test_sigterm_and_sighup_clean_up_like_ctrl_c(zfs_dataset, destination, env, aws, signum):  # noqa: F811
    big_dataset(zfs_dataset)
    code, out, err = backup_stalled_at_part_2(env, zfs_dataset, aws, signum)
    assert code == 128 + signum, err
    assert err.count("\n") == 1 and f"stopped by {signal.Signals(signum).name}" in err and "Traceback" not in err
    assert multipart_uploads(aws, env["dest"]) == []
    with Catalog(env["catalog"]) as cat:
        assert cat.archives(env["dest"]) == [] and cat.uploads(env["dest"]) == []


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_a_killed_backup_is_shown_and_collectable(zfs_dataset, destination, env, aws):  # noqa: F811
    big_dataset(zfs_dataset)
    code, _, _ = backup_stalled_at_part_2(env, zfs_dataset, aws, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert len(multipart_uploads(aws, env["dest"])) == 1  # billed until someone aborts it
    listing = zg("ls", env["dest"], env=env["env"]).stdout.decode()
    assert "incomplete upload" in listing and "zg-backup" in listing and "zg-rm --incomplete" in listing
    assert "zg-upload --resume" not in listing  # that cannot apply to a zg-backup pipeline
    remote = zg("ls", env["dest"], "--remote", env=env["env"]).stdout.decode()
    assert "incomplete upload" in remote
    p = zg("rm", "--incomplete", env["dest"], "--older-than", "1h", env=env["env"])
    assert p.returncode == 0 and "kept" in p.stdout.decode(), p.stderr.decode()  # too young
    assert len(multipart_uploads(aws, env["dest"])) == 1
    p = zg("rm", "--incomplete", env["dest"], env=env["env"])
    assert p.returncode == 0 and "aborted" in p.stdout.decode(), p.stderr.decode()
    assert multipart_uploads(aws, env["dest"]) == []
    with Catalog(env["catalog"]) as cat:
        assert cat.uploads(env["dest"]) == []
    assert "incomplete" not in zg("ls", env["dest"], env=env["env"]).stdout.decode()
