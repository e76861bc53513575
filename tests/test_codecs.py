"""The codec registry (compression.CODECS): one Codec per algorithm, the header's enum derived from
it, archive.py free of codec names, and every codec's bad data reported as damage (exit 5)."""

import ast
import io

import pytest

from tests.helpers import REPO
from tests.test_bounded import V1, make_bounded
from zfsglacier.format import archive, compression, header as format, keys
from zfsglacier.errors import CorruptArchiveError

SECRET = keys.classify_key((V1 / "secret.key").read_bytes()).secret


def test_the_header_enum_and_the_cli_choices_come_from_the_registry():
    assert dict(format.Compression.encmapping) == {c.name: c.id for c in compression.CODECS.values()}
    assert compression.ALGORITHMS == tuple(compression.CODECS) and compression.DEFAULT in compression.CODECS
    for c in compression.CODECS.values():
        lo, hi = c.levels
        assert lo <= c.default_level <= hi and compression.check(c.name, None) == c.default_level


def test_archive_names_no_codec():
    """Composition only: archive.py asks the codec (its reader, its errors, whether its frames
    decode in parallel) and never branches on an algorithm's name or imports a codec library."""
    tree = ast.parse((REPO / "zfsglacier" / "format" / "archive.py").read_text())
    names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not names & set(compression.CODECS) - {compression.DEFAULT}, "archive.py names a codec"
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not imported & {"zstandard", "lz4", "lz4.frame", "bz2", "lzma"}


@pytest.mark.parametrize("name", [n for n in compression.CODECS if n != "none"])
def test_bad_data_of_every_codec_is_damage_and_every_codec_round_trips(name):
    codec = compression.CODECS[name]
    plain = b"hello world, " * 5000
    out = io.BytesIO()
    archive.encrypt(io.BytesIO(plain), out, [SECRET], algorithm=name, chunk_size=4096)
    back = io.BytesIO()
    archive.decrypt(io.BytesIO(out.getvalue()), back, [SECRET])
    assert back.getvalue() == plain

    frame = codec.frame(codec.default_level)(plain)
    sealed = make_bounded().sealed  # authenticated bodies whose trailer commits to an empty plaintext
    refused = 0
    for bad in (b"\x00garbage" * 100, frame[: len(frame) // 2], frame[:12] + bytes(len(frame) - 12), frame + b"x"):
        got = io.BytesIO()
        try:
            archive.decrypt(io.BytesIO(sealed(bad, name, SECRET)), got, [SECRET])
        except CorruptArchiveError:
            refused += 1
        # Never another error; at most what the authenticated frames decode to, before the error.
        # (zstd's stream decoder takes a frame cut short as the end of its data: then the empty
        # plaintext is all there is, exactly what this trailer commits to.)
        assert plain.startswith(got.getvalue())
    assert refused >= 3


@pytest.mark.parametrize("algorithm,level", [("zstd", 3), ("zstd", 19), ("bz2", 1)])
def test_an_unclosed_writer_writes_nothing_when_collected(algorithm, level):
    """A compressing writer nobody closed is an aborted archive's: neither abort() nor the garbage
    collector compresses or writes its buffered blocks (io.IOBase's finalizer would close() it,
    from whatever thread the collector interrupted: that once hung `make test` on a pool lock)."""
    import gc
    for how in ("abort", "collect"):
        out = io.BytesIO()
        w = compression.writer(algorithm, level, out, threads=2)
        w.write(b"x" * 1000)  # less than a block: buffered (or inside the zstd stream)
        if how == "abort":
            w.abort()
            assert w.closed
        del w
        gc.collect()
        assert out.getvalue() == b"", (how, len(out.getvalue()))
