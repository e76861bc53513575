"""The progress line, where a person watches: on a pseudo-terminal (stderr a tty, stdout a pipe, as
in `zg-fetch ... | zfs receive`) each long command shows what, bytes, the total where known,
percent, rate and ETA, ended by a newline; thaw waits say what is pending and when the first is
expected.  Off a terminal: nothing, unless --progress=always; --progress=never: nothing anywhere."""

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading

import pytest
from tqdm import tqdm

from tests.helpers import BIN, mixed_data, zg

MiB = 1 << 20


def on_pty(cmd, *args, stdin=None, env=None, input=None):
    """(exit code, stdout bytes, what the terminal showed) of bin/zg-CMD with stderr on a pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))  # rows, columns
    shown = bytearray()

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=drain)
    reader.start()
    e = dict(os.environ, **(env or {}), COLUMNS="150")
    e.pop("ZG_DEBUG", None)
    try:
        p = subprocess.run([sys.executable, str(BIN / f"zg-{cmd}"), *map(str, args)], stdin=stdin,
                           input=input, stdout=subprocess.PIPE, stderr=slave, env=e)
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)
    return p.returncode, p.stdout, shown.decode(errors="replace")


def final_line(shown, what):
    """The last state of the progress line that starts with ``what`` (tqdm redraws with \\r)."""
    lines = [piece for line in shown.replace("\r\n", "\n").split("\n") for piece in line.split("\r")]
    mine = [line.strip() for line in lines if line.strip().startswith(what)]
    assert mine, f"no {what!r} line in {shown!r}"
    return mine[-1]


@pytest.fixture
def world(tmp_path):
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    zg("keygen", "-o", key, "--public-file", pub, check=True)
    archive = tmp_path / "a.zg"
    archive.write_bytes(zg("encrypt", pub, "-c", "none", input=mixed_data(12 * MiB, seed=4), check=True).stdout)
    dest = f"file://{tmp_path}/store"
    zg("init", dest, check=True)
    env = {"ZG_CATALOG": str(tmp_path / "c.db"), "ZG_CONFIG": str(tmp_path / "none.toml")}
    return dict(key=key, pub=pub, archive=archive, dest=dest, env=env, tmp=tmp_path)


def _complete(line, size):
    """A finished tqdm line: 100%, n/total with the total, elapsed<remaining, a rate."""
    assert "100%" in line, line
    total = tqdm.format_sizeof(size)
    assert f"{total}/{total}" in line, line
    assert re.search(r"\[\d\d:\d\d<00:00, +[\d.]+[kMG]?B/s\]", line), line


def test_upload_and_fetch_show_bytes_total_rate_eta_on_a_terminal(world):
    size_mb = world["archive"].stat().st_size
    with open(world["archive"], "rb") as f:
        code, out, shown = on_pty("upload", world["dest"], stdin=f, env=world["env"])
    assert code == 0, shown
    archive_id = out.decode().strip()
    _complete(final_line(shown, "upload"), size_mb)
    assert shown.endswith("\n")  # finished cleanly: the next prompt starts on a line of its own
    code, out, shown = on_pty("fetch", world["dest"], archive_id, env=world["env"])
    assert code == 0 and out == world["archive"].read_bytes()
    _complete(final_line(shown, "fetch"), size_mb)  # the total: the archive's size, from the catalog
    code, out, shown = on_pty("verify", world["dest"], "--key", world["key"], env=world["env"])
    assert code == 0, shown
    _complete(final_line(shown, "verify 1/1"), size_mb)
    assert b"1 ok, 0 failed" in out and b"\r" not in out  # stdout: the report, no progress in it


def test_nothing_off_a_terminal_unless_always_and_nothing_with_never(world):
    with open(world["archive"], "rb") as f:
        p = subprocess.run([sys.executable, str(BIN / "zg-upload"), world["dest"]], stdin=f, capture_output=True,
                           env=dict(os.environ, **world["env"]))
    assert p.returncode == 0 and p.stderr == b""
    with open(world["archive"], "rb") as f:
        p = subprocess.run([sys.executable, str(BIN / "zg-upload"), world["dest"], "--progress=always"], stdin=f,
                           capture_output=True, env=dict(os.environ, **world["env"]))
    assert p.returncode == 0 and b"100%" in p.stderr  # to a log file: asked for
    with open(world["archive"], "rb") as f:
        code, _, shown = on_pty("upload", world["dest"], "--progress", "never", stdin=f, env=world["env"])
    assert code == 0 and shown == ""


def test_a_pipe_has_no_total_but_still_bytes_and_rate(world):
    code, _, shown = on_pty("upload", world["dest"], input=world["archive"].read_bytes(), env=world["env"])
    assert code == 0
    line = final_line(shown, "upload")
    assert "%" not in line and re.search(r"[\d.]+MB \[\d\d:\d\d, +[\d.]+[kMG]?B/s\]", line), line


@pytest.mark.zfs
def test_backup_and_restore_show_the_send_and_the_receive(world, zfs_dataset):
    (zfs_dataset.path / "data").write_bytes(mixed_data(6 * MiB, seed=8))
    code, out, shown = on_pty("backup", zfs_dataset.name, world["dest"], "--key", world["pub"], "--snapshot", "s1",
                              env=world["env"])
    assert code == 0, shown
    line = final_line(shown, f"{zfs_dataset.name}@s1 (full)")
    assert re.search(r"\d+%", line) and re.search(r"B/s\]", line), line  # against the send's estimate
    target = f"{zfs_dataset.name}-r"
    try:
        code, out, shown = on_pty("restore", world["dest"], f"{zfs_dataset.name}@s1", target, "--key", world["key"],
                                  env=world["env"])
        assert code == 0, shown
        line = final_line(shown, "receiving 1/1")
        assert "100%" in line and "B/s]" in line, line
    finally:
        from zfsfuse import AdminZfs
        if AdminZfs().exists(target):
            AdminZfs().destroy(target, recursive=True)


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_a_thaw_wait_says_what_is_pending_and_when_it_is_expected(destination, aws, tmp_path):
    dest, env = destination
    key = tmp_path / "k.key"
    zg("keygen", "-o", key, check=True)
    blob = zg("encrypt", key, input=os.urandom(100_000), check=True).stdout
    archive_id = zg("upload", dest, input=blob, env=env, check=True).stdout.decode().strip()
    aws.set_s3_restore_steps(3)
    try:
        code, out, shown = on_pty("fetch", dest, archive_id, "--tier", "Bulk", env=env)
    finally:
        aws.set_s3_restore_steps(0)
    assert code == 0, shown
    line = final_line(shown, "waiting for 1 of 1 thaw(s)")
    # DEEP_ARCHIVE at Bulk: typically 48 h (the price table's), counted from the request
    assert re.search(r"\(Bulk tier; the first expected by \d{4}-\d\d-\d\d \d\d:\d\d UTC\)", line), line
    _complete(final_line(shown, "fetch"), len(blob))
