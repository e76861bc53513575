"""Shared fixtures: the OpenZFS test streams (vendored in tests/data), and a real ZFS pool (zfs-fuse).

Nothing here skips: a zfs-fuse that cannot start fails the tests that need it, with the reason.
"""

import itertools
import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

import zfsfuse  # tests/ is on sys.path (pytest puts the rootdir conftest's folder there);
from helpers import AWS_TEST_ENV, REPO, file_destination  # importing zfsfuse put the repository there too

from zfsfuse import AdminZfs


OPENZFS_STREAMS = REPO / "tests" / "data" / "openzfs-streams"


@pytest.fixture(scope="session")
def openzfs_streams() -> Path:
    """The real OpenZFS send streams (bz2) and reference dumps, vendored with their CDDL notice
    (see PROVENANCE.md and VENDORED.md there)."""
    return OPENZFS_STREAMS


@pytest.fixture(scope="session")
def zfs_pool():
    """Name of a fresh pool on a sparse file; starts zfs-fuse if needed, stops it if it did."""
    try:
        with zfsfuse.running_pool() as pool:
            yield pool.name
    except zfsfuse.HarnessError as err:
        pytest.fail(f"real ZFS unavailable: {err}", pytrace=False)


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path  # where it is mounted


_counter = itertools.count(1)


def _hold_tags(tmp_path):
    """Every tag zg-backup may have used in a test: one per destination of the catalogs it made
    (zfs-fuse cannot list a snapshot's tags), and the old single tag."""
    from zfsglacier.services.backup import LEGACY_HOLD_TAG, hold_tag
    from zfsglacier.catalog.db import Catalog
    tags = {LEGACY_HOLD_TAG}
    for db in tmp_path.rglob("*.db"):
        try:
            with Catalog(str(db)) as cat:
                tags |= {hold_tag(a.dest) for a in cat.archives(include_deleted=True)}
        except Exception:  # a catalog a test damaged on purpose
            continue
    return tags


@pytest.fixture
def zfs_dataset(zfs_pool, tmp_path):
    """A fresh, mounted filesystem under the test pool, destroyed (with its children) after."""
    zfs = AdminZfs()
    name = f"{zfs_pool}/t{next(_counter)}"
    zfs.create(name)
    yield Dataset(name, Path(zfs.mountpoint(name)))
    if zfs.exists(name):
        tags = None
        for child in zfs.list_datasets(name, recursive=True):
            for snap, refs in zfs.userrefs_all(child).items():
                if refs:  # zg-backup holds the next incremental's base, one hold per destination
                    tags = tags or _hold_tags(tmp_path)
                    for tag in tags:
                        zfs.release(tag, snap, missing_ok=True)
        zfs.destroy(name, recursive=True)


# --- Amazon stand-ins: moto (S3) and the strict vault stand-in, on 127.0.0.1 ---------------------

@pytest.fixture(scope="session")
def rgw():
    """Ceph's radosgw, a second and real S3 implementation, on 127.0.0.1 for the whole session
    (tests/servers/ceph_rgw.py; ~15 s to start).  Destinations reach it with ``endpoint=rgw.url``
    and the test credentials."""
    from tests.servers.ceph_rgw import ACCESS_KEY, CephRgw, RgwUnavailable

    assert AWS_TEST_ENV["AWS_ACCESS_KEY_ID"] == ACCESS_KEY
    server = CephRgw()
    try:
        server.start()
    except RgwUnavailable as err:
        pytest.fail(f"Ceph RGW unavailable: {err}", pytrace=False)
    yield server
    server.stop()


@dataclass
class AwsServers:
    """Endpoints of the test servers; ``env`` is what a zg-* subprocess needs to reach them."""

    s3_url: str
    vault_url: str
    vault: object  # the GlacierStandIn, for its test hooks

    @property
    def env(self):
        return dict(AWS_TEST_ENV, AWS_ENDPOINT_URL_S3=self.s3_url, AWS_ENDPOINT_URL_GLACIER=self.vault_url,
                    ZG_POLL_SECONDS="0.1")

    def set_s3_restore_steps(self, reads):
        """Make S3 restores stay 'in progress' for ``reads`` status reads (0: immediate)."""
        transition = {"progression": "immediate"} if reads == 0 else {"progression": "manual", "times": reads}
        body = json.dumps({"model_name": "s3::keyrestore", "transition": transition}).encode()
        req = urllib.request.Request(f"{self.s3_url}/moto-api/state-manager/set-transition", data=body,
                                     method="POST")
        urllib.request.urlopen(req, timeout=10).read()


@pytest.fixture(scope="session")
def aws():
    """moto (S3) and the vault stand-in, both in-process on 127.0.0.1, for the whole session.

    The variables also go into this process's environment (boto3 in the tests reads them)."""
    from moto.server import ThreadedMotoServer
    from tests.servers.glacier_vault import GlacierStandIn

    saved = {k: os.environ.get(k) for k in list(AWS_TEST_ENV) + ["AWS_ENDPOINT_URL_S3",
                                                                   "AWS_ENDPOINT_URL_GLACIER", "AWS_PROFILE"]}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(AWS_TEST_ENV)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    vault = GlacierStandIn()
    servers = AwsServers(f"http://{host}:{port}", vault.start(), vault)
    os.environ.update(AWS_ENDPOINT_URL_S3=servers.s3_url, AWS_ENDPOINT_URL_GLACIER=servers.vault_url)
    try:
        yield servers
    finally:
        vault.stop()
        moto.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_dest_names = itertools.count(1)


@pytest.fixture
def destination(request, tmp_path):
    """(destination URL, environment for subprocesses) of the kind in request.param: file, s3 (moto),
    rgw (S3 on Ceph's radosgw, its endpoint in the subprocesses' environment), vault."""
    kind = request.param
    n = next(_dest_names)
    env = {"ZG_CATALOG": str(tmp_path / "catalog.db"), "ZG_POLL_SECONDS": "0.1"}
    if kind == "file":
        return file_destination(tmp_path / "store"), env
    servers = request.getfixturevalue("aws")
    env.update(servers.env)
    import boto3
    if kind == "rgw":
        rgw = request.getfixturevalue("rgw")
        bucket = f"zg-dest-{n}"
        boto3.client("s3", endpoint_url=rgw.url).create_bucket(Bucket=bucket)
        env["AWS_ENDPOINT_URL_S3"] = rgw.url
        return f"s3://{bucket}/backups", env
    if kind == "s3":
        bucket = f"zg-dest-{n}"
        boto3.client("s3", endpoint_url=servers.s3_url).create_bucket(Bucket=bucket)
        return f"s3://{bucket}/backups", env
    vault = f"zg-dest-{n}"
    boto3.client("glacier", endpoint_url=servers.vault_url).create_vault(vaultName=vault)
    return f"glacier://{vault}", env
