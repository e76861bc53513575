"""README's exit-code table, walked: every documented code is produced by a real process in a
real situation, with one line on stderr; and output that cannot be written (/dev/full, a closed
stdout, a full small filesystem) is exit 8 from every command that writes, never an internal error
and never mistaken for a damaged archive."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zfsglacier import errors
from tests.helpers import BIN, REPO, assert_one_line_error, file_destination, mixed_data, mounted, zg

VECTORS = REPO / "formats" / "vectors" / "v1"
NOT_PRODUCIBLE = {1: "internal error: only a bug produces it"}


def readme_codes():
    text = (REPO / "README.md").read_text()
    table = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    codes = set()
    for cell in re.findall(r"^\| ([0-9][0-9, ]*) \|", table, re.M):
        codes |= {int(c) for c in cell.split(",")}
    return codes


def error_classes():
    found, todo = {}, [errors.ZgError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.exit_code, []).append(cls.__name__)
        todo.extend(cls.__subclasses__())
    return found


def test_the_table_and_the_error_classes_agree():
    assert readme_codes() == set(error_classes()) | {0, 129, 130, 143}, "README's table and errors.py differ"


@pytest.fixture
def w(tmp_path):
    """A working directory with keys, an archive and a file:// destination with it uploaded."""
    class W:
        key, pub = tmp_path / "k.key", tmp_path / "k.pub"
        env = {"ZG_CATALOG": str(tmp_path / "catalog.db"), "ZG_CONFIG": str(tmp_path / "none.toml")}
        dest = file_destination(tmp_path / "store")
        tmp = tmp_path
    W.pub.write_text(zg("keygen", "-o", W.key, check=True).stdout.decode())
    W.data = mixed_data(2 << 20)
    W.archive = zg("encrypt", W.pub, input=W.data, check=True).stdout
    up = zg("upload", W.dest, input=W.archive, env=W.env, check=True)
    W.id = up.stdout.decode().strip()
    return W


def vector(name):
    return (VECTORS / name).read_bytes()


def vector_key(w, name):
    """A vector's key file, private (git keeps it 0644, which key readers refuse)."""
    path = w.tmp / name
    path.write_bytes((VECTORS / name).read_bytes())
    path.chmod(0o600)
    return path


def closed_stdin(cmd, *args):
    e = dict(os.environ)
    e.pop("ZG_DEBUG", None)
    p = subprocess.run([sys.executable, str(BIN / f"zg-{cmd}"), *map(str, args)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, env=e, preexec_fn=lambda: os.close(0))
    return subprocess.CompletedProcess(p.args, p.returncode, b"", p.stderr)


def signal_run(signum):
    """zg-encrypt waiting on a pipe that stays open, stopped by ``signum``."""
    def scenario(w):
        proc = subprocess.Popen([sys.executable, str(BIN / "zg-encrypt"), str(w.pub)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        proc.stdin.write(b"x" * 100_000)
        proc.stdin.flush()
        time.sleep(1.0)  # started, and blocked on its input
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        return subprocess.CompletedProcess(proc.args, proc.returncode, b"", err)
    return scenario


def locked(w):
    from zfsglacier.catalog.locks import UPLOADS, Locks, lock_directory
    with Locks(lock_directory(w.env["ZG_CATALOG"])) as locks:
        locks.take(w.dest, UPLOADS, "a test")  # exclusive: as zg-rm --incomplete holds it
        return zg("upload", w.dest, input=w.archive, env=w.env)


def damaged_catalog(w):
    Path(w.env["ZG_CATALOG"]).write_bytes(b"\0" * 8192)
    return zg("ls", w.dest, env=w.env)


def replaced_bytes(w):
    path = Path(w.dest[len("file://"):]) / f"{w.id}.zg"
    data = bytearray(path.read_bytes())
    data[1000] ^= 1
    path.write_bytes(bytes(data))
    return zg("fetch", w.dest, w.id, "-o", w.tmp / "out.zg", env=w.env)


def thaw_pending(w):
    import boto3
    servers = w.request.getfixturevalue("aws")
    boto3.client("s3", endpoint_url=servers.s3_url).create_bucket(Bucket="zg-exit-75")
    env = {**w.env, **servers.env}
    up = zg("upload", "s3://zg-exit-75/x", "--storage-class", "DEEP_ARCHIVE", input=w.archive, env=env, check=True)
    servers.set_s3_restore_steps(6)
    try:
        return zg("fetch", "s3://zg-exit-75/x", up.stdout.decode().strip(), "--no-wait", env=env,
                  stdin=subprocess.DEVNULL)
    finally:
        servers.set_s3_restore_steps(0)


def locked_archive(w):
    import boto3
    servers = w.request.getfixturevalue("aws")
    boto3.client("s3", endpoint_url=servers.s3_url).create_bucket(Bucket="zg-exit-20", ObjectLockEnabledForBucket=True)
    config = w.tmp / "locked.toml"
    config.write_text('[destinations.locked]\nurl = "s3://zg-exit-20/x"\nstorage_class = "STANDARD"\n'
                      'object_lock = "compliance"\nlock_days = 1\n')
    env = {**w.env, **servers.env, "ZG_CONFIG": str(config)}
    up = zg("upload", "locked", input=w.archive, env=env, check=True)
    return zg("rm", "locked", up.stdout.decode().strip(), env=env)


SCENARIOS = {  # code -> (what, how, words on stderr); ZFS codes (13, 15, 16) are in test_daily_zfs
    2: ("a bad option", lambda w: zg("encrypt", "--no-such-option"), "--help"),
    3: ("a key file that is not there", lambda w: zg("decrypt", w.tmp / "nope.key", input=w.archive), "nope.key"),
    4: ("the wrong key", lambda w: zg("decrypt", vector_key(w, "other.key"), input=vector("good_zstd_secret.zg")),
        "key"),
    5: ("a flipped byte", lambda w: zg("decrypt", vector_key(w, "secret.key"), input=vector("fail_flipped_chunk.zg")),
        "authentic"),
    6: ("a newer format", lambda w: zg("decrypt", vector_key(w, "secret.key"), input=vector("fail_future_version.zg")),
        "version"),
    7: ("not an archive", lambda w: zg("decrypt", w.key, input=b"hello, world\n" * 10), "not"),
    8: ("a full output", lambda w: zg_into("/dev/full", "decrypt", w.key, stdin_path=w.tmp / "in.zg"),
        "no space left"),
    9: ("a zfs send stream cut short", lambda w: zg("encrypt", w.pub, input=vector("zfs-send-full.bin")[:-400]),
        "DRR_END"),
    10: ("a destination that is not there", lambda w: zg("upload", f"file://{w.tmp}/unmounted", input=w.archive,
                                                         env=w.env), "mounted"),
    11: ("no such archive", lambda w: zg("fetch", w.dest, "20990101T000000Z-00000000", env=w.env), "no archive"),
    12: ("bytes replaced in the store", replaced_bytes, "SHA-256"),
    14: ("an unsigned archive where a signer is required",
         lambda w: zg("decrypt", w.key, "--signer", VECTORS / "signer.pub", input=w.archive), "sign"),
    17: ("a lock taken", locked, "locked by"),
    18: ("a damaged catalog", damaged_catalog, "catalog"),
    19: ("a closed stdin", lambda w: closed_stdin("encrypt", w.pub), "cannot read standard input"),
    20: ("an archive under Object Lock", locked_archive, "locked until"),
    21: ("an RPO breached", lambda w: (zg("upload", w.dest, "--name", "pool/ds@s1", input=w.archive, env=w.env,
                                         check=True), zg("status", w.dest, "--rpo", "1s", env=w.env))[1],
         "RPO breached"),
    75: ("a thaw requested", thaw_pending, "again later"),
    129: ("SIGHUP", signal_run(signal.SIGHUP), "SIGHUP"),
    130: ("Ctrl-C", signal_run(signal.SIGINT), "interrupted"),
    143: ("SIGTERM", signal_run(signal.SIGTERM), "SIGTERM"),
}
ZFS_CODES = {13: "test_daily_zfs (a zfs command fails)", 15: "test_daily_zfs::test_restore_continues_only_where_"
             "nothing_would_be_lost", 16: "test_daily_zfs::test_a_partial_recursive_failure_has_its_own_code_and_a_"
             "summary"}


def test_every_code_has_a_scenario():
    assert readme_codes() - {0} == set(SCENARIOS) | set(ZFS_CODES) | set(NOT_PRODUCIBLE)


@pytest.mark.parametrize("code", sorted(SCENARIOS))
def test_the_table_walked(code, w, request):
    what, how, word = SCENARIOS[code]
    w.request = request
    (w.tmp / "in.zg").write_bytes(w.archive)
    err = assert_one_line_error(how(w), code, word)
    assert "internal error" not in err, (what, err)


def zg_into(stdout_path, cmd, *args, stdin_path=os.devnull):
    """bin/zg-CMD with stdout to ``stdout_path`` and stdin from ``stdin_path``."""
    e = dict(os.environ)
    e.pop("ZG_DEBUG", None)
    fd = os.open(stdin_path, os.O_RDONLY)
    try:
        with open(stdout_path, "wb") as out:
            p = subprocess.run([sys.executable, str(BIN / f"zg-{cmd}"), *map(str, args)], stdin=fd, stdout=out,
                               stderr=subprocess.PIPE, env=e)
    finally:
        os.close(fd)
    return subprocess.CompletedProcess(p.args, p.returncode, b"", p.stderr)


# --- output that cannot be written, command by command -----------------------------------------

def writers(w):
    """Every command that writes to stdout, with arguments that make it write."""
    return {
        "keygen": (), "encrypt": (w.pub,), "decrypt": (w.key,), "inspect": (),
        "upload": (w.dest,), "fetch": (w.dest, w.id), "ls": (w.dest,), "verify": (w.dest,),
        "catalog": ("check", w.dest), "prune": (w.dest, "--keep-last", "5", "--dry-run"),
        "init": (f"file://{w.tmp}/new-{time.monotonic_ns()}",),
    }


def stdin_for(cmd, w):
    return {"encrypt": w.tmp / "plain", "decrypt": w.tmp / "in.zg", "inspect": w.tmp / "in.zg",
            "upload": w.tmp / "in.zg"}.get(cmd, "/dev/null")


@pytest.mark.parametrize("sink", ["/dev/full", "closed"])
def test_every_writer_reports_an_output_it_cannot_write(w, sink):
    (w.tmp / "in.zg").write_bytes(w.archive)
    (w.tmp / "plain").write_bytes(w.data)
    for cmd, args in writers(w).items():
        e = dict(os.environ, **w.env)
        e.pop("ZG_DEBUG", None)
        argv = [sys.executable, str(BIN / f"zg-{cmd}"), *map(str, args)]
        with open(stdin_for(cmd, w), "rb") as src:
            if sink == "closed":
                p = subprocess.run(argv, stdin=src, stderr=subprocess.PIPE, env=e, close_fds=True,
                                   preexec_fn=lambda: os.close(1))
            else:
                with open(sink, "wb") as out:
                    p = subprocess.run(argv, stdin=src, stdout=out, stderr=subprocess.PIPE, env=e)
        err = p.stderr.decode()
        assert p.returncode == errors.OutputClosedError.exit_code, (cmd, sink, p.returncode, err)
        assert err.count("\n") == 1 and "Traceback" not in err and "internal error" not in err, (cmd, err)
        assert "cannot write" in err and "damaged" not in err, (cmd, err)


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs: a full disk in a few writes."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    with mounted(mnt, [["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)]],
                 "the full-filesystem test needs a small tmpfs"):
        yield mnt


def test_a_full_filesystem_loses_nothing_and_leaves_nothing_half_written(w, small_fs):
    big = mixed_data(6 << 20, seed=3)
    archive = zg("encrypt", w.pub, "-c", "none", input=big, check=True).stdout
    # zg-encrypt and zg-decrypt into a file there
    with open(small_fs / "out.zg", "wb") as out:
        p = subprocess.run([sys.executable, str(BIN / "zg-encrypt"), str(w.pub), "-c", "none"], input=big,
                           stdout=out, stderr=subprocess.PIPE)
    assert_one_line_error(p, 8, "no space left")
    (small_fs / "out.zg").unlink()
    # zg-fetch -o there: refused, no partial left
    dest_id = zg("upload", w.dest, input=archive, env=w.env, check=True).stdout.decode().strip()
    assert_one_line_error(zg("fetch", w.dest, dest_id, "-o", small_fs / "got.zg", env=w.env), 8, "no space left",
                          "--resume")
    assert not (small_fs / "got.zg").exists()  # only the .partial, named as such, for --resume
    for f in small_fs.iterdir():
        f.unlink()
    # zg-upload to a destination there: the destination failed, nothing recorded, nothing left
    dest = file_destination(small_fs / "store")
    p = zg("upload", dest, input=archive, env=w.env)
    assert_one_line_error(p, errors.StoreError.exit_code, "no space left")
    from zfsglacier.catalog.db import Catalog
    with Catalog(w.env["ZG_CATALOG"]) as cat:
        assert cat.archives(dest) == [] and cat.uploads(dest) == []
    assert sorted(f.name for f in (small_fs / "store").iterdir()) == [".zfsglacier-destination"]
    # zg-keygen -o there once it is full: no half-written key
    _fill(small_fs)
    assert_one_line_error(zg("keygen", "-o", small_fs / "new.key"), 8, "nothing was kept")
    assert not (small_fs / "new.key").exists()
    # a secret written, its recipient file not: neither is kept (a re-run starts clean)
    elsewhere = w.key.parent / "fresh.key"
    p = zg("keygen", "-o", elsewhere, "--public-file", small_fs / "fresh.pub")
    assert_one_line_error(p, 8, "nothing was kept")
    assert not elsewhere.exists() and not (small_fs / "fresh.pub").exists()


def _fill(mnt):
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)


def test_a_read_that_needs_a_thaw_says_which_command_asks_for_one(capsys):
    """The stores know no command line: they name the archive to thaw, and the commands say how."""
    from zfsglacier.cli.common import run
    from zfsglacier.errors import RestorePendingError

    def body(argv):
        raise RestorePendingError("archive A1 is in DEEP_ARCHIVE and is not restored", thaw=("s3://b/p", "A1"))

    assert run("zg-fetch", body, []) == 75
    err = capsys.readouterr().err
    assert err == ("zg-fetch: error: archive A1 is in DEEP_ARCHIVE and is not restored: run `zg-fetch --no-wait "
                   "s3://b/p A1` to request a restore, and read it once the restore is done\n")
