"""Sender signatures: a backup host signs the headers it writes (Ed25519, zg-keygen --signing), and
zg-decrypt / zg-restore / zg-verify / zg-catalog rebuild can require that signer, so that someone
who learned a .pub cannot slip in archives of their own.  Unsigned archives stay readable when no
signer is required."""

import io
from pathlib import Path

import pytest

from zfsglacier.format import archive, keys
from zfsglacier import errors
from zfsglacier.catalog.db import Catalog
from zfsglacier.format.header import read_header
from zfsfuse import AdminZfs
from tests.helpers import assert_one_line_error, mixed_data, zg
from tests.test_chains_zfs import env, restored, run  # noqa: F401 (fixture)
from tests.test_filters_zfs import fill, tree_digest


@pytest.fixture
def k(tmp_path):
    d = dict(key=tmp_path / "a.key", pub=tmp_path / "a.pub", sign=tmp_path / "host.sign",
             signer=tmp_path / "host.signer", other_sign=tmp_path / "evil.sign", other=tmp_path / "evil.signer")
    d["pub"].write_bytes(zg("keygen", "-o", d["key"], check=True).stdout)
    d["signer"].write_bytes(zg("keygen", "--signing", "-o", d["sign"], check=True).stdout)
    d["other"].write_bytes(zg("keygen", "--signing", "-o", d["other_sign"], check=True).stdout)
    return d


def test_signed_archives_and_required_signers(k):
    data = mixed_data(300_000, seed=2)
    assert k["signer"].read_text().startswith("zgpub-") is False and k["signer"].read_text().startswith("zgsigner-")
    assert oct(k["sign"].stat().st_mode & 0o777) == "0o600"
    assert zg("keygen", "--public", k["sign"], check=True).stdout == k["signer"].read_bytes()
    signed = zg("encrypt", k["pub"], "--sign", k["sign"], input=data, check=True).stdout
    unsigned = zg("encrypt", k["pub"], input=data, check=True).stdout
    forged = zg("encrypt", k["pub"], "--sign", k["other_sign"], input=data, check=True).stdout
    assert zg("decrypt", k["key"], "--signer", k["signer"], input=signed, check=True).stdout == data
    assert zg("decrypt", k["key"], input=signed, check=True).stdout == data  # no signer required: readable
    assert zg("decrypt", k["key"], input=unsigned, check=True).stdout == data
    for blob, words in ((unsigned, "not signed"), (forged, "not by a required signer")):
        p = zg("decrypt", k["key"], "--signer", k["signer"], input=blob)
        assert_one_line_error(p, errors.SignerError.exit_code, words)
        assert p.stdout == b""
    # both signers accepted when both are given
    assert zg("decrypt", k["key"], "--signer", k["signer"], "--signer", k["other"], input=forged).returncode == 0
    info = zg("inspect", input=signed, check=True).stdout.decode()
    assert k["signer"].read_text().strip() in info
    # a changed signature fails even when no signer is required
    hlen = len(read_header(io.BytesIO(signed)).raw)
    bad = bytearray(signed)
    bad[hlen - 5] ^= 1
    assert_one_line_error(zg("decrypt", k["key"], input=bytes(bad)), errors.SignerError.exit_code, "does not verify")
    # key files of the wrong kind are named
    assert_one_line_error(zg("decrypt", k["key"], "--signer", k["pub"], input=signed), errors.KeyFileError.exit_code,
                          "signer file")
    assert_one_line_error(zg("encrypt", k["pub"], "--sign", k["signer"], input=data), errors.KeyFileError.exit_code,
                          "signing key")


def test_the_signature_covers_the_header_and_the_body_is_bound_to_it(k):
    """Only the signed header is signed: another body under it fails (the payload key comes from
    the MAC), and another header under the signature fails the signature."""
    secret = keys.read_key_file(str(k["key"])).secret
    sign = keys.read_key_file(str(k["sign"])).signing
    a, b = io.BytesIO(), io.BytesIO()
    archive.encrypt(io.BytesIO(b"one" * 1000), a, [secret], sign=sign)
    archive.encrypt(io.BytesIO(b"two" * 1000), b, [secret], sign=sign)
    ha, hb = (len(read_header(io.BytesIO(x.getvalue())).raw) for x in (a, b))
    spliced = a.getvalue()[:ha] + b.getvalue()[hb:]
    with pytest.raises(errors.CorruptArchiveError):
        archive.decrypt(io.BytesIO(spliced), io.BytesIO(), [secret], signers=[sign.signer()])
    moved = b.getvalue()[:hb - 64] + a.getvalue()[ha - 64:ha] + b.getvalue()[hb:]
    with pytest.raises(errors.SignerError):
        archive.decrypt(io.BytesIO(moved), io.BytesIO(), [secret], signers=[sign.signer()])


@pytest.mark.zfs
def test_restore_verify_and_rebuild_require_the_signer(zfs_dataset, zfs_pool, env, k):
    zfs = AdminZfs()
    fill(zfs_dataset.path, 40, n=1)
    run(env, "backup", zfs_dataset.name, env["dest"], "--key", env["pub"], "--snapshot", "s0")  # before signing
    fill(zfs_dataset.path, 41, n=1)
    run(env, "backup", zfs_dataset.name, env["dest"], "--key", env["pub"], "--snapshot", "s1", "--sign", k["sign"])
    want = tree_digest(zfs_dataset.path)
    target = f"{zfs_pool}/signed"
    # the chain's full is unsigned: refused before any thaw or receive
    p = run(env, "restore", env["dest"], f"{zfs_dataset.name}@s1", target, "--key", env["key"],
            "--signer", k["signer"], code=errors.SignerError.exit_code)
    assert "not signed" in p.stderr.decode() and not zfs.exists(target)
    # the same through a configured destination whose `signer` setting requires it
    config = Path(env["catalog"]).parent / "config.toml"
    config.write_text(f'[destinations.offsite]\nurl = "{env["dest"]}"\nsigner = "{k["signer"]}"\n')
    named = dict(env, env=dict(env["env"], ZG_CONFIG=str(config)))
    p = run(named, "restore", "offsite", f"{zfs_dataset.name}@s1", target, "--key", env["key"],
            code=errors.SignerError.exit_code)
    assert "not signed" in p.stderr.decode() and not zfs.exists(target)
    run(env, "restore", env["dest"], f"{zfs_dataset.name}@s1", target, "--key", env["key"])  # not required: fine
    assert restored(zfs, target) == want
    zfs.destroy(target, recursive=True)
    # a new chain, all signed, restores with the signer required
    fill(zfs_dataset.path, 42, n=1)
    run(env, "backup", zfs_dataset.name, env["dest"], "--key", env["pub"], "--snapshot", "s2", "--sign", k["sign"],
        "--full-every", "1")
    run(env, "restore", env["dest"], f"{zfs_dataset.name}@s2", target, "--key", env["key"], "--signer", k["signer"])
    assert restored(zfs, target) == tree_digest(zfs_dataset.path)
    # zg-verify names the unsigned archive
    p = run(env, "verify", env["dest"], "--key", env["key"], "--signer", k["signer"],
            code=errors.IntegrityError.exit_code)
    out = p.stdout.decode()
    assert out.count("FAIL") == 1 and "not signed" in out and out.count("ok ") == 2  # s0 only
    # a rebuild that requires the signer takes no identity from unsigned header copies
    Path(env["catalog"]).unlink()
    run(env, "catalog", "rebuild", env["dest"], "--key", env["key"], "--signer", k["signer"])
    with Catalog(env["catalog"]) as cat:
        rows = {r.snapshot: r for r in cat.archives(env["dest"]) if r.snapshot}
        sources = sorted(r.identity for r in cat.archives(env["dest"]))
    assert set(rows) >= {"s1", "s2"} and sources.count("header") == 2
