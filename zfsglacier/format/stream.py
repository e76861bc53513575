"""The encrypted body: a STREAM construction of AES-256-GCM chunks, then a trailer.

Layout after the header:  chunk_0 .. chunk_{n-1}  trailer
- every chunk carries ``chunk_size`` plaintext bytes, except the last data chunk, which carries
  1..chunk_size; a chunk is its ciphertext followed by a 16-byte tag;
- chunk i is sealed with nonce = i (11 bytes, big-endian) || 0x00;
- the trailer is sealed with nonce = n || 0x01 and holds the plaintext length, the compressed
  length and the plaintext digest (TRAILER below; which digest, the cipher suite says: SPEC 4);
- a public footer ends the archive: ``ZGLACEND`` and the archive's total length (format.FOOTER).  It is
  not secret and not what makes an archive trustworthy (the trailer is); it lets tools without
  a key (zg-upload, a store check) tell a complete archive from one cut short by a dying pipeline.

The payload key depends on the header MAC, so every rule is checked by authentication: reordering
or dropping chunks breaks a nonce, truncation or an appended byte leaves no valid trailer at the
end, a chunk from another archive has another key.  Readers and writers are plain file-like
objects so compressors and uploads compose with them like pipes.
"""

import io
import struct

from Crypto.Cipher import AES

from ..errors import CorruptArchiveError
from .header import FOOTER, FOOTER_MAGIC, footer_ok

TAG_SIZE = 16
TRAILER = struct.Struct(">QQ32s")  # plaintext length, compressed length, plaintext digest
TRAILER_SEALED = TRAILER.size + TAG_SIZE
END_SIZE = TRAILER_SEALED + FOOTER.size  # what a reader holds back until the end of input


def _nonce(counter, last):
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class ChunkWriter(io.RawIOBase):
    """Seals what is written to it into chunks on ``out``; ``finish()`` writes the trailer."""

    def __init__(self, out, payload_key, chunk_size, header_length):
        self._out = out
        self._key = payload_key
        self._size = chunk_size
        self._buf = bytearray()
        self._counter = 0
        self.compressed_length = 0
        self.archive_length = header_length
        self._finished = False

    def writable(self):
        return True

    def write(self, data):
        self._buf += data
        self.compressed_length += len(data)
        if len(self._buf) >= self._size:
            view = memoryview(self._buf)
            done = 0
            while len(self._buf) - done >= self._size:
                self._seal(view[done:done + self._size])
                done += self._size
            view.release()
            del self._buf[:done]
        return len(data)

    def _seal(self, piece, last=False):
        c = AES.new(self._key, AES.MODE_GCM, nonce=_nonce(self._counter, last))
        ct, tag = c.encrypt_and_digest(piece)
        self._out.write(ct + tag)
        self.archive_length += len(ct) + TAG_SIZE
        self._counter += 1

    def finish(self, plaintext_length, plaintext_digest):
        """Write the short last chunk, if any, and the trailer that marks a complete archive."""
        if self._finished:
            return
        if self._buf:
            self._seal(bytes(self._buf))
            self._buf.clear()
        self._seal(TRAILER.pack(plaintext_length, self.compressed_length, plaintext_digest), last=True)
        self.archive_length += FOOTER.size
        self._out.write(FOOTER.pack(FOOTER_MAGIC, self.archive_length))
        self._finished = True


class ChunkReader(io.RawIOBase):
    """Yields only authenticated bytes of the body; ``trailer`` is set once the end is reached."""

    def __init__(self, src, payload_key, chunk_size, header_length):
        self._src = src
        self._length = header_length  # bytes of the archive read so far
        self._key = payload_key
        self._sealed = chunk_size + TAG_SIZE
        self._buf = bytearray()
        self._out = b""
        self._pos = 0  # read position in _out: slicing a 1 MiB chunk per small read is quadratic
        self._counter = 0
        self._eof = False
        self.trailer = None  # (plaintext length, compressed length, sha256) after the end
        self.compressed_length = 0

    def readable(self):
        return True

    def _open(self, sealed, last):
        c = AES.new(self._key, AES.MODE_GCM, nonce=_nonce(self._counter, last))
        try:
            plain = c.decrypt_and_verify(sealed[:-TAG_SIZE], sealed[-TAG_SIZE:])
        except ValueError:
            what = "end of the archive" if last else f"chunk {self._counter}"
            raise CorruptArchiveError(
                f"archive fails authentication at {what}: it is damaged, truncated or was modified") from None
        self._counter += 1
        return plain

    def _fill(self):
        """Read until a whole chunk can be opened.  The last END_SIZE bytes of the input are
        always held back: only at end of input do we know they are the trailer and footer."""
        want = self._sealed + END_SIZE
        while len(self._buf) < want and not self._eof:
            piece = self._src.read(want - len(self._buf))  # just what completes a chunk: no big moves
            if not piece:
                self._eof = True
            else:
                self._buf += piece
                self._length += len(piece)
        if len(self._buf) >= want:
            with memoryview(self._buf) as view:
                out = self._open(view[:self._sealed], last=False)
            del self._buf[:self._sealed]
            return out
        # End of input: what is left is [short last chunk] + trailer.  A message can't end without
        # a trailer sealed with the last flag, so anything shorter is a truncation.
        if self.trailer is not None:
            return b""
        if len(self._buf) < END_SIZE or not footer_ok(bytes(self._buf[-FOOTER.size:]), self._length):
            raise CorruptArchiveError("archive is truncated: its end (trailer and footer) is missing")
        del self._buf[-FOOTER.size:]
        rest = bytes(self._buf[:-TRAILER_SEALED])
        out = b""
        if rest:
            if len(rest) <= TAG_SIZE:
                raise CorruptArchiveError("archive is truncated or damaged near its end")
            out = self._open(rest, last=False)
        self.trailer = TRAILER.unpack(self._open(bytes(self._buf[-TRAILER_SEALED:]), last=True))
        self._buf.clear()
        return out

    def readinto(self, b):
        if self._pos >= len(self._out):
            self._out, self._pos = self._fill(), 0
            if not self._out:
                self._check_length()
                return 0
        n = min(len(b), len(self._out) - self._pos)
        b[:n] = memoryview(self._out)[self._pos:self._pos + n]
        self._pos += n
        self.compressed_length += n
        return n

    def read_chunk(self):
        """Next authenticated piece as it comes (no copy into a caller's buffer); b"" at the end."""
        if self._pos < len(self._out):
            out, self._out, self._pos = self._out[self._pos:], b"", 0
        else:
            out = self._fill()
        if not out and self.trailer is not None:
            self._check_length()
        self.compressed_length += len(out)
        return out

    def _check_length(self):
        if self.trailer[1] != self.compressed_length:
            raise CorruptArchiveError("archive body length differs from the length its trailer records")
