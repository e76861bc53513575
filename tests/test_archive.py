"""Format v1 end to end in-process: round trips, keys, and every kind of damage the spec says is detected."""

import io
import os

import pytest

from zfsglacier.format import archive, keys
from zfsglacier.errors import CorruptArchiveError, NoMatchingKeyError, NotAnArchiveError, UnsupportedVersionError
from zfsglacier.format.header import PREAMBLE_SIZE, read_header
from zfsglacier.format.stream import TAG_SIZE, END_SIZE

from tests.helpers import mixed_data

CHUNK = 4096  # small chunks make multi-chunk archives out of small inputs


def enc(data, recipients, **kw):
    out = io.BytesIO()
    kw.setdefault("chunk_size", CHUNK)
    r = archive.encrypt(io.BytesIO(data), out, recipients, **kw)
    return out.getvalue(), r


def dec(blob, identities):
    out = io.BytesIO()
    archive.decrypt(io.BytesIO(blob), out, identities)
    return out.getvalue()


@pytest.fixture(scope="module")
def key():
    return keys.SecretKey.generate()


@pytest.fixture(scope="module")
def data():
    return mixed_data(200_000)


@pytest.mark.parametrize("algorithm", ["zstd", "lz4", "bz2", "xz", "none"])
def test_round_trip_every_compression(key, data, algorithm):
    blob, r = enc(data, [key], algorithm=algorithm)
    assert dec(blob, [key]) == data
    assert read_header(io.BytesIO(blob)).compression == algorithm
    if algorithm != "none":
        assert len(blob) < len(data)
    assert r.plaintext_length == len(data)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK])
def test_round_trip_sizes_at_chunk_boundaries(key, size):
    data = os.urandom(size)
    blob, _ = enc(data, [key], algorithm="none")
    assert dec(blob, [key]) == data


def test_public_recipient_encrypts_and_only_secret_decrypts(data):
    offsite, recovery = keys.SecretKey.generate(), keys.SecretKey.generate()
    blob, _ = enc(data, [offsite.recipient(), recovery.recipient()])
    assert [t for t, _ in read_header(io.BytesIO(blob)).slots] == ["x25519", "x25519"]
    assert dec(blob, [offsite]) == data
    assert dec(blob, [recovery]) == data
    with pytest.raises(NoMatchingKeyError):
        dec(blob, [keys.SecretKey.generate()])


def test_passphrase_slot(data):
    pw = keys.Passphrase(b"correct horse battery staple", log_n=10)
    blob, _ = enc(data, [pw])
    assert dec(blob, [keys.Passphrase(b"correct horse battery staple")]) == data
    with pytest.raises(NoMatchingKeyError):
        dec(blob, [keys.Passphrase(b"wrong")])


def test_hostile_scrypt_cost_is_refused(key):
    blob, _ = enc(b"x", [keys.Passphrase(b"pw", log_n=10)])
    h = read_header(io.BytesIO(blob))
    i = blob.index(h.slots[0][1].salt) - 3  # log_n byte sits 3 bytes before the salt
    assert blob[i] == 10
    bad = blob[:i] + bytes([40]) + blob[i + 1:]
    with pytest.raises(CorruptArchiveError, match="scrypt"):
        dec(bad, [keys.Passphrase(b"pw")])


def test_header_public_fields_need_no_key(data):
    blob, _ = enc(data, [keys.SecretKey.generate().recipient()])
    h = read_header(io.BytesIO(blob))
    from zfsglacier.format.metadata import store_fields
    assert store_fields(h)["zg-compression"] == "zstd:3"
    assert h.snapshot is None


def test_private_metadata_needs_the_key(key, data):
    blob, _ = enc(data, [key], extra_metadata={"label": "nightly"})
    assert b"nightly" not in blob
    h, fk = archive.open_archive(io.BytesIO(blob), [key])
    assert archive.read_private_metadata(h, fk)["label"] == "nightly"


# --- damage: everything below must be detected, and nothing unauthenticated written ----------

@pytest.fixture(scope="module")
def sample(key, data):
    blob, _ = enc(data, [key])
    return blob


def decrypt_damaged(blob, key):
    """Decrypt, returning (exception, bytes written before it)."""
    out = io.BytesIO()
    with pytest.raises((CorruptArchiveError, NoMatchingKeyError, NotAnArchiveError)) as ei:
        archive.decrypt(io.BytesIO(blob), out, [key])
    return ei.value, out.getvalue()


def test_every_truncation_is_detected(key, data, sample):
    header_len = len(read_header(io.BytesIO(sample)).raw)
    cuts = list(range(0, header_len + 40, 7)) + list(range(header_len, len(sample), 997)) + \
        [len(sample) - k for k in (1, 15, 16, 17, END_SIZE, END_SIZE + 1)]
    for cut in cuts:
        err, written = decrypt_damaged(sample[:cut], key)
        assert data.startswith(written), cut  # only an authenticated prefix ever reaches the output


def test_every_flipped_byte_region_is_detected(key, data, sample):
    h = read_header(io.BytesIO(sample))
    n = len(h.raw)
    positions = list(range(0, n)) + list(range(n, len(sample), 331)) + list(range(len(sample) - 70, len(sample)))
    for pos in positions:
        bad = bytearray(sample)
        bad[pos] ^= 0x01
        with pytest.raises((CorruptArchiveError, NoMatchingKeyError, NotAnArchiveError,
                            UnsupportedVersionError)):
            archive.decrypt(io.BytesIO(bytes(bad)), io.BytesIO(), [key])


def _body_chunks(blob):
    h = read_header(io.BytesIO(blob))
    body = blob[len(h.raw):]
    sealed = h.chunk_size + TAG_SIZE
    return h.raw, [body[i:i + sealed] for i in range(0, len(body) - END_SIZE, sealed)], body[-END_SIZE:]


def test_reordered_dropped_duplicated_chunks_are_detected(key, sample):
    head, chunks, trailer = _body_chunks(sample)
    assert len(chunks) >= 4
    variants = {
        "swap": [chunks[1], chunks[0]] + chunks[2:],
        "drop": chunks[:1] + chunks[2:],
        "dup": chunks[:2] + chunks[1:],
        "drop-last": chunks[:-1],
    }
    for name, body in variants.items():
        with pytest.raises(CorruptArchiveError):
            dec(head + b"".join(body) + trailer, [key])


def test_splice_from_another_archive_is_detected(key, data, sample):
    other, _ = enc(data, [key])
    head_a, chunks_a, trailer_a = _body_chunks(sample)
    head_b, chunks_b, trailer_b = _body_chunks(other)
    for blob in (head_a + b"".join(chunks_b) + trailer_b,            # other body under our header
                 head_a + b"".join(chunks_a[:2] + chunks_b[2:]) + trailer_b,
                 head_a + b"".join(chunks_a) + trailer_b):
        with pytest.raises(CorruptArchiveError):
            dec(blob, [key])


def test_appended_bytes_are_detected(key, sample):
    for extra in (b"\0", os.urandom(END_SIZE), sample[-END_SIZE:]):
        with pytest.raises(CorruptArchiveError):
            dec(sample + extra, [key])


def test_future_version_names_the_version_needed(key, sample):
    bad = sample[:8] + (7).to_bytes(2, "big") + sample[10:]
    with pytest.raises(UnsupportedVersionError, match="version 7"):
        dec(bad, [key])


def test_not_an_archive(key):
    with pytest.raises(NotAnArchiveError, match="empty"):
        dec(b"", [key])
    with pytest.raises(NotAnArchiveError):
        dec(b"hello world, this is not an archive", [key])


def test_header_size_bounds(key, sample):
    huge = sample[:10] + (1 << 30).to_bytes(4, "big") + sample[PREAMBLE_SIZE:]
    with pytest.raises(CorruptArchiveError, match="header size"):
        dec(huge, [key])


def _trailer_nonce_key(blob, header, file_key):
    from zfsglacier.format.keys import derive
    n = -(-(len(blob) - len(header.raw) - END_SIZE) // (header.chunk_size + TAG_SIZE))  # data chunks
    return n.to_bytes(11, "big") + b"\x01", derive(file_key, header.mac, b"payload")


def trailer_of(blob, opened):
    """(plaintext length, compressed length, digest) from the sealed trailer, opened here."""
    import struct
    from Crypto.Cipher import AES
    nonce, key = _trailer_nonce_key(blob, *opened)
    sealed = blob[-END_SIZE:-16]
    return struct.unpack(">QQ32s", AES.new(key, AES.MODE_GCM, nonce=nonce).decrypt_and_verify(sealed[:-16], sealed[-16:]))


def rewrite_trailer(blob, header, file_key, change):
    """The archive with its trailer sealed again (validly) over ``change(trailer fields)``."""
    import struct
    from Crypto.Cipher import AES
    nonce, key = _trailer_nonce_key(blob, header, file_key)
    fields = change(trailer_of(blob, (header, file_key)))
    ct, tag = AES.new(key, AES.MODE_GCM, nonce=nonce).encrypt_and_digest(struct.pack(">QQ32s", *fields))
    return blob[:-END_SIZE] + ct + tag + blob[-16:]


def documented_digest(suite, data):
    """SPEC 4's plaintext digest, computed here from its words alone."""
    import hashlib
    if suite == "aes256gcm_stream":
        want = hashlib.sha256()
        for i in range(0, len(data), 4 << 20):
            want.update(hashlib.sha256(data[i:i + (4 << 20)]).digest())
        return want.digest()
    import xxhash
    return xxhash.xxh3_128(data).digest() + bytes(16)


@pytest.mark.parametrize("suite", ["aes256gcm_stream", "aes256gcm_stream_xxh3"])
@pytest.mark.parametrize("size", [0, 5, 4 << 20, (9 << 20) + 123])
@pytest.mark.parametrize("algorithm", ["zstd", "bz2", "none"])
def test_trailer_digest_is_the_documented_one_for_each_suite(key, size, algorithm, suite):
    """Both suites are written (suite 1 on request) and read; the sealed trailer holds exactly the
    digest SPEC 4 gives for the suite the header names."""
    data = os.urandom(size)
    want = documented_digest(suite, data)
    blob, r = enc(data, [key], algorithm=algorithm, chunk_size=1 << 20, suite=suite)
    header = read_header(io.BytesIO(blob))
    assert header.cipher_suite == suite and blob[26] == (1 if suite == "aes256gcm_stream" else 2)
    assert r.plaintext_digest == want[:32 if suite == "aes256gcm_stream" else 16].hex()
    out = io.BytesIO()
    back = archive.decrypt(io.BytesIO(blob), out, [key])
    assert out.getvalue() == data and back.plaintext_digest == r.plaintext_digest
    opened = archive.open_archive(io.BytesIO(blob), [key])
    assert trailer_of(blob, opened)[2] == want


def test_suite_2_digest_is_xxh3_128_in_canonical_order():
    """Pins the library to XXH3-128 itself: the empty input's value from xxHash's own sanity
    checks, and the big-endian (high 64 bits first) byte order SPEC 4 names."""
    import xxhash
    from zfsglacier.plumbing.digest import Xxh3Digest
    d = Xxh3Digest()
    assert d.digest() == bytes.fromhex("99aa06d3014798d8" "6001c324468d497f") + bytes(16)
    d.add(b"zfs send"), d.add(b" | zg-encrypt")
    assert d.digest()[:16] == xxhash.xxh3_128(b"zfs send | zg-encrypt").intdigest().to_bytes(16, "big")
    assert d.length == 21 and d.hexdigest() == d.digest()[:16].hex()


def test_new_archives_use_the_fast_digest_suite(key):
    blob, _ = enc(b"x" * 1000, [key])
    assert read_header(io.BytesIO(blob)).cipher_suite == "aes256gcm_stream_xxh3"


@pytest.mark.parametrize("suite", ["aes256gcm_stream", "aes256gcm_stream_xxh3"])
def test_a_wrong_plaintext_digest_is_damage_in_both_suites(key, suite):
    """A trailer that commits to other plaintext (as a writer with a codec bug would make) is
    refused after the output, with the digest named."""
    data = mixed_data(5_000_000, seed=3)
    blob, _ = enc(data, [key], chunk_size=1 << 20, suite=suite)
    header, file_key = archive.open_archive(io.BytesIO(blob), [key])
    forged = rewrite_trailer(blob, header, file_key, lambda t: (t[0], t[1], documented_digest(suite, data + b"!")))
    err, out = decrypt_damaged(forged, key)
    assert out == data and "plaintext digest" in str(err)
    assert ("XXH3-128" if suite.endswith("xxh3") else "SHA-256") in str(err)


@pytest.mark.parametrize("suite", ["aes256gcm_stream", "aes256gcm_stream_xxh3"])
@pytest.mark.parametrize("level", [-5, 1, 3, 8, 9, 12])
def test_zstd_levels_parallel_frames_and_long_mode(key, level, suite):
    """Levels below 9 write independent frames (decompressed in parallel), 9 and up one long-distance
    stream (decompressed as a stream): both must come back byte for byte, digest included."""
    data = mixed_data(9_000_000, seed=level + 10)
    blob, r = enc(data, [key], level=level, chunk_size=1 << 20, suite=suite)
    out = io.BytesIO()
    back = archive.decrypt(io.BytesIO(blob), out, [key])
    assert out.getvalue() == data and back.plaintext_digest == r.plaintext_digest
    assert trailer_of(blob, archive.open_archive(io.BytesIO(blob), [key]))[2] == documented_digest(suite, data)


def test_reader_takes_any_frame_layout(key):
    """The spec allows any concatenation of frames: small ones, a big one, one without a content size."""
    import zstandard
    from zfsglacier.format import compression
    parts = [os.urandom(1000), mixed_data(20 << 20, seed=5), b"tail" * 1000]
    small = zstandard.ZstdCompressor(level=1)
    obj = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    stream = small.compress(parts[0]) + small.compress(parts[1]) + obj.compress(parts[2]) + obj.flush()
    pieces = iter([stream[i:i + 65536] for i in range(0, len(stream), 65536)])
    reader = compression.ParallelZstdReader(lambda: next(pieces, b""))
    got = []
    while (block := reader.read_block())[0]:
        got.append(block[0])
    reader.close()
    assert b"".join(got) == b"".join(parts)
