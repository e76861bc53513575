"""zfsstream against real OpenZFS send streams and their reference `zstream dump` outputs.

The streams and dumps are in tests/data/openzfs-streams (see PROVENANCE.md there): little- and big-endian,
plain and compound (-R) streams, every record type, large payloads.
"""

import bz2
import io
import random
import re
from functools import lru_cache

import pytest

from zfsglacier.errors import BrokenStreamError
from zfsglacier.format.zfsstream import BEGIN_RECORD_SIZE, iter_records, parse_begin, verify_stream

# reference dump name -> stream it describes
DUMPS = {
    "leadtbn": "little-endian-all-drr-types-base-NATIVE",
    "leadtbx": "little-endian-all-drr-types-base-XDR",
    "leadtin": "little-endian-all-drr-types-incr-NATIVE",
    "leadtix": "little-endian-all-drr-types-incr-XDR",
    "beadtbn": "big-endian-all-drr-types-base-NATIVE",
    "beadtbx": "big-endian-all-drr-types-base-XDR",
    "beadtin": "big-endian-all-drr-types-incr-NATIVE",
    "beadtix": "big-endian-all-drr-types-incr-XDR",
    "lelp": "little-endian-long-payloads",
    "belp": "big-endian-long-payloads",
    "d": "decompress",
    "dc": "decompress-crypt",
}
LONG = {"lelp", "belp"}  # 42 MB each: records and sizes are checked, checksums on the small ones


@lru_cache(maxsize=None)
def _bz2(path) -> bytes:
    return bz2.decompress(path.read_bytes())


def stream(openzfs_streams, name: str) -> bytes:
    return _bz2(openzfs_streams / ("rsend" if name.startswith("dedup") else "zstream") / f"{name}.zsend.bz2")


def reference(openzfs_streams, dump: str):
    """(BEGIN records as dicts, {record type: (count, payload bytes)}, stream length) of a dump."""
    text = _bz2(openzfs_streams / "zstream" / f"{dump}-new.dump.bz2").decode()
    begins = []
    for block in re.findall(r"^BEGIN record\n((?:\t.*\n)+)", text, re.M):
        begins.append(dict(re.findall(r"^\t(\w+) = (.*)$", block, re.M)))
    totals = {kind: (int(n), int(size)) for kind, n, size in
              re.findall(r"Total DRR_(\w+) records = (\d+) \((\d+) bytes\)", text)}
    length = int(re.search(r"Total stream length = (\d+)", text).group(1))
    assert begins and totals, f"cannot read the reference dump {dump}"
    return begins, totals, length


def assert_identity(ident, ref):
    assert ident.toguid == int(ref["toguid"], 16)
    assert ident.fromguid == int(ref["fromguid"], 16)
    assert ident.toname == ref["toname"]
    assert ident.creation_time == int(ref["creation_time"], 16)
    assert ident.feature_flags == int(ref["features"], 16)
    assert ident.versioninfo & 3 == int(ref["hdrtype"])
    assert ident.objset_type == int(ref["type"])
    assert ident.drr_flags == int(ref["flags"], 16)
    assert ident.payloadlen == int(ref["payloadlen"])
    assert ident.incremental == (ident.fromguid != 0)


@pytest.mark.parametrize("dump", sorted(DUMPS))
def test_parse_begin_matches_reference_dump(openzfs_streams, dump):
    data = stream(openzfs_streams, DUMPS[dump])
    ident = parse_begin(data[:BEGIN_RECORD_SIZE])
    begins, _, _ = reference(openzfs_streams, dump)
    assert_identity(ident, begins[0])
    assert ident.byteorder == ("big" if DUMPS[dump].startswith("big") else "little")
    assert ident.header_type == ("compound" if begins[0]["hdrtype"] == "2" else "plain")


@pytest.mark.parametrize("dump", sorted(DUMPS))
def test_walk_matches_reference_dump(openzfs_streams, dump):
    """Every BEGIN, the count and payload bytes of every record type, and the length agree."""
    data = stream(openzfs_streams, DUMPS[dump])
    begins, totals, length = reference(openzfs_streams, dump)
    if dump in LONG:
        records = [rec for rec, _ in iter_records(io.BytesIO(data))]
        found = [parse_begin(rec.raw) for rec in records if rec.type == "BEGIN"]
        counts = {t: (sum(r.type == t for r in records), sum(r.payload_len for r in records if r.type == t))
                  for t in totals}
        assert records[-1].offset + BEGIN_RECORD_SIZE + records[-1].payload_len == length
    else:
        summary = verify_stream(io.BytesIO(data))
        found = summary.begins
        counts = {t: (summary.records[t], summary.payload_bytes[t]) for t in totals}
        assert summary.total_bytes == length
        assert summary.end_checksums == totals["END"][0] - (len(begins) > 1)  # bare END: none
        assert summary.record_checksums > 0
    assert counts == totals
    assert len(found) == len(begins)
    for ident, ref in zip(found, begins):
        assert_identity(ident, ref)


def test_compound_replication_stream(openzfs_streams):
    """`zfs send -D -R test/fs@snap`: a compound header, then one substream per filesystem."""
    summary = verify_stream(io.BytesIO(stream(openzfs_streams, "dedup")))
    head, *subs = summary.begins
    assert head.header_type == "compound" and head.toguid == 0 and not head.incremental
    assert head.toname == "test/fs@snap"
    assert [(s.header_type, s.toname, s.incremental) for s in subs] == [
        ("plain", "test/fs@snap", False), ("plain", "test/fs/subfs@snap", False)]
    assert summary.records["WRITE_BYREF"] == 51
    assert summary.end_checksums == 3  # the header's END and one per substream


def test_incremental_compound_stream_names_its_source(openzfs_streams):
    summary = verify_stream(io.BytesIO(stream(openzfs_streams, DUMPS["leadtin"])))
    assert summary.identity.header_type == "compound"
    # the first substream is `-i baseline` of test/redacted@clean (guids from the base stream)
    base = parse_begin(stream(openzfs_streams, DUMPS["leadtbn"]))
    assert summary.begins[1].incremental and summary.begins[1].fromguid == base.toguid


def test_non_zfs_input_is_not_a_stream(openzfs_streams):
    real = stream(openzfs_streams, DUMPS["leadtbn"])
    rng = random.Random(1)
    samples = [b"", b"\0" * 311, b"\0" * 312, b"\xff" * 4096, real[:311],
               (openzfs_streams / "zstream" / "d-new.dump.bz2").read_bytes(),
               b"%PDF-1.4\n" + bytes(400), real[BEGIN_RECORD_SIZE:]]
    samples += [rng.randbytes(rng.choice([312, 1000])) for _ in range(300)]
    # the right magic but a header type that is neither plain (1) nor compound (2)
    for hdrtype in (0, 3):
        bad = bytearray(real[:BEGIN_RECORD_SIZE])
        bad[16] = (bad[16] & ~3) | hdrtype
        samples.append(bytes(bad))
    assert [parse_begin(s) for s in samples] == [None] * len(samples)
    assert parse_begin(bytearray(real[:400])) == parse_begin(memoryview(real))  # any buffer
    assert parse_begin(None) is None


def test_byteorder_is_told_by_the_magic(openzfs_streams):
    little = parse_begin(stream(openzfs_streams, DUMPS["leadtbn"]))
    big = parse_begin(stream(openzfs_streams, DUMPS["beadtbn"]))
    assert (little.byteorder, big.byteorder) == ("little", "big")
    assert little.versioninfo == big.versioninfo  # the same fields, read in the right order


def test_toname_that_is_not_utf8_round_trips(openzfs_streams):
    head = bytearray(stream(openzfs_streams, DUMPS["leadtbn"])[:BEGIN_RECORD_SIZE])
    name = b"pool/caf\xe9@snap\xff"
    head[56:56 + 256] = name.ljust(256, b"\0")
    ident = parse_begin(bytes(head))
    assert ident.toname.encode("utf-8", "surrogateescape") == name


def _offsets_of(data, kind):
    return [rec.offset for rec, _ in iter_records(io.BytesIO(data)) if rec.type == kind]


def test_flipped_byte_is_caught(openzfs_streams):
    """A flipped bit anywhere (header, record, payload, END) fails verification."""
    data = stream(openzfs_streams, DUMPS["leadtbn"])
    write = _offsets_of(data, "WRITE")[0]
    end = _offsets_of(data, "END")[0]
    rng = random.Random(7)
    positions = [20, 60, write + 16, write + 200, write + 312 + 100, end + 8, end + 300]
    positions += rng.sample(range(len(data)), 40)
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(BrokenStreamError):
            verify_stream(io.BytesIO(bytes(bad)))


def test_payload_flip_reports_checksum_mismatch(openzfs_streams):
    data = bytearray(stream(openzfs_streams, DUMPS["beadtbn"]))
    write = _offsets_of(bytes(data), "WRITE")[0]
    data[write + BEGIN_RECORD_SIZE + 5] ^= 0x10
    with pytest.raises(BrokenStreamError, match="checksum mismatch"):
        verify_stream(io.BytesIO(bytes(data)))


def test_truncated_and_trailing_data_are_caught(openzfs_streams):
    data = stream(openzfs_streams, DUMPS["leadtin"])
    for cut in (BEGIN_RECORD_SIZE, 1000, len(data) // 2, len(data) - BEGIN_RECORD_SIZE, len(data) - 1):
        with pytest.raises(BrokenStreamError, match="truncated"):
            verify_stream(io.BytesIO(data[:cut]))
    with pytest.raises(BrokenStreamError, match="after its end"):
        verify_stream(io.BytesIO(data + data[:BEGIN_RECORD_SIZE]))


def test_impossible_write_sizes_are_rejected(openzfs_streams):
    """OpenZFS's deliberately corrupt stream: a WRITE whose compressed size exceeds its size."""
    with pytest.raises(BrokenStreamError, match="impossible sizes"):
        verify_stream(io.BytesIO(stream(openzfs_streams, "undersized-write-lsize")))


def test_not_a_stream_is_refused_by_the_walker():
    with pytest.raises(BrokenStreamError, match="not a ZFS send stream"):
        list(iter_records(io.BytesIO(b"\1" * 1000)))


def test_feature_flags_by_name_and_the_pool_features_they_need(openzfs_streams):
    from zfsglacier.format.zfsstream import feature_names, pool_features_needed
    raw = parse_begin(stream(openzfs_streams, "decompress-crypt"))
    assert raw.raw and feature_names(raw.feature_flags) == ["sa_spill", "lz4", "compressed", "raw"]
    assert pool_features_needed(raw.feature_flags) == {"sa_spill": "spa_version>=24", "lz4": "lz4_compress",
                                                       "raw": "encryption"}
    plain = parse_begin(stream(openzfs_streams, "little-endian-long-payloads"))
    assert not plain.raw and pool_features_needed(plain.feature_flags)["large_blocks"] == "large_blocks"
    assert feature_names(1 << 29) == ["bit 29"]  # one this table does not know is named, not dropped


def test_public_feature_and_send_fields_are_checked_and_round_trip():
    from zfsglacier.format.metadata import MetadataError, PublicMetadata
    m = PublicMetadata.parse({"zg-features": "embed_data,large_blocks,raw", "zg-send": "-w"})
    assert m.raw and m.feature_set == {"embed_data", "large_blocks", "raw"} and m.send_flags == {"-w"}
    assert PublicMetadata.parse(m.fields()).fields() == m.fields()
    assert PublicMetadata.parse({"zg-send": "-I"}).raw is False
    assert PublicMetadata.parse({"zg-stream": "compound", "zg-send": "-w -L"}).raw  # -I raw: the writer's word
    for bad in ({"zg-features": "raw;rm -rf"}, {"zg-features": ""}, {"zg-send": "w"}, {"zg-send": "-w\n-L"}):
        with pytest.raises(MetadataError):
            PublicMetadata.parse(bad)
