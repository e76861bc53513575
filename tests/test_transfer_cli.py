"""Issue 3 through the real commands: zg-upload / zg-fetch / zg-ls / zg-rm on every destination,
slow thaws, network faults (a TCP proxy on 127.0.0.1), kill -9 and --resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zfsglacier import errors
from zfsglacier.stores import open_store
from tests.helpers import BIN, assert_one_line_error, mixed_data, zg
from tests.servers.faultproxy import FaultProxy

MiB = 1 << 20
PART = {"file": MiB, "s3": 5 * MiB, "rgw": 5 * MiB, "vault": MiB}


@pytest.fixture
def setup(destination, tmp_path, request):
    """A configured destination NAME 'offsite' with small parts, keys, and an archive of ~14 MiB."""
    dest, env = destination
    kind = request.node.callspec.params["destination"]
    config = tmp_path / "config.toml"
    # host = "": the archives right under the URL, which the tests also name as it is
    config.write_text(f'[destinations.offsite]\nurl = "{dest}"\nhost = ""\npart_size = {PART[kind]}\n')
    env = dict(env, ZG_CONFIG=str(config))
    key = tmp_path / "k.key"
    zg("keygen", "-o", key, check=True)
    data = mixed_data(16 * MiB, seed=3) + os.urandom(6 * MiB)
    blob = zg("encrypt", key, "-c", "lz4", input=data, check=True).stdout
    return dict(dest=dest, kind=kind, env=env, key=key, data=data, blob=blob, tmp=tmp_path)


def up(s, *extra, input=None, code=0):
    p = zg("upload", "offsite", *extra, input=s["blob"] if input is None else input, env=s["env"])
    assert p.returncode == code, p.stderr.decode()
    return p.stdout.decode().strip() if code == 0 else p


@pytest.mark.parametrize("destination", ["file", "s3", "rgw", "vault"], indirect=True)
def test_upload_fetch_ls_rm(setup):
    s = setup
    archive_id = up(s, "--name", "tank/db@monday")
    assert archive_id and "\n" not in archive_id
    # a vault id may start with "-" (1 in 64 here; AWS's are base64url too): after "--" it is never an option
    p = zg("fetch", "offsite", "--", archive_id, env=s["env"])
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == s["blob"]
    assert zg("decrypt", s["key"], input=p.stdout, check=True).stdout == s["data"]
    out = s["tmp"] / "copy.zg"
    assert zg("fetch", "offsite", "-o", out, "--", archive_id, env=s["env"]).returncode == 0
    assert out.read_bytes() == s["blob"] and not (s["tmp"] / "copy.zg.partial").exists()
    listing = zg("ls", "offsite", env=s["env"], check=True).stdout.decode()
    assert archive_id in listing and "tank/db@monday" in listing or "monday" in listing
    if s["kind"] != "vault":  # a vault listing is an inventory job (hours at AWS)
        remote = zg("ls", "offsite", "--remote", "--json", env=s["env"], check=True).stdout.decode()
        assert archive_id in remote
    rm = zg("rm", "offsite", "--", archive_id, env=s["env"])
    assert rm.returncode == 0, rm.stderr.decode()
    if s["kind"] == "s3":  # DEEP_ARCHIVE by default: 180 days billed anyway
        assert "180 days" in rm.stderr.decode()
    if s["kind"] != "vault":  # a finished vault retrieval job may still serve a deleted archive, as at AWS
        gone = zg("fetch", "offsite", "--", archive_id, env=s["env"])
        assert_one_line_error(gone, errors.NotFoundError.exit_code)


@pytest.mark.parametrize("destination", ["file", "s3"], indirect=True)
def test_fetch_refuses_an_archive_replaced_since_upload(setup):
    """An archive replaced under the same id by other, self-consistent bytes (every range and the
    whole match the *store's* checksum) is refused by the SHA-256 recorded at upload; a fetch to a
    file leaves no file behind."""
    s = setup
    archive_id = up(s)
    other = zg("encrypt", s["key"], "-c", "lz4", input=s["data"][::-1], check=True).stdout
    other_id = up(s, input=other)
    store = open_store(s["dest"])
    if s["kind"] == "file":
        for suffix in (".zg", ".zg.json"):
            os.replace(store._path(other_id, suffix), store._path(archive_id, suffix))
        side = json.loads(open(store._path(archive_id, ".zg.json")).read())
        with open(store._path(archive_id, ".zg.json"), "w") as f:  # the store's own record made to match
            json.dump(dict(side, id=archive_id), f)
    else:
        store.client.put_object(Bucket=store.bucket, Key=store.key(archive_id), Body=other,
                                ChecksumAlgorithm="SHA256", StorageClass="STANDARD")
    assert store.read_all(archive_id) == other  # the store itself finds nothing wrong
    p = zg("fetch", "offsite", archive_id, env=s["env"])
    assert_one_line_error(p, errors.IntegrityError.exit_code, "replaced or damaged")
    out = s["tmp"] / "replaced.zg"
    p = zg("fetch", "offsite", archive_id, "-o", out, env=s["env"])
    assert_one_line_error(p, errors.IntegrityError.exit_code)
    assert not out.exists() and not (s["tmp"] / "replaced.zg.partial").exists()


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_fetch_accepts_the_same_bytes_under_a_new_store_checksum(setup):
    """An object copied in place (here: put again in one piece, as a storage-class change by copy
    may do) has another store checksum but the same bytes: zg-fetch checks the recorded SHA-256
    instead, and delivers it."""
    s = setup
    archive_id = up(s)
    store = open_store(s["dest"])
    before = store.stat(archive_id).checksum
    store.client.put_object(Bucket=store.bucket, Key=store.key(archive_id), Body=s["blob"],
                            ChecksumAlgorithm="SHA256", StorageClass="STANDARD")
    assert store.stat(archive_id).checksum != before
    p = zg("fetch", "offsite", archive_id, env=s["env"])
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == s["blob"]


@pytest.mark.parametrize("destination", ["file"], indirect=True)
def test_upload_refuses_what_it_cannot_store_completely(setup):
    s = setup
    assert_one_line_error(up(s, input=b"", code=errors.NotAnArchiveError.exit_code),
                          errors.NotAnArchiveError.exit_code, "no input")
    assert_one_line_error(up(s, input=b"plain bytes", code=errors.NotAnArchiveError.exit_code),
                          errors.NotAnArchiveError.exit_code, "--raw")
    cut = up(s, input=s["blob"][:-100], code=errors.CorruptArchiveError.exit_code)
    assert_one_line_error(cut, errors.CorruptArchiveError.exit_code, "nothing was stored")
    assert list((s["tmp"] / "store").glob("*.zg")) == []  # and no partial archive is visible
    assert up(s, "--raw", input=b"plain bytes")  # explicitly allowed


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_slow_thaw_no_wait_then_wait(setup, aws):
    s = setup
    archive_id = up(s)  # DEEP_ARCHIVE
    aws.set_s3_restore_steps(6)
    try:
        p = zg("fetch", "offsite", archive_id, "--no-wait", "--tier", "Bulk", env=s["env"])
        assert_one_line_error(p, errors.RestorePendingError.exit_code, "again later")
        assert p.stdout == b""
        thaws = zg("ls", "offsite", env=s["env"], check=True).stdout.decode()
        assert f"thaw of {archive_id} (Bulk)" in thaws
        p = zg("fetch", "offsite", archive_id, "--tier", "Bulk", env=s["env"])  # waits, polling
        assert p.returncode == 0, p.stderr.decode()
        assert p.stdout == s["blob"]
    finally:
        aws.set_s3_restore_steps(0)
    expedited = zg("fetch", "offsite", up(s), "--tier", "Expedited", env=s["env"])
    assert_one_line_error(expedited, errors.UsageError.exit_code, "Expedited")


@pytest.mark.parametrize("destination", ["s3", "vault"], indirect=True)
def test_transfers_survive_network_faults(setup, aws):
    s = setup
    upstream = aws.s3_url if s["kind"] == "s3" else aws.vault_url
    with FaultProxy(upstream, flavor="s3" if s["kind"] == "s3" else "json", stall_seconds=4) as proxy:
        var = "AWS_ENDPOINT_URL_S3" if s["kind"] == "s3" else "AWS_ENDPOINT_URL_GLACIER"
        env = dict(s["env"], **{var: proxy.start() if not getattr(proxy, "url", None) else proxy.url})
        config = Path(s["env"]["ZG_CONFIG"])
        config.write_text(config.read_text() + "read_timeout = 2\n")  # a stall is retried after 2 s
        for kind in ("reset", "http500", "http503", "drop", "stall"):
            proxy.inject(kind, when=r"^(PUT|POST) ")
        p = zg("upload", "offsite", input=s["blob"], env=env)
        assert p.returncode == 0, p.stderr.decode()
        archive_id = p.stdout.decode().strip()
        assert sum(proxy.injected.values()) == 5, proxy.injected
        for kind in ("reset", "http500", "http503", "truncate"):
            proxy.inject(kind, when=r"^GET ")
        p = zg("fetch", "offsite", archive_id, env=env)
        assert p.returncode == 0, p.stderr.decode()
        assert p.stdout == s["blob"]
        assert sum(proxy.injected.values()) == 9, proxy.injected


@pytest.mark.parametrize("destination", ["file", "s3", "vault"], indirect=True)
def test_kill_9_then_resume_sends_only_missing_parts(setup, aws):
    s = setup
    src = s["tmp"] / "archive.zg"
    src.write_bytes(s["blob"])
    store = open_store(s["dest"], part_size=PART[s["kind"]])
    # a slow reader: the archive arrives through a pipe 1 MiB at a time, so we can kill mid-way
    feeder = subprocess.Popen(["bash", "-c", f"for i in $(seq 0 40); do dd if={src} bs=1M skip=$i count=1 "
                                             f"status=none; sleep 0.15; done"], stdout=subprocess.PIPE)
    upload = subprocess.Popen([sys.executable, str(BIN / "zg-upload"), "offsite"], stdin=feeder.stdout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, **s["env"]))
    feeder.stdout.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        incomplete = store.incomplete_uploads()
        if incomplete and incomplete[0].parts >= 2:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the upload never had 2 parts stored")
    upload.send_signal(signal.SIGKILL)
    upload.wait()
    feeder.kill()
    feeder.wait()
    stored_before = incomplete[0].parts
    assert store.incomplete_uploads(), "a killed upload must stay resumable"
    assert "incomplete upload" in zg("ls", "offsite", env=s["env"], check=True).stdout.decode()
    assert list(store.list()) == [] if s["kind"] != "vault" else True  # never listed as complete
    p = zg("upload", "offsite", "--resume", input=s["blob"], env=s["env"])
    assert p.returncode == 0, p.stderr.decode()
    archive_id = p.stdout.decode().strip()
    assert store.incomplete_uploads() == []
    listing = zg("ls", "offsite", env=s["env"], check=True).stdout.decode()
    assert "incomplete upload" not in listing and archive_id in listing
    assert zg("fetch", "offsite", archive_id, env=s["env"], check=True).stdout == s["blob"]
    assert stored_before >= 2


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_fetch_to_file_resumes_after_kill(setup, aws):
    s = setup
    archive_id = up(s)
    out = s["tmp"] / "restore.zg"
    partial = s["tmp"] / "restore.zg.partial"
    partial.write_bytes(s["blob"][:7 * MiB + 123])  # what a killed fetch leaves behind
    p = zg("fetch", "offsite", archive_id, "-o", out, "--resume", env=s["env"])
    assert p.returncode == 0, p.stderr.decode()
    assert out.read_bytes() == s["blob"]
    # a partial file that is not a prefix of the archive is caught, not silently continued
    partial.write_bytes(b"x" * (6 * MiB))
    p = zg("fetch", "offsite", archive_id, "-o", out, "--resume", env=s["env"])
    assert_one_line_error(p, errors.IntegrityError.exit_code)


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_missing_bucket_fails_at_once(setup):
    s = setup
    p = zg("upload", s["dest"].replace("zg-dest", "no-such-bucket"), input=s["blob"], env=s["env"])
    assert_one_line_error(p, errors.StoreError.exit_code)


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_costs_are_those_of_the_class_each_archive_is_in(destination, tmp_path):
    """An archive stored in STANDARD (a destination configured so) is priced as STANDARD by zg-ls
    through a destination whose class is DEEP_ARCHIVE: the class is the archive's, not the
    destination's (it used to be priced, and timed, as DEEP_ARCHIVE)."""
    from zfsglacier.services import cost

    dest, env = destination
    config = tmp_path / "config.toml"
    config.write_text(f'[destinations.hot]\nurl = "{dest}"\nstorage_class = "STANDARD"\n'
                      f'[destinations.cold]\nurl = "{dest}"\n')
    env = dict(env, ZG_CONFIG=str(config))
    blob = os.urandom(3 * MiB)
    assert zg("upload", "--raw", "hot", input=blob, env=env).returncode == 0
    listing = zg("ls", "cold", env=env).stdout.decode()
    want = cost.dollars(cost.monthly_storage(len(blob), "STANDARD", 1))
    assert f"about {want}/month (STANDARD," in listing.splitlines()[0], listing
    assert zg("upload", "--raw", "cold", input=blob, env=env).returncode == 0
    listing = zg("ls", "cold", env=env).stdout.decode()
    both = cost.monthly_storage(len(blob), "STANDARD", 1) + cost.monthly_storage(len(blob), "DEEP_ARCHIVE", 1)
    assert f"about {cost.dollars(both)}/month (DEEP_ARCHIVE 1, STANDARD 1," in listing.splitlines()[0], listing
