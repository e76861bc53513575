"""A broken `zfs send` never becomes an archive: zg-encrypt follows the stream's records as it
encrypts and leaves the archive without its end (so zg-upload stores nothing) when the stream is
cut, lacks its END, or fails its checksum.  Real OpenZFS streams (tests/data/openzfs-streams) and real
zfs-fuse streams, cut at many offsets and record boundaries, with flipped bytes."""

import io
import random
import struct
import subprocess

import pytest

from zfsglacier import errors
from zfsglacier.plumbing import fletcher
from zfsglacier.format.header import FOOTER_MAGIC
from zfsglacier.format.zfsstream import BEGIN_RECORD_SIZE, StreamCheck, iter_records, verify_stream
from tests.helpers import assert_one_line_error, file_destination, mixed_data, zg
from tests.test_zfsstream import DUMPS, stream

SMALL = ["leadtbn", "beadtbx", "leadtin", "beadtix", "d", "dc"]  # plain and compound, both byte orders


@pytest.mark.parametrize("impl", ["update_numpy", "update_c"])
def test_fletcher_fast_forms_equal_the_definition(impl):
    if impl == "update_c":
        assert fletcher._fletcher is not None, "the C extension is not built (pip install -e . builds it)"
    update = getattr(fletcher, impl)
    rng = random.Random(4)
    data = rng.randbytes((1 << 20) + 13)
    for n in (0, 3, 4, 252, 256, 260, 4096, 100_003, len(data)):
        for order in ("little", "big"):
            fmt = "<" if order == "little" else ">"
            words = struct.unpack(f"{fmt}{n // 4}I", data[:n // 4 * 4])
            state = (1, 2, 3, (1 << 64) - 1)
            assert update(state, data[:n], order) == fletcher._plain(words, state), (n, order)
            assert update(state, memoryview(data)[1:n + 1], order) == fletcher._plain(
                struct.unpack(f"{fmt}{n // 4}I", data[1:n // 4 * 4 + 1]), state)


@pytest.mark.parametrize("dump", SMALL)
def test_check_in_any_pieces_equals_the_whole(openzfs_streams, dump):
    data = stream(openzfs_streams, DUMPS[dump])
    whole = verify_stream(io.BytesIO(data), record_checksums=False)
    rng = random.Random(len(data))
    for sizes in ([1, 7, 311, 312, 313], [4096], [rng.randrange(1, 70_000) for _ in range(50)]):
        check, pos, i = StreamCheck(), 0, 0
        while pos < len(data):
            n = sizes[i % len(sizes)]
            check.feed(data[pos:pos + n])
            pos, i = pos + n, i + 1
        s = check.finish()
        assert (s.begins, s.records, s.total_bytes, s.end_checksums) == (
            whole.begins, whole.records, whole.total_bytes, whole.end_checksums)


def boundaries(data):
    return [rec.offset for rec, _ in iter_records(io.BytesIO(data))]


@pytest.mark.parametrize("dump", ["leadtbn", "beadtin"])
def test_every_cut_and_flip_is_refused_by_the_fast_check(openzfs_streams, dump):
    """The fast path (DRR_END checksums only) still catches a flip anywhere: every byte before an
    END is under its checksum, and the END's own field under its record checksum."""
    data = stream(openzfs_streams, DUMPS[dump])
    rng = random.Random(9)
    cuts = boundaries(data)[1:] + [b + d for b in boundaries(data)[1:] for d in (1, 100)] + \
        rng.sample(range(1, len(data)), 60) + [len(data) - 1]
    for cut in cuts:
        with pytest.raises(errors.BrokenStreamError, match="truncated"):
            verify_stream(io.BytesIO(data[:cut]), record_checksums=False)
    for pos in rng.sample(range(len(data)), 150):
        bad = bytearray(data)
        bad[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(errors.BrokenStreamError):
            verify_stream(io.BytesIO(bytes(bad)), record_checksums=False)


def encrypt(data, pub, *args):
    return zg("encrypt", pub, *args, input=data)


@pytest.fixture(scope="module")
def pub(tmp_path_factory):
    d = tmp_path_factory.mktemp("k")
    key = d / "k.key"
    (d / "k.pub").write_bytes(zg("keygen", "-o", key, check=True).stdout)
    return d / "k.pub"


@pytest.mark.parametrize("dump", ["leadtin", "beadtbn"])
def test_zg_encrypt_leaves_a_broken_stream_without_an_end(openzfs_streams, dump, pub):
    data = stream(openzfs_streams, DUMPS[dump])
    good = encrypt(data, pub)
    assert good.returncode == 0 and good.stdout[-16:-8] == FOOTER_MAGIC
    cut = data[:boundaries(data)[-1]]  # everything but the final END record
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 4
    for bad, words in ((cut, "truncated"), (data[:len(data) // 3], "truncated"),
                       (bytes(flipped), "ZFS stream"), (data + b"\0" * 312, "after its end")):
        p = encrypt(bad, pub)
        assert_one_line_error(p, errors.BrokenStreamError.exit_code, words, "left unfinished")
        assert FOOTER_MAGIC not in p.stdout[-16:]
    # a filter still: input that is not a ZFS stream is sealed as it is; the check can be turned off
    assert encrypt(mixed_data(10_000), pub).returncode == 0
    assert encrypt(cut, pub, "--no-stream-check").returncode == 0


def test_a_cut_pipeline_stores_nothing(openzfs_streams, pub, tmp_path):
    """`zfs send` dying part way: the pipeline's zg-upload sees no archive end and stores nothing."""
    data = stream(openzfs_streams, DUMPS["leadtin"])
    store = tmp_path / "store"
    env = {"ZG_CATALOG": str(tmp_path / "c.db")}
    enc = encrypt(data[:len(data) - 400], pub)
    up = zg("upload", file_destination(store), input=enc.stdout, env=env)
    assert enc.returncode == errors.BrokenStreamError.exit_code
    assert_one_line_error(up, errors.CorruptArchiveError.exit_code, "nothing was stored")
    assert not [p for p in store.iterdir() if p.suffix == ".zg"]


@pytest.mark.zfs
def test_real_zfs_fuse_sends_cut_and_flipped(zfs_dataset, pub):
    from tests.test_filters_zfs import fill
    from zfsfuse import AdminZfs
    zfs = AdminZfs()
    fill(zfs_dataset.path, 3, n=2)
    zfs.snapshot(f"{zfs_dataset.name}@a")
    fill(zfs_dataset.path, 4, n=1)
    zfs.snapshot(f"{zfs_dataset.name}@b")
    sends = [subprocess.run(["zfs", "send", *args], capture_output=True, check=True).stdout for args in (
        [f"{zfs_dataset.name}@a"], ["-i", "@a", f"{zfs_dataset.name}@b"], ["-I", "@a", f"{zfs_dataset.name}@b"],
        ["-R", f"{zfs_dataset.name}@b"])]
    rng = random.Random(5)
    for data in sends:
        assert encrypt(data, pub).returncode == 0
        heads = boundaries(data)
        for cut in [heads[-1], heads[len(heads) // 2] + BEGIN_RECORD_SIZE // 2, len(data) - 1]:
            assert encrypt(data[:cut], pub).returncode == errors.BrokenStreamError.exit_code
        bad = bytearray(data)
        bad[rng.randrange(BEGIN_RECORD_SIZE, len(data) - BEGIN_RECORD_SIZE)] ^= 0x20
        assert encrypt(bytes(bad), pub).returncode == errors.BrokenStreamError.exit_code
