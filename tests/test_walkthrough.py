"""README's "First run", line by line and in order, as a new administrator runs it: a fresh home
directory (no key, no config, no catalog), zfs-fuse for ZFS, the sample's `usb` destination on a
directory here and its `offsite` one on moto.  The only edits are the ones the README asks for
(your disk, your bucket's endpoint) and the names of this machine's dataset and snapshot."""

import json
import os
import re
import shlex
import subprocess

import boto3
import pytest

from tests.helpers import AWS_TEST_ENV, BIN, REPO, mixed_data
from zfsfuse import AdminZfs

pytestmark = pytest.mark.zfs


def first_run_lines():
    section = (REPO / "README.md").read_text().split("\n## First run\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"\n```\n(.*?)\n```\n", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_first_run_from_nothing_to_a_restore(zfs_dataset, aws, tmp_path):
    home, disk = tmp_path / "home", tmp_path / "disk"
    home.mkdir()
    disk.mkdir()  # the external disk, mounted
    (zfs_dataset.path / "docs").mkdir()
    (zfs_dataset.path / "docs" / "report.txt").write_bytes(mixed_data(300_000, seed=5))
    (zfs_dataset.path / "db.bin").write_bytes(mixed_data(2_000_000, seed=6))
    boto3.client("s3", endpoint_url=aws.s3_url).create_bucket(Bucket="my-backup-bucket")
    aws_config = tmp_path / "aws-config"  # `aws configure --profile backup` / `--profile ceph` did this
    aws_config.write_text("".join(f"[profile {p}]\naws_access_key_id = {AWS_TEST_ENV['AWS_ACCESS_KEY_ID']}\n"
                                  f"aws_secret_access_key = {AWS_TEST_ENV['AWS_SECRET_ACCESS_KEY']}\n"
                                  f"region = us-east-1\n" for p in ("backup", "ceph")))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ZG_", "AWS_", "XDG_"))}
    env.update(HOME=str(home), PATH=f"{BIN}:{env['PATH']}", AWS_CONFIG_FILE=str(aws_config),
               AWS_SHARED_CREDENTIALS_FILE=os.devnull, ZG_POLL_SECONDS="0.1")
    aws.set_s3_restore_steps(0)
    config = home / ".config" / "zfsglacier" / "config.toml"
    target = f"{zfs_dataset.name}-restored"
    lines = first_run_lines()
    assert lines[0].startswith("zg-keygen") and lines[-1].startswith("zg-restore"), lines
    try:
        for line in lines:
            if "SNAPSHOT" in line:  # one that zg-ls shows
                listed = json.loads(run(f"zg-ls usb {zfs_dataset.name} --json", env).stdout)
                line = line.replace("SNAPSHOT", listed["archives"][0]["name"].split("@", 1)[1])
            line = line.replace("tank/db", zfs_dataset.name)
            run(line, env)
            if line.startswith("zg-config sample"):  # "edit it to your disks and buckets"
                text = config.read_text()
                assert "file:///mnt/backup/zfs" in text and 'url = "s3://my-backup-bucket/zfs"' in text
                config.write_text(text.replace("file:///mnt/backup/zfs", f"file://{disk}/zfs").replace(
                    'url = "s3://my-backup-bucket/zfs"', f'url = "s3://my-backup-bucket/zfs"\nendpoint = "{aws.s3_url}"')
                    .replace('"tank/db"', f'"{zfs_dataset.name}"'))
        zfs = AdminZfs()
        restored = zfs.mountpoint(target)
        for rel in ("docs/report.txt", "db.bin"):
            assert (zfs_dataset.path / rel).read_bytes() == open(os.path.join(restored, rel), "rb").read()
        assert (home / ".local" / "share" / "zfsglacier" / "catalog.db").exists()  # the default catalog
        assert oct((home / ".zg").stat().st_mode & 0o777) == "0o700"
        s3 = boto3.client("s3", endpoint_url=aws.s3_url)
        stored = s3.list_objects_v2(Bucket="my-backup-bucket").get("Contents", [])
        classes = sorted(o["StorageClass"] for o in stored)  # the archive, and the catalog's copy (kept hot)
        assert classes == ["DEEP_ARCHIVE", "STANDARD"], classes
    finally:
        if AdminZfs().exists(target):
            AdminZfs().destroy(target, recursive=True)


def run(line, env):
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", line], capture_output=True, env=env, cwd=env["HOME"])
    assert p.returncode == 0, f"README line {line!r} exited {p.returncode}: {p.stderr.decode()}"
    assert b"Traceback" not in p.stderr
    return p


def test_the_lines_are_the_readme_s():
    """The test above reads README itself: a line added there is run, a line dropped is not."""
    lines = first_run_lines()
    assert [shlex.split(line)[0] for line in lines] == [
        "zg-keygen", "zg-config", "zg-config", "zg-init", "zg-backup", "zg-backup", "zg-ls", "zg-verify",
        "zg-status", "zg-restore"]
