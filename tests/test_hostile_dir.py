"""The file store as a hostile directory (a shared NAS folder someone else can write), and the small
things of the hostile-store issue: modes whatever the umask, no symlink followed, every sidecar
field checked (one bad object reported and skipped), nothing from a store raw on a terminal, key
errors without key material, malformed recipients, resumed downloads that are checked."""

import json
import os
import stat
import subprocess
import sys

import pytest

from zfsglacier import errors
from zfsglacier.format.keys import _encode
from tests.helpers import BIN, assert_one_line_error, mixed_data, zg


@pytest.fixture
def env(tmp_path):
    key = tmp_path / "k.key"
    zg("keygen", "-o", key, check=True)
    store = tmp_path / "nas" / "store"
    e = {"ZG_CATALOG": str(tmp_path / "c.db")}
    blob = zg("encrypt", key, input=mixed_data(3 << 20, seed=7), check=True).stdout
    store.parent.mkdir()
    init = zg_umask("init", f"file://{store}", env=e)  # with umask 0: the directory and marker stay private
    assert init.returncode == 0, init.stderr
    return dict(key=key, store=store, dest=f"file://{store}", env=e, blob=blob, tmp=tmp_path)


def zg_umask(cmd, *args, input=b"", env=None, umask=0):
    """bin/zg-CMD run under ``umask`` (0: everything the process creates would be world-writable)."""
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, str(BIN / f"zg-{cmd}"), *map(str, args)], input=input,
                          capture_output=True, env=e, preexec_fn=lambda: os.umask(umask))


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_modes_are_private_whatever_the_umask(env):
    up = zg_umask("upload", env["dest"], input=env["blob"], env=env["env"])
    assert up.returncode == 0, up.stderr
    archive_id = up.stdout.decode().strip()
    assert mode(env["store"]) == 0o700
    assert {p.name: mode(p) for p in env["store"].iterdir()} == {
        f"{archive_id}.zg": 0o600, f"{archive_id}.zg.json": 0o600, ".zfsglacier-destination": 0o600}
    out = env["tmp"] / "fetched.zg"
    assert zg_umask("fetch", env["dest"], archive_id, "-o", out, env=env["env"]).returncode == 0
    assert mode(out) == 0o600 and out.read_bytes() == env["blob"]


def test_a_directory_others_can_write_is_warned_about(env):
    env["store"].chmod(0o777)
    p = zg("upload", env["dest"], input=env["blob"], env=env["env"])
    assert p.returncode == 0
    assert "writable by others" in p.stderr.decode() and "chmod 700" in p.stderr.decode()


def upload(env):
    p = zg("upload", env["dest"], input=env["blob"], env=env["env"])
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode().strip()


def test_planted_symlinks_are_never_followed(env, tmp_path):
    good = upload(env)
    secret = tmp_path / "root-only"
    secret.write_bytes(env["blob"])  # what a symlink would point zfsglacier at
    # an archive whose data file is a symlink, with a sidecar that describes the target truthfully
    side = json.loads((env["store"] / f"{good}.zg.json").read_text())
    evil = "20990101T000000Z-deadbeef"
    (env["store"] / f"{evil}.zg").symlink_to(secret)
    (env["store"] / f"{evil}.zg.json").write_text(json.dumps(dict(side, id=evil)))
    p = zg("fetch", env["dest"], evil, env=env["env"])
    assert_one_line_error(p, errors.IntegrityError.exit_code, "symlink")
    # a sidecar that is a symlink to another archive's sidecar
    other = upload(env)
    (env["store"] / f"{other}.zg.json").unlink()
    (env["store"] / f"{other}.zg.json").symlink_to(env["store"] / f"{good}.zg.json")
    assert zg("fetch", env["dest"], other, env=env["env"]).returncode == errors.IntegrityError.exit_code


def test_bad_sidecars_are_reported_and_skipped_not_fatal(env):
    ids = [upload(env) for _ in range(5)]
    edits = {
        ids[0]: lambda s: dict(s, id="../../etc/passwd"),
        ids[1]: lambda s: dict(s, part_size=800 << 20),
        ids[2]: lambda s: dict(s, metadata=dict(s["metadata"], **{"zg-toguid": "12; rm -rf /"})),
        ids[3]: lambda s: dict(s, metadata=dict(s["metadata"], **{"zg-toguid": "\x1b]0;pwned\x07"})),
    }
    for i, edit in edits.items():
        path = env["store"] / f"{i}.zg.json"
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    os.unlink(env["env"]["ZG_CATALOG"])
    p = zg("catalog", "rebuild", env["dest"], env=env["env"])
    assert p.returncode == 0, p.stderr.decode()
    assert "1 archives recorded" in p.stdout.decode()
    err = p.stderr.decode()
    assert all(i in err for i in ids[:4]) and ids[4] not in err
    assert "\x1b" not in err and "\x07" not in err
    for args in (["ls", env["dest"]], ["ls", env["dest"], "--remote"]):
        out = zg(*args, env=env["env"])
        assert out.returncode == 0 and "\x1b" not in out.stdout.decode() + out.stderr.decode()
    assert zg("fetch", env["dest"], ids[1], env=env["env"]).returncode == errors.IntegrityError.exit_code


def test_key_errors_never_print_key_material(tmp_path):
    key = tmp_path / "k.key"
    zg("keygen", "-o", key, check=True)
    line = [ln for ln in key.read_text().splitlines() if ln.startswith("ZG-SECRET-KEY-")][0]
    key.write_text(line[:-3] + ("A" if line[-3] != "A" else "B") + line[-2:] + "\n")
    p = zg("decrypt", key, input=b"x")
    err = assert_one_line_error(p, errors.KeyFileError.exit_code, "damaged")
    assert line[14:30] not in err and line[:24] not in err


def test_malformed_recipients_are_exit_3(tmp_path):
    for raw in (bytes(32), bytes([1]) + bytes(31)):  # valid checksums, points that are no usable key
        p = zg("encrypt", "-r", _encode("zgpub-", raw), input=b"data")
        assert_one_line_error(p, errors.KeyFileError.exit_code, "X25519")
    assert_one_line_error(zg("encrypt", "-r", "zgpub-nonsense", input=b"data"), errors.KeyFileError.exit_code)


def test_resumed_download_checks_the_bytes_it_keeps(env):
    archive_id = upload(env)
    out = env["tmp"] / "f.zg"
    partial = env["tmp"] / "f.zg.partial"
    partial.write_bytes(b"\0" * 4096)  # not the archive's first bytes
    p = zg("fetch", env["dest"], archive_id, "-o", out, "--resume", env=env["env"])
    assert_one_line_error(p, errors.IntegrityError.exit_code, "removed")
    assert not out.exists() and not partial.exists()
    # with no catalog record there is nothing to check kept bytes against: refused, the partial kept
    partial.write_bytes(env["blob"][:4096])
    other = dict(env["env"], ZG_CATALOG=str(env["tmp"] / "other.db"))
    p = zg("fetch", env["dest"], archive_id, "-o", out, "--resume", env=other)
    assert_one_line_error(p, errors.UsageError.exit_code, "cannot be checked")
    assert partial.exists() and not out.exists()
    assert zg("fetch", env["dest"], archive_id, "-o", out, "--resume", env=env["env"]).returncode == 0
    assert out.read_bytes() == env["blob"]
