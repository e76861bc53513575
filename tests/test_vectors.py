"""The committed vectors in formats/vectors/v1 hold the spec and the code together."""

import hashlib
import io
import json

import pytest

from zfsglacier.format import archive, keys
from zfsglacier import errors
from zfsglacier.plumbing.pipes import PeekReader

from tests.helpers import REPO, assert_one_line_error, zg

V1 = REPO / "formats" / "vectors" / "v1"
MANIFEST = json.loads((V1 / "manifest.json").read_text())
# The manifest's words (SPEC section 5), language-neutral, and this implementation's error for each.
EXPECT = {"not-an-archive": errors.NotAnArchiveError, "newer-version": errors.UnsupportedVersionError,
          "damaged": errors.CorruptArchiveError, "no-key": errors.NoMatchingKeyError,
          "bad-signature": errors.SignerError}


def identity(spec):
    if spec.startswith("passphrase:"):
        return keys.Passphrase(spec.split(":", 1)[1].encode())
    return keys.classify_key((V1 / spec).read_bytes()).secret


@pytest.mark.parametrize("vec", MANIFEST, ids=[v["file"] for v in MANIFEST])
def test_vector(vec):
    blob = (V1 / vec["file"]).read_bytes()
    out = io.BytesIO()
    if vec["expect"] == "ok":
        archive.decrypt(PeekReader(io.BytesIO(blob)), out, [identity(vec["key"])])
        assert hashlib.sha256(out.getvalue()).hexdigest() == vec["plaintext_sha256"]
    else:
        with pytest.raises(EXPECT[vec["expect"]]):
            archive.decrypt(PeekReader(io.BytesIO(blob)), out, [identity(vec["key"])])


def test_manifest_covers_good_and_fail():
    names = {v["file"] for v in MANIFEST}
    assert {p.name for p in V1.glob("*.zg")} == names
    assert sum(v["expect"] == "ok" for v in MANIFEST) >= 8
    assert len({v["expect"] for v in MANIFEST}) >= 5


@pytest.mark.parametrize("vec", [v for v in MANIFEST if v["expect"] != "ok"], ids=lambda v: v["file"])
def test_fail_vectors_through_the_cli(vec, tmp_path):
    """zg-decrypt exits with the documented code, one line on stderr, and writes nothing for these."""
    key = tmp_path / "k"
    key.write_bytes((V1 / vec["key"]).read_bytes())
    key.chmod(0o600)
    p = zg("decrypt", key, input=(V1 / vec["file"]).read_bytes())
    assert_one_line_error(p, EXPECT[vec["expect"]].exit_code)
    # fail vectors are damaged at or before chunk 1, so at most chunk 0 may have been written
    assert len(p.stdout) <= 4096


def test_zfs_vector_has_the_public_snapshot_block():
    from zfsglacier.format import zfsstream
    from zfsglacier.format.header import read_header
    ident = zfsstream.parse_begin((V1 / "zfs-send-full.bin").read_bytes()[:zfsstream.BEGIN_RECORD_SIZE])
    h = read_header(io.BytesIO((V1 / "good_zfs_stream.zg").read_bytes()))
    assert h.snapshot.toguid == ident.toguid and h.snapshot.fromguid == 0
    assert h.snapshot.creation_time == ident.creation_time
    from zfsglacier.format.metadata import store_fields
    assert store_fields(h)["zg-toguid"] == str(ident.toguid)


def test_an_independent_reader_agrees_on_every_vector():
    """formats/reference_reader.py, written from SPEC.md with another crypto library and none of
    zfsglacier's modules, gives every vector its manifest word (and every good one its plaintext)."""
    import subprocess
    import sys
    p = subprocess.run([sys.executable, str(REPO / "formats" / "reference_reader.py"), str(V1)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "every vector as expected", p.stdout + p.stderr


def test_the_reference_reader_imports_nothing_of_zfsglacier():
    import ast
    tree = ast.parse((REPO / "formats" / "reference_reader.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(name.split(".")[0] in ("zfsglacier", "Crypto") for name in names), names
