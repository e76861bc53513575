"""Bounded work for any input, before and after authentication: every crafted input (kept as
fail_* vectors) is refused with its documented exit code, never 1, within 256 MiB of memory, and
a header that asks too much is refused before any key slot is tried."""

import importlib.util
import io
import json
import time

import pytest

from zfsglacier.format import compression, keys
from zfsglacier import errors
from zfsglacier.format.header import read_header
from tests.helpers import REPO, peak_rss
from tests.test_vectors import EXPECT

V1 = REPO / "formats" / "vectors" / "v1"
LEGACY = REPO / "formats" / "vectors" / "legacy"
LIMIT_MIB = 256
CRAFTED = [e for e in json.loads((V1 / "manifest.json").read_text())
           if e["file"] in ("fail_xz_huge_dictionary.zg", "fail_zstd_huge_window.zg",
                            "fail_many_passphrase_slots.zg", "fail_scrypt_cost.zg")]


def make_bounded():
    spec = importlib.util.spec_from_file_location("make_bounded", REPO / "formats" / "vectors" / "make_bounded.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def secret_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("k") / "secret.key"
    path.write_bytes((V1 / "secret.key").read_bytes())
    path.chmod(0o600)
    return path


def test_the_crafted_vectors_are_all_there():
    assert len(CRAFTED) == 4


@pytest.mark.parametrize("vec", CRAFTED, ids=lambda v: v["file"])
@pytest.mark.parametrize("cmd", ["decrypt", "inspect"])
def test_crafted_archives_are_refused_in_bounded_memory(vec, cmd, secret_key):
    args = [secret_key] if cmd == "decrypt" else ["--key", secret_key, "--verify"]
    start = time.monotonic()
    code, mib, err = peak_rss(cmd, *args, input_path=V1 / vec["file"])
    assert code == EXPECT[vec["expect"]].exit_code, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert mib < LIMIT_MIB, (vec["file"], mib)
    assert time.monotonic() - start < 60  # hours of scrypt would never end here


def test_header_costs_are_refused_before_any_slot_is_tried():
    blob = (V1 / "fail_scrypt_cost.zg").read_bytes()
    header = read_header(io.BytesIO(blob))
    tried = []

    class Spy:
        def unwrap(self, slot_type, body):
            tried.append(slot_type)

    with pytest.raises(errors.CorruptArchiveError, match="before trying any"):
        keys.open_header(header, [Spy()])
    assert tried == []


def test_a_bzip2_bomb_in_the_2013_format_is_refused_in_bounded_memory(tmp_path):
    key = tmp_path / "k"
    key.write_bytes((LEGACY / "ok_md5.key").read_bytes())
    key.chmod(0o600)
    bomb = LEGACY / "fail_bzip2_bomb.bz2"
    assert bomb.stat().st_size < 4096
    code, mib, err = peak_rss("decrypt", key, input_path=bomb)
    assert code == errors.CorruptArchiveError.exit_code, err
    assert mib < LIMIT_MIB, mib


def endless_zstd_frame(blocks):
    """A zstd frame that says it holds 100 bytes, then ``blocks`` empty raw blocks and no last one."""
    return b"\x28\xb5\x2f\xfd" + bytes([0x20, 100]) + b"\0\0\0" * blocks


def test_a_zstd_frame_that_never_ends_is_not_buffered():
    frame = endless_zstd_frame(7 << 20)  # 21 MiB of blocks, more than any frame the parallel path takes
    pieces = iter([frame[i:i + (1 << 20)] for i in range(0, len(frame), 1 << 20)])
    read = []

    def piece():
        p = next(pieces, b"")
        read.append(len(p))
        return p

    first = next(compression.zstd_frames(piece))
    assert isinstance(first, compression._Rest)  # handed to the stream decoder, which keeps a window only
    assert sum(read) < 19 << 20


def test_an_endless_zstd_frame_archive_fails_in_bounded_memory(tmp_path, secret_key):
    secret = keys.classify_key(secret_key.read_bytes()).secret
    path = tmp_path / "endless.zg"
    # the trailer claims the 100 bytes the frame header promises (an empty output would be what the
    # writer committed to, and harmless)
    path.write_bytes(make_bounded().sealed(endless_zstd_frame(8 << 20), "zstd", secret, plain_length=100))
    code, mib, err = peak_rss("decrypt", secret_key, input_path=path)
    assert code == errors.CorruptArchiveError.exit_code, err
    assert mib < LIMIT_MIB, mib
