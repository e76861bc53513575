"""The filters on real ZFS (zfs-fuse): send | encrypt | decrypt | receive, full, incremental, damaged."""

import hashlib
import os
import subprocess
import sys

import pytest

from zfsglacier import errors
from zfsfuse import AdminZfs
from tests.helpers import BIN, mixed_data, zg

pytestmark = pytest.mark.zfs
ZG = f"{sys.executable} {BIN}"


def sh(script, **kw):
    return subprocess.run(["bash", "-c", "set -o pipefail; " + script], capture_output=True, **kw)


def tree_digest(root):
    """Relative path -> sha256 of every regular file under root."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def fill(path, seed, n=4):
    for i in range(n):
        (path / f"file{seed}-{i}.dat").write_bytes(mixed_data(300_000 + 1000 * i, seed=seed * 10 + i))
    (path / "sub").mkdir(exist_ok=True)
    (path / "sub" / f"notes{seed}.txt").write_text(f"generation {seed}\n" * 1000)


@pytest.fixture
def keys(tmp_path):
    key = tmp_path / "offsite.key"
    pub = tmp_path / "offsite.pub"
    pub.write_text(zg("keygen", "-o", key, check=True).stdout.decode())
    return key, pub


def test_full_and_incremental_round_trip(zfs_dataset, zfs_pool, keys):
    key, pub = keys
    zfs = AdminZfs()
    ds = zfs_dataset.name
    target = f"{zfs_pool}/restored-{os.getpid()}"
    fill(zfs_dataset.path, 1)
    a = zfs.snapshot(f"{ds}@a")
    before_a = tree_digest(zfs_dataset.path)
    fill(zfs_dataset.path, 2)
    (zfs_dataset.path / "file1-0.dat").unlink()
    b = zfs.snapshot(f"{ds}@b")
    after_b = tree_digest(zfs_dataset.path)
    try:
        p = sh(f"zfs send {ds}@a | {ZG}/zg-encrypt {pub} > full.zg && {ZG}/zg-inspect --json < full.zg && "
               f"{ZG}/zg-decrypt {key} < full.zg | zfs receive {target}", cwd=keys[0].parent)
        assert p.returncode == 0, p.stderr
        assert f'"toguid": {a.guid}' in p.stdout.decode() and '"incremental": false' in p.stdout.decode()
        assert tree_digest(zfs.mountpoint(target)) == before_a
        p = sh(f"zfs send -i {ds}@a {ds}@b | {ZG}/zg-encrypt {pub} > incr.zg && {ZG}/zg-inspect --json < incr.zg"
               f" && {ZG}/zg-decrypt {key} < incr.zg | zfs receive -F {target}", cwd=keys[0].parent)
        assert p.returncode == 0, p.stderr
        out = p.stdout.decode()
        assert f'"toguid": {b.guid}' in out and f'"fromguid": {a.guid}' in out
        zfs.unmount(target)  # zfs-fuse shows stale pages of files read before an incremental receive
        zfs.mount(target)
        assert tree_digest(zfs.mountpoint(target)) == after_b
        assert zfs.guid(f"{target}@b") == b.guid
        private = zg("inspect", "--key", key, input=(keys[0].parent / "incr.zg").read_bytes(), check=True)
        assert f"snapshot: {ds}@b" in private.stdout.decode()
    finally:
        if zfs.exists(target):
            zfs.destroy(target, recursive=True)


def test_damaged_archive_fails_the_pipeline_and_leaves_no_dataset(zfs_dataset, zfs_pool, keys, tmp_path):
    key, pub = keys
    zfs = AdminZfs()
    fill(zfs_dataset.path, 3)
    zfs.snapshot(f"{zfs_dataset.name}@s")
    blob = bytearray(sh(f"zfs send {zfs_dataset.name}@s | {ZG}/zg-encrypt {pub}").stdout)
    assert len(blob) > 100_000
    for name, damaged in (("flip", blob[:len(blob) // 2] + bytes([blob[len(blob) // 2] ^ 4]) + blob[len(blob) // 2 + 1:]),
                          ("cut", blob[: len(blob) * 2 // 3])):
        target = f"{zfs_pool}/never-{name}"
        (tmp_path / "bad.zg").write_bytes(bytes(damaged))
        p = sh(f"{ZG}/zg-decrypt {key} < {tmp_path}/bad.zg | zfs receive {target}; "
               f"s=(${{PIPESTATUS[@]}}); echo \"${{s[*]}}\" >&2; exit ${{s[0]}}")
        assert p.returncode == errors.CorruptArchiveError.exit_code, p.stderr  # pipefail: the pipeline fails
        assert p.stderr.decode().splitlines()[-1].split()[1] != "0"  # and zfs receive refused the stream
        assert not zfs.exists(target)


def test_compound_replication_stream(zfs_dataset, zfs_pool, keys):
    key, pub = keys
    zfs = AdminZfs()
    child = f"{zfs_dataset.name}/child"
    zfs.create(child)
    fill(zfs_dataset.path, 4, n=1)
    zfs.snapshot(f"{zfs_dataset.name}@r", recursive=True)
    target = f"{zfs_pool}/replica-{os.getpid()}"
    try:
        p = sh(f"zfs send -R {zfs_dataset.name}@r | {ZG}/zg-encrypt {key} | tee r.zg | {ZG}/zg-decrypt {key} "
               f"| zfs receive {target}", cwd=key.parent)
        assert p.returncode == 0, p.stderr
        assert zfs.exists(f"{target}/child@r")
        info = zg("inspect", input=(key.parent / "r.zg").read_bytes(), check=True).stdout.decode()
        assert "compound" in info
    finally:
        if zfs.exists(target):
            zfs.destroy(target, recursive=True)


def test_2013_recipe_archive_restores(zfs_dataset, zfs_pool, tmp_path):
    """An archive made with the real 2013 commands goes back into ZFS through zg-decrypt."""
    zfs = AdminZfs()
    fill(zfs_dataset.path, 5, n=2)
    zfs.snapshot(f"{zfs_dataset.name}@old")
    want = tree_digest(zfs_dataset.path)
    keyfile = tmp_path / "mysql.key"
    keyfile.write_bytes(b"2013 password line\n" + os.urandom(300))
    keyfile.chmod(0o600)
    target = f"{zfs_pool}/from2013-{os.getpid()}"
    p = sh(f"zfs send {zfs_dataset.name}@old | pbzip2 -9 | openssl aes-256-cbc -a -salt -md md5 "
           f"-pass file:{keyfile} | pbzip2 -9 > {tmp_path}/old.bz2.aes.bz2")
    assert p.returncode == 0, p.stderr
    try:
        p = sh(f"{ZG}/zg-decrypt {keyfile} < {tmp_path}/old.bz2.aes.bz2 | zfs receive {target}")
        assert p.returncode == 0, p.stderr
        assert tree_digest(zfs.mountpoint(target)) == want
    finally:
        if zfs.exists(target):
            zfs.destroy(target, recursive=True)


@pytest.mark.parametrize("destination", ["file", "s3", "rgw", "vault"], indirect=True)
def test_unix_pipeline_through_each_store(zfs_dataset, zfs_pool, keys, destination):
    """zfs send | zg-encrypt | zg-upload, then zg-fetch | zg-decrypt | zfs receive, for real."""
    key, pub = keys
    dest, env = destination
    env = dict(os.environ, **env)
    zfs = AdminZfs()
    fill(zfs_dataset.path, 6, n=3)
    zfs.snapshot(f"{zfs_dataset.name}@piped")
    want = tree_digest(zfs_dataset.path)
    p = sh(f"zfs send {zfs_dataset.name}@piped | {ZG}/zg-encrypt {pub} | {ZG}/zg-upload {dest}", env=env)
    assert p.returncode == 0, p.stderr
    archive_id = p.stdout.decode().strip()
    target = f"{zfs_pool}/piped-{archive_id[-8:]}"
    try:
        p = sh(f"{ZG}/zg-fetch {dest} {archive_id} | {ZG}/zg-decrypt {key} | zfs receive {target}", env=env)
        assert p.returncode == 0, p.stderr
        assert tree_digest(zfs.mountpoint(target)) == want
    finally:
        if zfs.exists(target):
            zfs.destroy(target, recursive=True)
