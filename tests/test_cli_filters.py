"""The filters as a user runs them: real processes, pipes, exit codes and one-line errors."""

import os
import stat
import subprocess
import sys

import pytest

from zfsglacier import errors
from tests.helpers import BIN, assert_one_line_error, mixed_data, zg


@pytest.fixture
def keyfile(tmp_path):
    path = tmp_path / "offsite.key"
    p = zg("keygen", "-o", path, check=True)
    return path, p.stdout.decode().strip()


def test_keygen_makes_a_0600_key_and_prints_its_recipient(keyfile, tmp_path):
    path, recipient = keyfile
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert recipient.startswith("zgpub-")
    pub = zg("keygen", "--public", path, check=True).stdout.decode().strip()
    assert pub == recipient
    again = zg("keygen", "-o", path)
    assert_one_line_error(again, errors.KeyFileError.exit_code, "already exists")


def test_keygen_makes_the_directories_the_key_needs_0700(tmp_path):
    """README's first command on a fresh machine: ~/.zg does not exist yet."""
    path = tmp_path / "home" / ".zg" / "offsite.key"
    p = zg("keygen", "-o", path)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().startswith("zgpub-")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700  # the key's own; ones above it as usual
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    blocked = tmp_path / "file"
    blocked.write_text("")
    p = zg("keygen", "-o", blocked / "k.key")  # a parent that is a file: one line, nothing made
    assert_one_line_error(p, errors.KeyFileError.exit_code, "cannot create")


def test_pub_encrypts_secret_decrypts(keyfile, tmp_path):
    path, recipient = keyfile
    pub = tmp_path / "offsite.pub"
    pub.write_text(recipient + "\n")
    data = mixed_data(3_000_000)
    blob = zg("encrypt", pub, input=data, check=True).stdout
    assert zg("decrypt", path, input=blob, check=True).stdout == data
    p = zg("decrypt", pub, input=blob)
    assert_one_line_error(p, errors.KeyFileError.exit_code, "public key")
    assert p.stdout == b""


def test_several_keys_and_inline_recipient(keyfile, tmp_path):
    path, _ = keyfile
    other = tmp_path / "recovery.key"
    rec = zg("keygen", "-o", other, check=True).stdout.decode().strip()
    blob = zg("encrypt", path, "-r", rec, input=b"payload", check=True).stdout
    assert zg("decrypt", other, input=blob, check=True).stdout == b"payload"
    assert zg("decrypt", path, input=blob, check=True).stdout == b"payload"


def test_passphrase_from_env_and_fd(tmp_path):
    env = {"ZG_PASSPHRASE": "tr0ub4dor"}
    blob = zg("encrypt", "--passphrase", input=b"secret stuff", env=env, check=True).stdout
    assert zg("decrypt", "--passphrase", input=blob, env=env, check=True).stdout == b"secret stuff"
    r, w = os.pipe()
    os.write(w, b"tr0ub4dor\n")
    os.close(w)
    p = subprocess.run([sys.executable, str(BIN / "zg-decrypt"), "--passphrase-fd", str(r)], input=blob,
                       capture_output=True, pass_fds=(r,))
    os.close(r)
    assert p.returncode == 0 and p.stdout == b"secret stuff"
    bad = zg("decrypt", "--passphrase", input=blob, env={"ZG_PASSPHRASE": "nope"})
    assert_one_line_error(bad, errors.NoMatchingKeyError.exit_code, "wrong key or passphrase")


def test_key_file_problems(keyfile, tmp_path):
    path, _ = keyfile
    blob = zg("encrypt", path, input=b"x", check=True).stdout
    assert_one_line_error(zg("decrypt", tmp_path / "missing.key", input=blob), errors.KeyFileError.exit_code,
                          "does not exist")
    path.chmod(0o644)
    assert_one_line_error(zg("decrypt", path, input=blob), errors.KeyFileError.exit_code, "chmod 600")
    assert_one_line_error(zg("encrypt", path, input=b"x"), errors.KeyFileError.exit_code, "group or others")
    path.chmod(0o600)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("ZG-SECRET-KEY-AAAAbrokenbroken\n")
    garbage.chmod(0o600)
    assert_one_line_error(zg("decrypt", garbage, input=blob), errors.KeyFileError.exit_code, "damaged")
    assert_one_line_error(zg("encrypt", input=b"x"), errors.UsageError.exit_code, "no key")


def test_wrong_inputs_to_decrypt(keyfile):
    path, _ = keyfile
    assert_one_line_error(zg("decrypt", path, input=b""), errors.NotAnArchiveError.exit_code, "empty")
    zfs_like = (0).to_bytes(4, "little") + (0).to_bytes(4, "little") + (0x2F5BACBAC).to_bytes(8, "little") + bytes(300)
    assert_one_line_error(zg("decrypt", path, input=zfs_like), errors.NotAnArchiveError.exit_code,
                          "plain ZFS send stream")
    assert_one_line_error(zg("decrypt", path, "--bogus-flag", input=b""), errors.UsageError.exit_code)


def test_broken_pipe_downstream_is_one_line(keyfile):
    path, _ = keyfile
    blob = zg("encrypt", path, input=os.urandom(8_000_000), check=True).stdout
    p = subprocess.run(f"{sys.executable} {BIN}/zg-decrypt {path} | head -c 10 > /dev/null; "
                       f"echo ${{PIPESTATUS[0]}} >&2", shell=True, executable="/bin/bash", input=blob,
                       capture_output=True)
    lines = p.stderr.decode().strip().splitlines()
    assert lines[-1] == str(errors.OutputClosedError.exit_code), lines
    assert len(lines) == 2 and "broken pipe" in lines[0] and "Traceback" not in p.stderr.decode()


def test_corrupt_archive_fails_the_pipeline(keyfile):
    """With pipefail, a damaged archive makes the whole pipeline fail, however the consumer fares."""
    path, _ = keyfile
    data = mixed_data(2_000_000)
    blob = bytearray(zg("encrypt", path, "--chunk-size", "65536", input=data, check=True).stdout)
    blob[len(blob) // 2] ^= 0x40
    p = subprocess.run(f"set -o pipefail; {sys.executable} {BIN}/zg-decrypt {path} | cat > /dev/null",
                       shell=True, executable="/bin/bash", input=bytes(blob), capture_output=True)
    assert p.returncode == errors.CorruptArchiveError.exit_code
    assert "fails authentication" in p.stderr.decode()


def test_inspect_without_and_with_key(keyfile):
    path, _ = keyfile
    blob = zg("encrypt", path, "-c", "xz", "-l", "2", input=b"some data" * 1000, check=True).stdout
    pub = zg("inspect", input=blob, check=True).stdout.decode()
    assert "xz level 2" in pub and "host" not in pub
    full = zg("inspect", "--key", path, "--verify", input=blob, check=True).stdout.decode()
    assert "header MAC:   ok" in full and "verified:     9000 bytes" in full
    assert_one_line_error(zg("inspect", "--verify", input=blob), errors.UsageError.exit_code, "--key")


def test_an_archive_id_that_starts_with_a_dash_is_an_argument_not_an_option(tmp_path):
    """A vault archive id (138 base64url characters) starts with '-' one time in 64: it reaches
    the command as the ID (here: not found in an empty directory), not "the following arguments
    are required"; a short option with its value attached still is one."""
    from zfsglacier.cli.common import parser

    vault_id = "-VRM0SHbujvyUPWQh8uQFSdDUyMBsyvjUy39B8eVI8lYuxARCtEDOnKuo1P4SNFcmufDGKgn5lo89kZAAZD7siY8IC3mKq"
    p = parser("zg-x", "test")
    p.add_argument("id")
    p.add_argument("-o")
    assert vars(p.parse_args([vault_id, "-o", "f"])) == {"id": vault_id, "o": "f"}
    assert vars(p.parse_args(["x", "-of"])) == {"id": "x", "o": "f"}
    dest = tmp_path / "store"
    assert zg("init", f"file://{dest}").returncode == 0
    fetch = zg("fetch", f"file://{dest}", vault_id, env={"ZG_CATALOG": str(tmp_path / "c.db")})
    assert fetch.returncode != 2 and "required" not in fetch.stderr.decode(), fetch.stderr.decode()
