"""One key-option group (cli/keyargs.py) for every command that takes keys: the same spelling and
meaning everywhere, passphrases wherever a key is; a passphrase-only chain backs up and restores."""

import ast
import os

import pytest

from tests.helpers import REPO, assert_one_line_error, zg
from tests.test_chains_zfs import env, run  # noqa: F401 (env is a fixture)
from tests.test_filters_zfs import fill, tree_digest
from zfsfuse import AdminZfs

KEYED = [("encrypt",), ("decrypt",), ("backup",), ("restore",), ("verify",), ("inspect",),
         ("catalog", "rebuild"), ("catalog", "backup")]
KEY_FLAGS = ("--key", "--passphrase", "--passphrase-fd")


@pytest.mark.parametrize("command", KEYED, ids=" ".join)
def test_every_keyed_command_has_the_same_key_group(command):
    out = zg(*command, "--help", check=True).stdout.decode()
    group = " ".join(out.split("\nkeys:\n", 1)[1].split())  # help text wraps
    for flag in KEY_FLAGS:
        assert f" {flag} " in f" {group} " or f", {flag}" in group, (command, flag)
    encrypting = command[0] in ("encrypt", "backup") or command == ("catalog", "backup")
    assert ("--recipient" in group) == encrypting
    assert ("recipient: a .pub file" in group) == encrypting and ("a secret key file" in group)


def test_no_command_spells_its_own_key_options():
    """Key options come from keyargs only: a command adding --key or --passphrase itself would
    drift from the others (as zg-backup's and zg-verify's did)."""
    bad = []
    for path in (REPO / "zfsglacier" / "cli").glob("*.py"):
        if path.stem == "keyargs":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                flags = {a.value for a in node.args if isinstance(a, ast.Constant)}
                if flags & set(KEY_FLAGS + ("--recipient",)):
                    bad.append(f"{path.name}:{node.lineno} {sorted(flags)}")
            targets = [t for n in ast.walk(node) if isinstance(n, ast.Assign) for t in n.targets] \
                if isinstance(node, ast.Assign) else []
            for t in (e for t in targets for e in ast.walk(t)):
                if isinstance(t, ast.Attribute) and t.attr in ("passphrase", "passphrase_fd", "recipient", "keys"):
                    bad.append(f"{path.name}:{node.lineno} sets args.{t.attr} itself")
    assert not bad, bad


def test_a_command_given_no_key_says_so_in_one_line(tmp_path):
    p = zg("backup", "tank/x", f"file://{tmp_path}")
    assert_one_line_error(p, 2, "no key given", "--passphrase")
    p = zg("restore", f"file://{tmp_path}", "tank/x@s", "tank/y", env={"ZG_CATALOG": str(tmp_path / "c.db")})
    assert p.returncode != 0 and "Traceback" not in p.stderr.decode()


@pytest.mark.zfs
def test_a_passphrase_only_chain_backs_up_verifies_and_restores(zfs_dataset, zfs_pool, env, tmp_path):
    """zg-backup, zg-verify and zg-restore take a passphrase as zg-encrypt does; the wrong one opens
    nothing."""
    zfs = AdminZfs()
    secret = dict(env, env=dict(env["env"], ZG_PASSPHRASE="correct horse battery staple"))
    want = {}
    for snap in ("s0", "s1"):
        fill(zfs_dataset.path, 40 + len(want), n=2)
        run(secret, "backup", zfs_dataset.name, env["dest"], "-p", "--snapshot", snap)
        want[snap] = tree_digest(zfs_dataset.path)
    p = run(secret, "verify", env["dest"], "-p")
    assert p.stdout.decode().count("ok") >= 2
    wrong = dict(env, env=dict(env["env"], ZG_PASSPHRASE="wrong"))
    run(wrong, "restore", env["dest"], f"{zfs_dataset.name}@s1", f"{zfs_pool}/pw-bad", "-p", code=4)
    assert not zfs.exists(f"{zfs_pool}/pw-bad")
    target = f"{zfs_pool}/pw"
    fd_r, fd_w = os.pipe()
    os.write(fd_w, b"correct horse battery staple\n")
    os.close(fd_w)
    try:
        restore = zg("restore", env["dest"], f"{zfs_dataset.name}@s1", target, "--passphrase-fd", fd_r,
                     env=env["env"], pass_fds=(fd_r,))
    finally:
        os.close(fd_r)
    assert restore.returncode == 0, restore.stderr.decode()
    assert tree_digest(zfs.mountpoint(target)) == want["s1"]
    zfs.destroy(target, recursive=True)
