"""The committed vectors in formats/vectors/v1 hold the spec and the code together."""

import hashlib
import io
import json

import pytest

from zfsglacier import archive, errors, keys
from zfsglacier.pipes import PeekReader

from tests.helpers import REPO, assert_one_line_error, zg

V1 = REPO / "formats" / "vectors" / "v1"
MANIFEST = json.loads((V1 / "manifest.json").read_text())


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
        with pytest.raises(getattr(errors, vec["expect"])):
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
    assert_one_line_error(p, getattr(errors, vec["expect"]).exit_code)
    # fail vectors are damaged at or before chunk 1, so at most chunk 0 may have been written
    assert len(p.stdout) <= 4096


def test_zfs_vector_has_the_public_snapshot_block():
    from zfsglacier import zfsstream
    from zfsglacier.format import read_header
    ident = zfsstream.parse_begin((V1 / "zfs-send-full.bin").read_bytes()[:zfsstream.BEGIN_RECORD_SIZE])
    h = read_header(io.BytesIO((V1 / "good_zfs_stream.zg").read_bytes()))
    assert h.snapshot.toguid == ident.toguid and h.snapshot.fromguid == 0
    assert h.snapshot.creation_time == ident.creation_time
    from zfsglacier.metadata import store_fields
    assert store_fields(h)["zg-toguid"] == str(ident.toguid)
