"""Reader for the 2013 archive format, which zg-decrypt must keep reading forever.

The 2013 recipe was::

    zfs send SNAP | pbzip2 -9 | openssl aes-256-cbc -a -salt -pass file:KEYFILE | pbzip2 -9

so an archive is, from the outside in: multi-stream bzip2, then base64 text in 64-column
lines, then ``Salted__`` + 8-byte salt + AES-256-CBC ciphertext (PKCS#7 padding, key and IV
from OpenSSL's EVP_BytesToKey with one iteration of MD5 or SHA-256), then multi-stream bzip2
of the raw ``zfs send`` stream.  There is no MAC: the only integrity checks are the bzip2
block and stream CRCs (and the zfs stream's own checksum, checked by ``zfs receive``).

:func:`decrypt_legacy` peels all four layers incrementally with bounded memory.  Each layer is
a small object with ``write(data)`` (pass the next piece on) and ``close()`` (check that the
layer ended cleanly, then close the next one).
"""

import binascii
import bz2
import hashlib

from Crypto.Cipher import AES

from ..plumbing.concurrency import END, Source
from ..errors import CorruptArchiveError, KeyFileError, NoMatchingKeyError, NotAnArchiveError

READ_SIZE = 1 << 20
"""How much decrypt_legacy reads from its source at a time."""

PREFIX_LEN = 10
"""Bytes looks_legacy needs: ``BZh`` + level digit + the 6-byte bzip2 block magic."""

_BLOCK_MAGIC = bytes.fromhex("314159265359")  # start of a bzip2 block (BCD pi)
_EOS_MAGIC = bytes.fromhex("177245385090")  # end of a bzip2 stream (BCD sqrt(pi))

# OpenSSL's apps read the password file with BIO_gets(bio, buf, APP_PASS_LEN = 1024): at most
# 1023 bytes of the first line.
_OPENSSL_PASS_MAX = 1023

_SALT_MAGIC = b"Salted__"
_AES_BLOCK = 16
_B64_LINE = 64  # openssl enc -a writes 64 characters, then "\n"

# Feeding sizes for the bzip2 layers (see _Bzip2Layer._adapt).
_STEP_START = 64 << 10
_STEP_MAX = 1 << 20
_STEP_MIN_AFTER_EOS = 4 << 10
_STEP_MIN = 64
_OUT_TARGET = 8 << 20
# Most output one bzip2 block can give: 900,000 bytes before bzip2's first run-length stage,
# which turns 5 bytes into at most 255 (x51).  A block's bytes are CRC-checked by the time the
# next block's first byte comes out, so all output but the last _MAX_BLOCK_OUT bytes is checked:
# a bomb (2.3 KB that expands to gigabytes) is passed on in bounded pieces, never held whole.
_MAX_BLOCK_OUT = 900_000 * 51

_WRONG_KEY = "wrong key for this 2013 archive (tried MD5 and SHA-256 key derivation)"


def looks_legacy(prefix: bytes) -> bool:
    """True if ``prefix`` (at least PREFIX_LEN bytes) starts like a 2013 archive: a bzip2
    stream whose first block follows at once.  Anything shorter is answered False."""
    return (
        len(prefix) >= PREFIX_LEN
        and prefix[:3] == b"BZh"
        and 0x31 <= prefix[3] <= 0x39
        and prefix[4:10] == _BLOCK_MAGIC
    )


def _could_start_legacy(head: bytes) -> bool:
    """True if ``head`` (possibly shorter than PREFIX_LEN) agrees with a 2013 archive's start,
    so that a short input is reported as truncated rather than as 'not an archive'."""
    model = b"BZh9" + _BLOCK_MAGIC
    for i, byte in enumerate(head[:PREFIX_LEN]):
        if i == 3:
            if not 0x31 <= byte <= 0x39:
                return False
        elif byte != model[i]:
            return False
    return True


def password_from_keyfile(data: bytes) -> bytes:
    """Return exactly the password ``openssl enc -pass file:F`` took from a key file.

    OpenSSL reads the first line with BIO_gets (at most 1023 bytes), cuts it at the newline,
    and then uses it as a C string, so it also ends at the first NUL.  BIO_gets reports a line
    whose first byte is NUL (or an empty file) as a read error, so openssl refused such key
    files and no archive can have been made with them.  A key file whose first byte is a
    newline, however, gave the EMPTY password, which openssl (1.0.x as well as 3.x) accepted,
    so it is returned as b"" here: refusing it would make those archives unreadable.
    """
    if not data:
        raise KeyFileError("key file is empty: openssl could not read a password from it")
    if data[0] == 0:
        raise KeyFileError(
            "key file starts with a NUL byte: openssl reads no password from it, "
            "so no 2013 archive can have been made with it"
        )
    line = data[:_OPENSSL_PASS_MAX]
    for stop in (b"\n", b"\0"):
        cut = line.find(stop)
        if cut >= 0:
            line = line[:cut]
    return line


def evp_bytes_to_key(password: bytes, salt: bytes, digest: str) -> tuple:
    """OpenSSL EVP_BytesToKey with one iteration, for AES-256-CBC: returns (key, iv)."""
    material = b""
    block = b""
    while len(material) < 48:
        block = hashlib.new(digest, block + password + salt).digest()
        material += block
    return material[:32], material[32:48]


def decrypt_legacy(src, dst, password: bytes, *, prefix: bytes = b"", threaded: bool = True) -> int:
    """Decrypt a 2013 archive from ``src`` (binary file-like; ``prefix`` holds bytes already
    read from it) to ``dst`` (has .write); return the number of plaintext bytes written.

    Only bytes of bzip2 blocks whose CRC has been checked are ever written, so after a
    CorruptArchiveError what dst received is a prefix of the true plaintext.  With
    ``threaded`` (the default) the outer bzip2 layer runs in a second thread: the two bzip2
    layers cost about the same and both release the GIL, so this nearly halves the time.
    """
    out = _Sink(dst)
    rest = _Base64Layer(_CbcLayer(password, _Bzip2Layer(out, "inner")))
    chunks = _chunks(src, prefix)
    if threaded:
        _outer_in_thread(chunks, rest)
    else:
        _pump(chunks, _Bzip2Layer(rest, "outer"))
    return out.count


def _chunks(src, prefix):
    """Yield the input in pieces of up to READ_SIZE, after checking that it starts like a
    2013 archive (a short input that could be one is left to fail as truncated)."""
    head = bytes(prefix)
    while len(head) < PREFIX_LEN:
        chunk = src.read(READ_SIZE)
        if not chunk:
            break
        head += chunk
    if not head:
        raise NotAnArchiveError("empty input: not a 2013 archive")
    if not _could_start_legacy(head):
        raise NotAnArchiveError("not a 2013 archive: it does not start with a bzip2 block")
    yield head
    while True:
        chunk = src.read(READ_SIZE)
        if not chunk:
            return
        yield chunk


def _pump(chunks, layer):
    for chunk in chunks:
        layer.write(chunk)
    layer.close()


class _Emit:
    """Stands in for the base64 layer inside the reader thread: hands on what the outer layer
    passes (the Source's queue is short, so at most a few MB wait in it)."""

    def __init__(self, emit):
        self.write = emit

    def close(self):
        pass  # the end is told by the thread's function returning


def _outer_in_thread(chunks, rest):
    """Read and peel the outer bzip2 layer in a thread; peel the rest here.  Errors of the
    reader thread are re-raised here in order, after everything it passed on before them."""
    source = Source(lambda emit: _pump(chunks, _Bzip2Layer(_Emit(emit), "outer")), depth=4,
                    name="zg-legacy-outer")
    try:
        while (item := source.get()) is not END:
            rest.write(item)
        rest.close()
    finally:
        # On failure the reader stops at its next hand-on, or after its current read; it is
        # not waited for then, since a read from a stalled pipe could block for ever.
        source.close()


class _Sink:
    """End of the layer chain: writes to dst (all of it, even on a raw file) and counts."""

    def __init__(self, dst):
        self._dst = dst
        self.count = 0

    def write(self, data):
        n = self._dst.write(data)
        if n is not None and n < len(data):  # a raw file may take only part: write the rest
            view = memoryview(data)[n:]
            while view:
                view = view[self._dst.write(view) :]
        self.count += len(data)

    def close(self):
        pass


class _Bzip2Layer:
    """Multi-stream bzip2 decoder that passes on only CRC-checked output.

    Why the extra care: CPython's BZ2Decompressor.decompress() stops as soon as its input is
    used up, even when libbz2 is in the middle of writing out a block whose CRC it checks only
    after the block's last byte.  If a piece of input ends exactly on a block's last byte, the
    call returns up to 32 KiB of that block unchecked (seen with CPython 3.11).  So after each
    piece we call decompress(b"") until it returns nothing: libbz2 then has no output pending,
    which means every block it has written out passed its CRC (a failing CRC raises in the call
    that would have returned the block's last bytes, and that call returns nothing).  Output is
    held until that point, or until a stream ends (which also checks the stream's CRC).

    Python's BZ2Decompressor stops at the end of the first stream; pbzip2 writes one stream per
    900 kB of input, so streams are restarted here with whatever followed the end.  The input
    is fed in pieces whose size adapts (see _adapt) so that the bytes after a stream's end,
    which Python copies into unused_data, stay small, and one call's output stays bounded:
    at most one stream (900 kB for pbzip2 output), or for a plain single-stream bzip2 file
    about what one piece expands to.
    """

    def __init__(self, nxt, layer):
        self._next = nxt
        self._layer = layer
        self._dec = None  # None between streams
        self._stream_in = 0  # compressed bytes of the current stream so far
        self._streams = 0
        self._step = _STEP_START

    def write(self, data):
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            piece = view[pos : pos + self._step]
            pos += len(piece) - self._feed(piece)

    def _feed(self, piece):
        """Decompress one piece; return how many of its bytes followed a stream's end."""
        if self._dec is None:
            self._dec = bz2.BZ2Decompressor()
            self._stream_in = 0
        dec = self._dec
        held, size, produced, data = [], 0, 0, piece
        try:
            while True:  # drain: see the class docstring; each call's output is bounded
                more = dec.decompress(data, max_length=_OUT_TARGET)
                data = b""
                if more:
                    held.append(more)
                    size += len(more)
                    produced += len(more)
                    while size - len(held[0]) >= _MAX_BLOCK_OUT:  # a bomb: pass on what is surely checked
                        size -= len(held[0])
                        self._next.write(held.pop(0))
                if dec.eof or not more:
                    break
        except OSError:
            raise CorruptArchiveError(
                f"2013 archive is corrupt: the {self._layer} bzip2 layer has bad data "
                "or a CRC mismatch"
            ) from None
        leftover = len(dec.unused_data) if dec.eof else 0
        used = len(piece) - leftover
        self._stream_in += used
        if dec.eof:
            self._dec = None
            self._streams += 1
        self._adapt(used, produced, dec.eof)
        if produced:
            self._next.write(held[0] if len(held) == 1 else b"".join(held))
        return leftover

    def _adapt(self, used, produced, stream_ended):
        """Choose the next piece size: about two streams' worth after a stream ends (so the
        copy into unused_data stays proportional to the data), smaller when one piece gave
        more than _OUT_TARGET of output, otherwise growing toward _STEP_MAX."""
        if stream_ended:
            self._step = min(_STEP_MAX, max(_STEP_MIN_AFTER_EOS, 2 * self._stream_in))
        elif produced > _OUT_TARGET:
            self._step = max(_STEP_MIN, used * _OUT_TARGET // produced)
        else:
            self._step = min(_STEP_MAX, 2 * self._step)

    def close(self):
        if self._dec is not None:
            raise CorruptArchiveError(
                f"2013 archive is truncated: the {self._layer} bzip2 stream ends early"
            )
        if self._streams == 0:
            raise CorruptArchiveError(
                f"2013 archive is truncated: no {self._layer} bzip2 stream in it"
            )
        self._next.close()


def _b64_error(detail):
    return CorruptArchiveError(f"2013 archive is corrupt: the base64 layer {detail}")


class _Base64Layer:
    """Decode openssl's base64 text: 64-column lines, each ending in a newline, the last one
    possibly shorter.  The line layout is checked too, so damage shows up here rather than
    as garbage ciphertext further in."""

    def __init__(self, nxt):
        self._next = nxt
        self._col = 0  # characters in the current, unterminated line
        self._ended = False  # a short (hence last) line has been seen
        self._carry = b""  # base64 characters not yet forming a group of 4
        self._padded = False  # a group with "=" has been decoded: nothing may follow

    def write(self, data):
        data = bytes(data)
        self._check_lines(data)
        chars = data.replace(b"\n", b"")
        if self._carry:
            chars = self._carry + chars
        whole = len(chars) - len(chars) % 4
        self._carry = chars[whole:]
        if not whole:
            return
        if self._padded:
            raise _b64_error("has data after its '=' padding")
        try:
            decoded = binascii.a2b_base64(memoryview(chars)[:whole], strict_mode=True)
        except binascii.Error as err:
            raise _b64_error(f"is invalid ({err})") from None
        self._padded = chars[whole - 1] == ord("=")
        self._next.write(decoded)

    def _check_lines(self, data):
        if self._ended and data:
            raise _b64_error("has data after its last (short) line")
        # Fast path: newlines exactly every 65 bytes from where the current line ends.
        first = _B64_LINE - self._col
        expected = data[first :: _B64_LINE + 1]
        newlines = data.count(b"\n")
        if newlines == len(expected) == expected.count(b"\n"):
            if newlines:
                self._col = len(data) - (first + (_B64_LINE + 1) * (newlines - 1)) - 1
            else:
                self._col += len(data)
            return
        # Slow path, once at the end (the short last line) or on damage.
        lines = data.split(b"\n")
        for i, line in enumerate(lines):
            length = len(line) + (self._col if i == 0 else 0)
            if i == len(lines) - 1:
                if self._ended and line:
                    raise _b64_error("has data after its last (short) line")
                if length > _B64_LINE:
                    raise _b64_error(f"has a line longer than {_B64_LINE} characters")
                self._col = length
            else:
                if self._ended:
                    raise _b64_error("has data after its last (short) line")
                if not 0 < length <= _B64_LINE:
                    raise _b64_error(f"has a line of {length} characters (expected {_B64_LINE})")
                self._ended = length < _B64_LINE
                self._col = 0

    def close(self):
        if self._col:
            raise CorruptArchiveError(
                "2013 archive is truncated: the base64 layer's last line has no newline"
            )
        if self._carry:
            raise CorruptArchiveError(
                "2013 archive is truncated: the base64 layer ends inside a 4-character group"
            )
        self._next.close()


def _starts_bzip2(block):
    """True if a decrypted first block starts with a bzip2 stream header (BZh + level digit +
    block or end-of-stream magic): 10 fixed-ish bytes, so a wrong key fits by chance with
    odds of about 2^-77."""
    return (
        block[:3] == b"BZh"
        and 0x31 <= block[3] <= 0x39
        and block[4:10] in (_BLOCK_MAGIC, _EOS_MAGIC)
    )


class _CbcLayer:
    """``Salted__`` + salt + AES-256-CBC.  The last ciphertext block is held back until the
    end, where its PKCS#7 padding is checked and removed."""

    def __init__(self, password, nxt):
        self._password = bytes(password)
        self._next = nxt
        self._cipher = None
        self._pending = b""  # < 32 bytes before the key is chosen, then 1..16 bytes
        self.digest = None  # "md5" or "sha256" once chosen

    def write(self, data):
        buf = self._pending + data if self._pending else bytes(data)
        start = 0
        if self._cipher is None:
            if len(buf) < len(_SALT_MAGIC) + 8 + _AES_BLOCK:
                self._pending = buf
                return
            self._cipher = self._open(buf)
            start = len(_SALT_MAGIC) + 8
        rest = len(buf) - start
        keep = rest % _AES_BLOCK or _AES_BLOCK
        if rest > keep:
            self._next.write(self._cipher.decrypt(memoryview(buf)[start : len(buf) - keep]))
        self._pending = buf[len(buf) - keep :]

    def _open(self, buf):
        """Check the salt header and pick the digest whose key turns the first block into
        the start of a bzip2 stream."""
        if buf[: len(_SALT_MAGIC)] != _SALT_MAGIC:
            raise CorruptArchiveError(
                "2013 archive is corrupt: the encrypted layer does not start with 'Salted__'"
            )
        salt = buf[8:16]
        first = buf[16:32]
        for digest in ("md5", "sha256"):
            key, iv = evp_bytes_to_key(self._password, salt, digest)
            if _starts_bzip2(AES.new(key, AES.MODE_CBC, iv).decrypt(first)):
                self.digest = digest
                return AES.new(key, AES.MODE_CBC, iv)
        raise NoMatchingKeyError(_WRONG_KEY)

    def close(self):
        if self._cipher is None or len(self._pending) != _AES_BLOCK:
            raise CorruptArchiveError(
                "2013 archive is truncated: the AES-256-CBC ciphertext is not a whole "
                "number of blocks"
            )
        last = self._cipher.decrypt(self._pending)
        pad = last[-1]
        if not 1 <= pad <= _AES_BLOCK or last[-pad:] != bytes([pad]) * pad:
            raise CorruptArchiveError(
                "2013 archive is corrupt or truncated: bad PKCS#7 padding after "
                "AES-256-CBC decryption"
            )
        if pad < _AES_BLOCK:
            self._next.write(last[:-pad])
        self._next.close()
