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
SPEC_VECTORS = REPO / "formats" / "vectors" / "v1-spec"
MANIFEST = json.loads((V1 / "manifest.json").read_text())
# The manifest's words (SPEC section 5), language-neutral, and this implementation's error for each.
EXPECT = {"not-an-archive": errors.NotAnArchiveError, "newer-version": errors.UnsupportedVersionError,
          "damaged": errors.CorruptArchiveError, "no-key": errors.NoMatchingKeyError,
          "bad-signature": errors.SignerError}


def identity(spec, directory=V1):
    if spec.startswith("passphrase:"):
        return keys.Passphrase(spec.split(":", 1)[1].encode())
    return keys.classify_key((directory / spec).read_bytes()).secret


def check_vector(vec, directory):
    """Decrypt one vector as its manifest says; returns what was written to the output."""
    blob = (directory / vec["file"]).read_bytes()
    out = io.BytesIO()
    if vec["expect"] == "ok":
        archive.decrypt(PeekReader(io.BytesIO(blob)), out, [identity(vec["key"], directory)])
        assert hashlib.sha256(out.getvalue()).hexdigest() == vec["plaintext_sha256"]
    else:
        with pytest.raises(EXPECT[vec["expect"]]):
            archive.decrypt(PeekReader(io.BytesIO(blob)), out, [identity(vec["key"], directory)])
    return out.getvalue()


@pytest.mark.parametrize("vec", MANIFEST, ids=[v["file"] for v in MANIFEST])
def test_vector(vec):
    check_vector(vec, V1)


def test_manifest_covers_good_and_fail():
    names = {v["file"] for v in MANIFEST}
    assert {p.name for p in V1.glob("*.zg")} == names
    assert sum(v["expect"] == "ok" for v in MANIFEST) >= 8
    assert len({v["expect"] for v in MANIFEST}) >= 5


def test_zfs_vector_has_the_public_snapshot_block():
    from zfsglacier.format import zfsstream
    from zfsglacier.format.header import read_header
    ident = zfsstream.parse_begin((V1 / "zfs-send-full.bin").read_bytes()[:zfsstream.BEGIN_RECORD_SIZE])
    h = read_header(io.BytesIO((V1 / "good_zfs_stream.zg").read_bytes()))
    assert h.snapshot.toguid == ident.toguid and h.snapshot.fromguid == 0
    assert h.snapshot.creation_time == ident.creation_time
    from zfsglacier.format.metadata import store_fields
    assert store_fields(h)["zg-toguid"] == str(ident.toguid)


@pytest.mark.parametrize("directory", [V1, SPEC_VECTORS], ids=["v1", "v1-spec"])
def test_an_independent_reader_agrees_on_every_vector(directory):
    """formats/reference_reader.py, written from SPEC.md with another crypto library and none of
    zfsglacier's modules, gives every vector its manifest word (and every good one its plaintext)."""
    import subprocess
    import sys
    p = subprocess.run([sys.executable, str(REPO / "formats" / "reference_reader.py"), str(directory)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "every vector as expected", p.stdout + p.stderr


@pytest.mark.parametrize("tool", ["reference_reader.py", "vectors/generate_v1.py"])
def test_the_second_reader_and_writer_import_nothing_of_zfsglacier(tool):
    import ast
    tree = ast.parse((REPO / "formats" / tool).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(name.split(".")[0] in ("zfsglacier", "Crypto") for name in names), names


# --- vectors written from the spec by a second writer (formats/vectors/generate_v1.py) ------------

SPEC_MANIFEST = json.loads((SPEC_VECTORS / "manifest.json").read_text())


def test_the_spec_vectors_are_what_their_generator_writes(tmp_path):
    """Deterministic: every key, salt and nonce is fixed by the case, so the committed files are
    exactly what generate_v1.py writes (a changed byte here is a changed format, or generator)."""
    import subprocess
    import sys
    subprocess.run([sys.executable, str(REPO / "formats" / "vectors" / "generate_v1.py"), str(tmp_path)],
                   check=True, capture_output=True)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in SPEC_VECTORS.iterdir())
    for name in made:
        assert (tmp_path / name).read_bytes() == (SPEC_VECTORS / name).read_bytes(), name


@pytest.mark.parametrize("vec", SPEC_MANIFEST, ids=[v["file"] for v in SPEC_MANIFEST])
def test_spec_vector(vec):
    """zfsglacier reads bytes it did not write: the good ones to their plaintext, the others to
    their error, after emitting exactly what a streaming reader may (SPEC 4): every chunk that
    opens, and not a byte more."""
    out = check_vector(vec, SPEC_VECTORS)
    if vec["expect"] != "ok":
        assert len(out) == vec["streaming_output_length"]
        assert hashlib.sha256(out).hexdigest() == vec["streaming_output_sha256"]


FAILS = [(V1, v) for v in MANIFEST if v["expect"] != "ok"] + [(SPEC_VECTORS, v) for v in SPEC_MANIFEST
                                                               if v["expect"] != "ok"]


@pytest.mark.parametrize("directory,vec", FAILS, ids=[f"{d.name}/{v['file']}" for d, v in FAILS])
def test_fail_vectors_through_zg_decrypt(directory, vec, tmp_path):
    """zg-decrypt exits with the documented code and one line on stderr, having written what the
    manifest allows: for the spec vectors exactly a streaming reader's output; the v1 ones are
    damaged at or before chunk 1, so at most chunk 0."""
    key = tmp_path / "k"
    key.write_bytes((directory / vec["key"]).read_bytes())
    key.chmod(0o600)
    p = zg("decrypt", key, input=(directory / vec["file"]).read_bytes())
    assert_one_line_error(p, EXPECT[vec["expect"]].exit_code)
    if "streaming_output_sha256" in vec:
        assert hashlib.sha256(p.stdout).hexdigest() == vec["streaming_output_sha256"]
    else:
        assert len(p.stdout) <= 4096


def test_the_spec_vectors_cover_every_word():
    assert {v["expect"] for v in SPEC_MANIFEST} == set(EXPECT) | {"ok"}
    assert {p.name for p in SPEC_VECTORS.glob("*.zg")} == {v["file"] for v in SPEC_MANIFEST}
    assert any(v["expect"] == "damaged" and 0 < v["streaming_output_length"] for v in SPEC_MANIFEST)
