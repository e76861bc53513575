"""The 2013 archive reader, checked against archives made by the real openssl and pbzip2."""

import bz2
import hashlib
import io
import json
import pathlib
import random
import subprocess

import pytest

from zfsglacier import errors
from zfsglacier.format import legacy

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "formats" / "vectors" / "legacy"


# ---------------------------------------------------------------- helpers: the real tools


def sh(script, *args, stdin=None):
    """Run a bash pipeline (pipefail) with positional args; return its stdout."""
    res = subprocess.run(
        ["bash", "-c", "set -o pipefail; " + script, "sh", *map(str, args)],
        input=stdin,
        capture_output=True,
        check=True,
    )
    return res.stdout


def encrypt_2013(plain, key, md):
    """The 2013 encrypt recipe, verbatim, on bytes."""
    return sh(
        'pbzip2 -9 | openssl aes-256-cbc -a -salt -pass "file:$1" -md "$2" 2>/dev/null | pbzip2 -9',
        key,
        md,
        stdin=plain,
    )


def decrypt_2013(archive, key, md):
    """The 2013 decrypt recipe, verbatim, on bytes."""
    return sh(
        'bzip2 -dc | openssl aes-256-cbc -d -a -pass "file:$1" -md "$2" 2>/dev/null | bzip2 -d',
        key,
        md,
        stdin=archive,
    )


def openssl_rand(n):
    return sh('openssl rand "$1"', n)


def run(archive, password, **kw):
    """decrypt_legacy on bytes: return (plaintext written, error raised or None)."""
    out = io.BytesIO()
    try:
        n = legacy.decrypt_legacy(io.BytesIO(archive), out, password, **kw)
    except errors.ZgError as err:
        return out.getvalue(), err
    assert n == len(out.getvalue())
    return out.getvalue(), None


def assert_fails_cleanly(archive, password, plain, error=errors.CorruptArchiveError, words=()):
    """The archive must fail with ``error``, and what was written must be true plaintext."""
    written, err = run(archive, password)
    assert isinstance(err, error), f"expected {error.__name__}, got {err!r}"
    assert plain.startswith(written), "bytes written before the error are not plaintext"
    for word in words:
        assert word in str(err)
    return written


def flip(data, offset, mask=0x01):
    b = bytearray(data)
    b[offset] ^= mask
    return bytes(b)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("legacy")


@pytest.fixture(scope="module")
def plain():
    """~3.2 MB: random, SQL-like text and zeros, so pbzip2 makes 4 inner streams and the
    outer layer (2 MB of base64) 3 streams."""
    rnd = random.Random(2013)
    text = b"".join(
        b"INSERT INTO t VALUES (%d, '%s');\n" % (rnd.randrange(10**9), b"x" * rnd.randrange(40))
        for _ in range(40000)
    )
    return rnd.randbytes(1_200_000) + text + bytes(500_000) + rnd.randbytes(1000)


@pytest.fixture(scope="module")
def key(work):
    path = work / "key"
    data = openssl_rand(512)
    while data[0] == 0:  # 1 key in 256: openssl reads no password from it (tested as refused elsewhere)
        data = openssl_rand(512)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def archives(plain, key):
    return {md: encrypt_2013(plain, key, md) for md in ("md5", "sha256")}


@pytest.fixture(scope="module")
def password(key):
    return legacy.password_from_keyfile(key.read_bytes())


# ---------------------------------------------------------------- good archives


@pytest.mark.parametrize("threaded", [True, False])
@pytest.mark.parametrize("md", ["md5", "sha256"])
def test_decrypts_like_the_2013_recipe(archives, plain, key, password, md, threaded):
    assert decrypt_2013(archives[md], key, md) == plain  # the fixture is what we think
    written, err = run(archives[md], password, threaded=threaded)
    assert err is None
    assert written == plain


def test_archive_has_several_streams_in_both_bzip2_layers(archives, key):
    """Guards the fixture: the multi-stream paths must really be exercised."""
    outer = archives["md5"]
    assert outer.count(b"BZh9" + bytes.fromhex("314159265359")) >= 3
    inner = sh('bzip2 -dc | openssl aes-256-cbc -d -a -pass "file:$1" -md md5 2>/dev/null', key,
               stdin=outer)
    assert inner.count(b"BZh9" + bytes.fromhex("314159265359")) >= 4


class Dribble(io.RawIOBase):
    """A source that returns short reads of random sizes, as pipes do."""

    def __init__(self, data, seed):
        self._data = memoryview(data)
        self._rnd = random.Random(seed)

    def readable(self):
        return True

    def read(self, n=-1):
        size = min(n if n >= 0 else len(self._data), self._rnd.randrange(1, 30000))
        piece, self._data = bytes(self._data[:size]), self._data[size:]
        return piece


@pytest.mark.parametrize("threaded", [True, False])
def test_short_reads_and_prefix_give_the_same_plaintext(archives, plain, password, threaded):
    src = Dribble(archives["md5"], seed=7)
    prefix = src.read(3) + src.read(20)  # what zg-decrypt read to sniff the format
    out = io.BytesIO()
    n = legacy.decrypt_legacy(src, out, password, prefix=prefix, threaded=threaded)
    assert (n, out.getvalue()) == (len(plain), plain)


def test_highly_compressible_plaintext_is_written_in_bounded_pieces(key, password):
    """30 MB of zeros is a few kB of archive; each write to dst is at most one pbzip2 stream."""
    plain = bytes(30_000_000)
    sizes = []

    class Dst:
        def write(self, data):
            sizes.append(len(data))
            return len(data)

    n = legacy.decrypt_legacy(io.BytesIO(encrypt_2013(plain, key, "md5")), Dst(), password)
    assert n == sum(sizes) == len(plain)
    assert max(sizes) <= 900_000


def test_output_errors_propagate(archives, password):
    class Closed:
        def write(self, data):
            raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        legacy.decrypt_legacy(io.BytesIO(archives["md5"]), Closed(), password)


# ---------------------------------------------------------------- key files


def key_nul_in_first_line(rand):
    k = bytearray(rand.replace(b"\n", b"A").replace(b"\0", b"B"))
    k[40], k[100] = 0, 10
    return bytes(k), bytes(k[:40])


def key_no_newline(rand):
    k = rand.replace(b"\n", b"A")
    if k[0] == 0:
        k = b"Z" + k[1:]
    return k, k.split(b"\0")[0]


def key_newline_first(rand):
    return b"\n" + rand[1:], b""


def key_long_first_line(rand):
    k = (rand * 4).replace(b"\n", b"A").replace(b"\0", b"B")
    return k, k[:1023]


@pytest.mark.parametrize("md", ["md5", "sha256"])
@pytest.mark.parametrize(
    "make_key", [key_nul_in_first_line, key_no_newline, key_newline_first, key_long_first_line]
)
def test_password_is_what_openssl_read_from_the_key_file(work, make_key, md):
    """Key files like `openssl rand 512`, in each shape: real openssl encrypts with them."""
    data, expected = make_key(openssl_rand(512))
    path = work / f"{make_key.__name__}.{md}"
    path.write_bytes(data)
    password = legacy.password_from_keyfile(data)
    assert password == expected
    plain = b"zfs send stream stand-in\n" * 500
    written, err = run(encrypt_2013(plain, path, md), password)
    assert (written, err) == (plain, None)


@pytest.mark.parametrize("data", [b"", b"\0", b"\0abc\ndef"])
def test_key_files_openssl_refuses_raise_keyfileerror(work, data):
    path = work / "refused.key"
    path.write_bytes(data)
    refused = subprocess.run(
        ["openssl", "aes-256-cbc", "-a", "-salt", "-pass", f"file:{path}"],
        input=b"x",
        capture_output=True,
    )
    assert refused.returncode != 0  # openssl itself could not have made an archive
    with pytest.raises(errors.KeyFileError, match="key file"):
        legacy.password_from_keyfile(data)


def test_wrong_key_is_reported_and_nothing_is_written(archives, plain):
    for md in ("md5", "sha256"):
        written, err = run(archives[md], b"not the key")
        assert isinstance(err, errors.NoMatchingKeyError)
        assert "tried MD5 and SHA-256" in str(err)
        assert written == b""


@pytest.mark.parametrize("md", ["md5", "sha256"])
def test_evp_bytes_to_key_matches_openssl(md):
    script = 'openssl enc -aes-256-cbc -P -pass pass:hunter2 -S 0102030405060708 -md "$1"'
    out = sh(script + " 2>/dev/null", md).decode()
    fields = {k.strip(): v.strip() for k, v in (line.split("=", 1) for line in out.splitlines())}
    key, iv = legacy.evp_bytes_to_key(b"hunter2", bytes(range(1, 9)), md)
    assert (key.hex().upper(), iv.hex().upper()) == (fields["key"], fields["iv"])


# ---------------------------------------------------------------- format detection


def test_looks_legacy(archives):
    assert legacy.looks_legacy(archives["md5"][: legacy.PREFIX_LEN])
    assert not legacy.looks_legacy(archives["md5"][: legacy.PREFIX_LEN - 1])
    assert not legacy.looks_legacy(bz2.compress(b""))  # a bzip2 stream with no block
    assert not legacy.looks_legacy(b"\0\0\0\0\0\0\0\0\xac\xcb\xba\xf5\x02\0\0\0")  # zfs send
    assert not legacy.looks_legacy(b"BZh0" + bytes.fromhex("314159265359"))


def test_not_an_archive(password):
    for data in (b"", b"\0\0\0\0\0\0\0\0\xac\xcb\xba\xf5", b"hello world"):
        written, err = run(data, password)
        assert isinstance(err, errors.NotAnArchiveError) and written == b""


# ---------------------------------------------------------------- damage


def test_truncation_at_many_offsets(archives, plain, password):
    archive = archives["md5"]
    n = len(archive)
    for cut in (1, 4, 9, 10, 100, 5000, n // 3, n // 2, n - 100, n - 5, n - 1):
        assert_fails_cleanly(archive[:cut], password, plain, words=("truncated",))


def test_flipped_bytes_in_the_outer_layer(archives, plain, password):
    archive = archives["sha256"]
    n = len(archive)
    for offset in (3, 12, 40, 1000, n // 3, n // 2, 2 * n // 3, n - 20, n - 3):
        assert_fails_cleanly(flip(archive, offset), password, plain)


def outer_text(archive):
    return sh("bzip2 -dc", stdin=archive)


def rewrap(text):
    """Compress base64 text again as the recipe's outer layer."""
    return sh("pbzip2 -9", stdin=text)


def test_damage_inside_the_base64_text(archives, plain, password):
    text = outer_text(archives["md5"])
    n = len(text)
    # another valid base64 character: the ciphertext changes, an inner CRC must catch it
    for near in (n // 4, n // 2, n - 30):
        # the archive is random: take the first character from here that is not a newline, A or B
        offset = next(i for i in range(near, n) if text[i] not in b"\nAB")
        damaged = text[:offset] + b"A" + text[offset + 1 :]
        assert_fails_cleanly(rewrap(damaged), password, plain)
    # not base64 at all
    assert_fails_cleanly(rewrap(text[:1000] + b"*" + text[1001:]), password, plain,
                         words=("base64",))
    # lines of another width (as from `base64` with 76 columns)
    flat = text.replace(b"\n", b"")
    wide = b"".join(flat[i : i + 76] + b"\n" for i in range(0, len(flat), 76))
    assert_fails_cleanly(rewrap(wide), password, plain, words=("base64", "76"))
    # cut at a line boundary: whole AES blocks, but the true last block is missing
    cut = text.index(b"\n", n // 2) + 1
    assert_fails_cleanly(rewrap(text[:cut]), password, plain)
    # cut inside a line
    assert_fails_cleanly(rewrap(text[: cut - 10]), password, plain, words=("truncated",))


def test_flipped_ciphertext_bits(archives, plain, password):
    """Each bit flip garbles one plaintext block of the inner bzip2 data: caught by its CRC.
    Damage to the salt or the first block cannot be told from a wrong key (there is no MAC)."""
    raw = sh("bzip2 -dc | openssl base64 -d", stdin=archives["md5"])
    for offset in (12, 20, 40, 5000, len(raw) // 2, len(raw) - 40):
        damaged = sh("openssl base64 | pbzip2 -9", stdin=flip(raw, offset, 0x10))
        error = errors.NoMatchingKeyError if offset < 32 else errors.CorruptArchiveError
        assert_fails_cleanly(damaged, password, plain, error)


def test_damaged_inner_stream_writes_only_checked_blocks(plain, key, password):
    """A flipped bit in the 3rd of 4 inner pbzip2 streams, properly encrypted: the first two
    streams (2 x 900000 bytes) are written, then the inner CRC check stops everything."""
    inner = sh("pbzip2 -9", stdin=plain)
    third = inner.index(b"BZh9", inner.index(b"BZh9", 4) + 4)
    damaged = flip(inner, third + 5000)
    archive = sh('openssl aes-256-cbc -a -salt -pass "file:$1" 2>/dev/null | pbzip2 -9', key,
                 stdin=damaged)
    written = assert_fails_cleanly(archive, password, plain, words=("inner", "CRC"))
    assert len(written) == 1_800_000


def test_truncated_inner_stream(plain, key, password):
    inner = sh("pbzip2 -9", stdin=plain)
    archive = sh('openssl aes-256-cbc -a -salt -pass "file:$1" 2>/dev/null | pbzip2 -9', key,
                 stdin=inner[:-1000])
    assert_fails_cleanly(archive, password, plain, words=("inner", "ends early"))


def test_bad_padding(key, password):
    """Encrypted without padding, ending in a zero byte: PKCS#7 padding cannot be valid."""
    plain = b"a small plaintext\n" * 100
    inner = bz2.compress(plain)
    inner += bytes(16 - len(inner) % 16)
    archive = sh('openssl aes-256-cbc -a -salt -nopad -pass "file:$1" 2>/dev/null | pbzip2 -9',
                 key, stdin=inner)
    assert_fails_cleanly(archive, password, plain, words=("padding",))


# ---------------------------------------------------------------- the CRC-before-output rule


def test_bzip2_layer_never_passes_on_a_block_before_its_crc_check():
    """CPython's BZ2Decompressor can return up to 32 KiB of a block before checking its CRC
    when its input ends exactly on the block's last byte.  Split a stream whose block CRC is
    damaged at every offset around that byte: nothing may come out before the error."""
    data = bytes(range(256)) * 1000
    stream = bz2.compress(data, 9)
    probe = bz2.BZ2Decompressor()
    block_end = next(i + 1 for i in range(len(stream)) if probe.decompress(stream[i : i + 1]))
    damaged = flip(stream, 10)  # the block's stored CRC follows "BZh9" + block magic
    for cut in (block_end - 1, block_end, block_end + 1, len(stream) - 1):
        got = []

        class Sink:
            write = got.append

            def close(self):
                pass

        layer = legacy._Bzip2Layer(Sink(), "test")
        with pytest.raises(errors.CorruptArchiveError, match="CRC"):
            layer.write(damaged[:cut])
            layer.write(damaged[cut:])
            layer.close()
        assert got == []


# ---------------------------------------------------------------- stored vectors


def vector_cases():
    return json.loads((VECTORS / "vectors.json").read_text())["cases"]


@pytest.mark.parametrize("case", vector_cases(), ids=lambda c: c["name"])
def test_vectors(case):
    doc = json.loads((VECTORS / "vectors.json").read_text())
    truth = bz2.decompress((VECTORS / doc["plaintext"]["file"]).read_bytes())
    assert hashlib.sha256(truth).hexdigest() == doc["plaintext"]["sha256"]
    error = getattr(errors, case["error"]) if "error" in case else None
    keydata = (VECTORS / case["key"]).read_bytes()
    if case["archive"] is None:
        with pytest.raises(error):
            legacy.password_from_keyfile(keydata)
        return
    archive = (VECTORS / case["archive"]).read_bytes()
    password = legacy.password_from_keyfile(keydata)
    if error is None:
        written, err = run(archive, password)
        assert err is None
        assert (hashlib.sha256(written).hexdigest(), len(written)) == (case["sha256"], case["size"])
    else:
        assert_fails_cleanly(archive, password, truth, error)
