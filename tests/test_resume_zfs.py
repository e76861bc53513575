"""Issue 14 on real ZFS: a zg-backup killed -9, stopped, or cut off from its store part way
through a multi-part archive continues it on the next run, sending only what the store does not
hold (no temporary file of the stream), on file://, S3 (moto) and the vault stand-in.  What must
refuse, and start the archive anew under a new key: another snapshot under the same name, another
compression level, a journal that was tampered with or damaged.  SPEC section 11 has the argument."""

import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time

import boto3
import pytest

from tests.helpers import BIN, mounted, zg
from tests.servers.faultproxy import FaultProxy
from tests.test_chains_zfs import env  # noqa: F401 (a fixture)
from tests.test_filters_zfs import tree_digest
from zfsglacier.catalog.db import Catalog
from zfsglacier.services.resume import journal_path

pytestmark = pytest.mark.zfs

MiB = 1 << 20
PART_SIZE = {"s3": "5M", "vault": "1M", "file": "1M"}
_targets = itertools.count(1)
LOST_STORE_EXIT = 10  # StoreError: README's exit codes
PART_REQUEST = {"s3": r"^PUT \S*partNumber=", "vault": r"^PUT \S*/multipart-uploads/"}


def named(env, tmp_path, kind, *, jobs=2):
    """A config naming the test's destination ``offsite`` with small parts, and its environment."""
    config = tmp_path / "config.toml"
    config.write_text(f'[destinations.offsite]\nurl = "{env["dest"]}"\nhost = ""\npart_size = "{PART_SIZE[kind]}"\n'
                      f'jobs = {jobs}\n' + ("max_attempts = 2\n" if kind != "file" else ""))
    return {**os.environ, **env["env"], "ZG_CONFIG": str(config)}


def fill(ds, mib=12):
    """Incompressible data: the archive takes several parts."""
    (ds.path / "random.bin").write_bytes(os.urandom(mib * MiB))


def backup(run_env, ds, env, *args):  # noqa: F811
    return subprocess.run([sys.executable, str(BIN / "zg-backup"), ds.name, "offsite", "--key", str(env["pub"]),
                           *args], env=run_env, capture_output=True, text=True, timeout=300)


def endpoint_variable(kind):
    return "AWS_ENDPOINT_URL_S3" if kind == "s3" else "AWS_ENDPOINT_URL_GLACIER"


def from_nth_part(kind, nth):
    """A FaultProxy ``when``: true for the ``nth`` part request and every one after it."""
    seen = []

    def when(req):
        if re.match(PART_REQUEST[kind], req.request_line):
            seen.append(req.request_line)
            return len(seen) >= nth
        return False
    return when


def killed_at_part(run_env, ds, env, kind, nth, *args, signum=signal.SIGKILL):  # noqa: F811
    """zg-backup through a proxy that stalls the ``nth`` part request; ``signum`` then."""
    with FaultProxy(run_env[endpoint_variable(kind)], flavor="s3" if kind == "s3" else "json",
                    stall_seconds=60) as proxy:
        proxy.inject("stall", count=None, when=from_nth_part(kind, nth))
        via = {**run_env, endpoint_variable(kind): proxy.url}
        proc = subprocess.Popen([sys.executable, str(BIN / "zg-backup"), ds.name, "offsite", "--key",
                                 str(env["pub"]), *args], env=via, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 120  # a safety net, not a timing assertion
        while not proxy.injected.get("stall") and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert proxy.injected.get("stall"), "the backup never reached that part"
        time.sleep(0.3)  # the other parts in flight: some land, some do not
        proc.send_signal(signum)
        if signum != signal.SIGKILL:
            proxy.clear()
        out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def incomplete(env, kind):
    if kind == "s3":
        bucket = env["dest"][len("s3://"):].split("/", 1)[0]
        return boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    vault = env["dest"][len("glacier://"):]
    return boto3.client("glacier").list_multipart_uploads(vaultName=vault).get("UploadsList", [])


def restores(run_env, env, ds, zfs_pool, snap, want):  # noqa: F811
    target = f"{zfs_pool}/back{next(_targets)}"
    p = subprocess.run([sys.executable, str(BIN / "zg-restore"), "offsite", f"{ds.name}@{snap}", target, "--key",
                        str(env["key"])], env=run_env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    mnt = subprocess.run(["zfs", "get", "-H", "-o", "value", "mountpoint", target], capture_output=True,
                         text=True).stdout.strip()
    assert tree_digest(mnt) == want


def archives(env):
    with Catalog(env["catalog"]) as cat:
        return cat.archives(env["dest"])  # the catalog knows a destination by its URL


def journal_of(env, ds):
    return journal_path(env["catalog"], env["dest"], ds.name)


def interrupted(destination, env, zfs_dataset, tmp_path, kind, nth=2):  # noqa: F811
    """A full of @s0 killed -9 at its ``nth`` part: (environment, data digest)."""
    run_env = named(env, tmp_path, kind)
    fill(zfs_dataset)
    subprocess.run(["zfs", "snapshot", f"{zfs_dataset.name}@s0"], check=True)
    want = tree_digest(zfs_dataset.path)
    code, _, err = killed_at_part(run_env, zfs_dataset, env, kind, nth)
    assert code == -signal.SIGKILL, err
    assert len(incomplete(env, kind)) == 1 and archives(env) == []
    assert os.path.exists(journal_of(env, zfs_dataset))
    return run_env, want


@pytest.mark.parametrize("destination", ["s3", "vault"], indirect=True)
@pytest.mark.parametrize("nth", [2, 3])
def test_killed_backup_resumes_sending_only_what_the_store_lacks(zfs_dataset, zfs_pool, destination, env, tmp_path,
                                                               aws, nth):  # noqa: F811
    kind = "s3" if env["dest"].startswith("s3://") else "vault"
    nth = nth if kind == "s3" else 3 * nth  # vault parts are 1 MiB: kill later in the stream
    run_env, want = interrupted(destination, env, zfs_dataset, tmp_path, kind, nth)
    listing = zg("ls", "offsite", env=run_env).stdout.decode()
    assert "resumable" in listing and f"{zfs_dataset.name}@s0" in listing, listing
    with Catalog(env["catalog"]) as cat:
        [up] = cat.uploads(env["dest"])
    ls_json = json.loads(zg("ls", "offsite", "--json", env=run_env).stdout)
    assert ls_json["incomplete_uploads"][0]["resumable"]["snapshot"] == f"{zfs_dataset.name}@s0"
    plan = backup(run_env, zfs_dataset, env, "--dry-run")
    assert plan.returncode == 0 and "first, continue the interrupted archive of" in plan.stdout, plan.stderr
    p = backup(run_env, zfs_dataset, env)
    assert p.returncode == 0, p.stderr
    kept = re.search(r"resumed: ([\d.]+ \w+) were stored already", p.stdout)
    assert kept and not kept.group(1).startswith("0 "), p.stdout
    assert incomplete(env, kind) == [] and not os.path.exists(journal_of(env, zfs_dataset))
    assert len(archives(env)) == 1
    with Catalog(env["catalog"]) as cat:
        assert cat.uploads(env["dest"]) == []
    restores(run_env, env, zfs_dataset, zfs_pool, "s0", want)


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_sigterm_keeps_a_multipart_archive_for_the_next_run(zfs_dataset, zfs_pool, destination, env, tmp_path,
                                                            aws):  # noqa: F811
    """Ctrl-C, SIGTERM (systemd stop) and a lost store keep what was sent: days of a full are not
    thrown away; the next run continues, `zg-rm --incomplete` frees."""
    run_env = named(env, tmp_path, "s3")
    fill(zfs_dataset)
    subprocess.run(["zfs", "snapshot", f"{zfs_dataset.name}@s0"], check=True)
    code, _, err = killed_at_part(run_env, zfs_dataset, env, "s3", 2, signum=signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and err.count("\n") == 1, err
    assert "stopped by SIGTERM" in err and "are kept" in err and "continues the archive" in err, err
    assert len(incomplete(env, "s3")) == 1 and archives(env) == []
    p = backup(run_env, zfs_dataset, env)
    assert p.returncode == 0 and "resumed" in p.stdout, p.stderr


@pytest.mark.parametrize("destination", ["s3", "vault"], indirect=True)
def test_a_lost_store_keeps_the_archive_and_the_next_run_resumes(zfs_dataset, zfs_pool, destination, env, tmp_path,
                                                                 aws):  # noqa: F811
    """The network goes at a part and does not come back within the run's retries (every part
    request from then on is reset): zg-backup ends with one line saying what is kept, and the next
    run, with the network back, continues the archive instead of sending it again."""
    kind = "s3" if env["dest"].startswith("s3://") else "vault"
    nth = 2 if kind == "s3" else 6
    run_env = named(env, tmp_path, kind)
    fill(zfs_dataset)
    subprocess.run(["zfs", "snapshot", f"{zfs_dataset.name}@s0"], check=True)
    want = tree_digest(zfs_dataset.path)
    variable = endpoint_variable(kind)
    with FaultProxy(run_env[variable], flavor="s3" if kind == "s3" else "json") as proxy:
        proxy.inject("reset", count=None, when=from_nth_part(kind, nth))
        p = backup({**run_env, variable: proxy.url}, zfs_dataset, env)
        assert proxy.injected.get("reset"), "the backup never reached that part"
    errors = [line for line in p.stderr.splitlines() if not line.startswith("zg-backup: warning: ")]
    assert p.returncode == LOST_STORE_EXIT and len(errors) == 1, p.stderr
    assert "are kept" in errors[0] and "continues the archive" in errors[0], p.stderr
    assert len(incomplete(env, kind)) == 1 and archives(env) == []
    assert os.path.exists(journal_of(env, zfs_dataset))
    p = backup(run_env, zfs_dataset, env)
    assert p.returncode == 0, p.stderr
    kept = re.search(r"resumed: ([\d.]+ \w+) were stored already", p.stdout)
    assert kept and not kept.group(1).startswith("0 "), p.stdout
    assert incomplete(env, kind) == [] and len(archives(env)) == 1
    restores(run_env, env, zfs_dataset, zfs_pool, "s0", want)


@pytest.mark.parametrize("destination", ["file"], indirect=True)
def test_full_destination_keeps_the_archive_and_the_next_run_resumes(zfs_dataset, zfs_pool, destination, env,
                                                                     tmp_path):  # noqa: F811
    """A file:// destination on a disk that fills up (a 6 MiB tmpfs), then grows."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    with mounted(mnt, [["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)]], "a full disk"):
        env["dest"] = f"file://{mnt}/store"
        assert zg("init", env["dest"], env=env["env"]).returncode == 0
        run_env = named(env, tmp_path, "file")
        fill(zfs_dataset)
        subprocess.run(["zfs", "snapshot", f"{zfs_dataset.name}@s0"], check=True)
        want = tree_digest(zfs_dataset.path)
        p = backup(run_env, zfs_dataset, env)
        assert p.returncode == 10 and p.stderr.count("\n") == 1, p.stderr
        assert "No space left" in p.stderr and "are kept" in p.stderr, p.stderr
        assert os.path.exists(journal_of(env, zfs_dataset)) and archives(env) == []
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        p = backup(run_env, zfs_dataset, env)
        assert p.returncode == 0 and "resumed" in p.stdout, p.stderr
        assert not [n for n in os.listdir(mnt / "store") if "partial" in n]
        restores(run_env, env, zfs_dataset, zfs_pool, "s0", want)


@pytest.mark.parametrize("destination", ["file"], indirect=True)
def test_killed_backup_to_a_directory_resumes(zfs_dataset, zfs_pool, destination, env, tmp_path):  # noqa: F811
    run_env = named(env, tmp_path, "file", jobs=1)
    fill(zfs_dataset, mib=96)
    subprocess.run(["zfs", "snapshot", f"{zfs_dataset.name}@s0"], check=True)
    want = tree_digest(zfs_dataset.path)
    store = env["dest"][len("file://"):]
    proc = subprocess.Popen([sys.executable, str(BIN / "zg-backup"), zfs_dataset.name, "offsite", "--key",
                             str(env["pub"])], env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120  # a safety net, not a timing assertion
    while time.monotonic() < deadline:
        partial = [n for n in os.listdir(store) if n.endswith(".zg.partial")]
        if partial and os.path.getsize(os.path.join(store, partial[0])) >= 8 * MiB:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.002)
    proc.kill()
    proc.communicate()
    assert archives(env) == [] and os.path.exists(journal_of(env, zfs_dataset))
    p = backup(run_env, zfs_dataset, env)
    assert p.returncode == 0, p.stderr
    kept = re.search(r"resumed: ([\d.]+) MiB were stored already", p.stdout)
    assert kept and float(kept.group(1)) >= 8, p.stdout
    restores(run_env, env, zfs_dataset, zfs_pool, "s0", want)


# ---- what must not be continued: the archive starts anew under a new key, what was sent is freed

def _fresh_after(run_env, env, ds, note, *args):  # noqa: F811
    p = backup(run_env, ds, env, *args)
    assert p.returncode == 0, p.stderr
    assert "resumed" not in p.stdout and re.search(note, p.stderr), (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    return p


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_another_snapshot_under_the_same_name_is_not_continued(zfs_dataset, zfs_pool, destination, env, tmp_path,
                                                               aws):  # noqa: F811
    run_env, _ = interrupted(destination, env, zfs_dataset, tmp_path, "s3")
    subprocess.run(["zfs", "destroy", f"{zfs_dataset.name}@s0"], check=True)
    fill(zfs_dataset)
    subprocess.run(["zfs", "snapshot", f"{zfs_dataset.name}@s0"], check=True)
    want = tree_digest(zfs_dataset.path)
    _fresh_after(run_env, env, zfs_dataset, r"not continued: the snapshot's guid \(it was destroyed and taken again")
    assert incomplete(env, "s3") == [] and len(archives(env)) == 1
    restores(run_env, env, zfs_dataset, zfs_pool, "s0", want)


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_another_compression_level_is_not_continued(zfs_dataset, zfs_pool, destination, env, tmp_path,
                                                    aws):  # noqa: F811
    run_env, want = interrupted(destination, env, zfs_dataset, tmp_path, "s3")
    _fresh_after(run_env, env, zfs_dataset, r"compression level changed \(3, now 9\)", "-l", "9")
    assert incomplete(env, "s3") == [] and len(archives(env)) == 1
    restores(run_env, env, zfs_dataset, zfs_pool, "s0", want)


def _rewrite(path, change):
    """Change the journal's records as someone who knows its format would: checksums made anew."""
    lines = []
    for line in open(path, "rb").read().splitlines():
        text, _, _ = line.decode().partition("\t")
        text = json.dumps(change(json.loads(text)), sort_keys=True, separators=(",", ":"))
        lines.append(f"{text}\t{hashlib.sha256(text.encode()).hexdigest()}\n")
    open(path, "w").write("".join(lines))


def _other_hash(record):
    if "part" in record and record["part"][0] == 0:
        record["part"][2] = "00" * 32
    return record


def _other_key(record):
    if "meta" in record:
        record["meta"]["file_key"] = "11" * 32
    return record


def _forgotten_part(record):
    return {"ref": "dropped"} if "part" in record and record["part"][0] > 0 else record


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
@pytest.mark.parametrize("change, note", [
    (_other_hash, r"could not be continued \(bytes 0\.\.\d+ of the archive differ"),
    (_other_key, r"could not be continued \(the resume journal's file key does not open"),
    (_forgotten_part, r"could not be continued \(.*which the resume journal does not record"),
], ids=["part-hash", "file-key", "lost-records"])
def test_a_tampered_journal_is_refused(zfs_dataset, zfs_pool, destination, env, tmp_path, aws, change,
                                       note):  # noqa: F811
    run_env, want = interrupted(destination, env, zfs_dataset, tmp_path, "s3", nth=3)
    path = journal_of(env, zfs_dataset)
    ref = [json.loads(line.split("\t")[0]) for line in open(path)]
    ref = next(r["ref"] for r in ref if "ref" in r)
    _rewrite(path, change)
    if change is _forgotten_part:  # keep the real upload id last, as the journal had it
        with open(path, "a") as f:
            text = json.dumps({"ref": ref}, sort_keys=True, separators=(",", ":"))
            f.write(f"{text}\t{hashlib.sha256(text.encode()).hexdigest()}\n")
    _fresh_after(run_env, env, zfs_dataset, note)
    assert incomplete(env, "s3") == [] and len(archives(env)) == 1
    restores(run_env, env, zfs_dataset, zfs_pool, "s0", want)


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_a_damaged_journal_is_refused(zfs_dataset, zfs_pool, destination, env, tmp_path, aws):  # noqa: F811
    run_env, want = interrupted(destination, env, zfs_dataset, tmp_path, "s3")
    path = journal_of(env, zfs_dataset)
    data = bytearray(open(path, "rb").read())
    data[10] ^= 1
    open(path, "wb").write(bytes(data))
    p = _fresh_after(run_env, env, zfs_dataset, r"resume journal .* is damaged at line 1: refused; the interrupted "
                                                 r"archive starts anew")
    assert "zg-rm --incomplete" in p.stderr
    assert len(archives(env)) == 1
    restores(run_env, env, zfs_dataset, zfs_pool, "s0", want)
