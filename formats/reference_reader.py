#!/usr/bin/env python3
"""An independent reader of zfsglacier archive format version 1, written from SPEC.md alone.

It imports nothing of zfsglacier, and uses another cryptography library than zfsglacier does
(`cryptography` here, PyCryptodome there), so that the vectors are checked by a second reading of
the specification, not by the code that wrote them.  It is slow and simple: the whole archive in
memory, one thread.  It is not a tool; it is the spec in executable form, section by section.

    python3 formats/reference_reader.py vectors/v1          # check every vector in the manifest
    python3 formats/reference_reader.py ARCHIVE KEYFILE > PLAINTEXT

A result is one of the manifest's words: ok, not-an-archive, newer-version, damaged, no-key,
bad-signature (SPEC section 5).
"""

import base64
import bz2
import hashlib
import hmac
import json
import lzma
import struct
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class Refused(Exception):
    """The archive is refused; ``word`` is the manifest's name for why."""

    def __init__(self, word, why):
        super().__init__(f"{word}: {why}")
        self.word = word


def hkdf(ikm, salt, label):
    """Section 2: HKDF-SHA256 (RFC 5869), info = "zfsglacier/v1 " || label, 32 bytes."""
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    return hmac.new(prk, b"zfsglacier/v1 " + label.encode() + b"\x01", hashlib.sha256).digest()


def key_file(text, prefix):
    """Section 2: PREFIX || base64url-unpadded(key || first 4 bytes of SHA-256(prefix || key))."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(prefix):
            raw = base64.urlsafe_b64decode(line[len(prefix):] + "=" * (-len(line[len(prefix):]) % 4))
            key, check = raw[:-4], raw[-4:]
            if hashlib.sha256(prefix.encode() + key).digest()[:4] != check:
                raise ValueError(f"bad check bytes in a {prefix} line")
            return key
    raise ValueError(f"no {prefix} line")


class Header:
    """Section 1, field by field."""

    def __init__(self, data):
        if len(data) < 8 or data[:8] != b"ZGLACIER":
            raise Refused("not-an-archive", "no ZGLACIER magic")
        if len(data) < 14:
            raise Refused("damaged", "cut inside the first 14 bytes")
        version, size = struct.unpack(">HI", data[8:14])
        if version != 1:
            raise Refused("newer-version", f"version {version}")
        if not 47 < size <= 1 << 20 or size > len(data):
            raise Refused("damaged", f"header size {size}")
        self.raw, p = data[:size], 14
        self.flags, self.created, self.compression, self.level, self.suite, self.chunk_size = \
            struct.unpack(">HQBbBI", self.raw[p:p + 17])
        p += 17
        if self.suite not in (1, 2):
            raise Refused("newer-version", f"cipher suite {self.suite}")
        if self.flags & ~3 or self.compression > 4 or not 4096 <= self.chunk_size <= 16 << 20:
            raise Refused("damaged", "flags, compression or chunk size out of range")
        self.file_salt, p = self.raw[p:p + 16], p + 16
        self.snapshot = None
        if self.flags & 1:
            self.snapshot, p = struct.unpack(">QQQQIIB", self.raw[p:p + 41]), p + 41
        self.slots, p = self._slots(p)
        (private_length,), p = struct.unpack(">I", self.raw[p:p + 4]), p + 4
        self.private, p = self.raw[p:p + private_length], p + private_length
        self.mac_at, p = p, p + 32
        self.mac = self.raw[self.mac_at:p]
        self.signature = None
        if self.flags & 2:
            self.signature, p = (self.raw[p:p + 32], self.raw[p + 32:p + 96]), p + 96
        if p != size:
            raise Refused("damaged", f"header fields end at {p}, header_size says {size}")

    def _slots(self, p):
        count, p = self.raw[p], p + 1
        slots = []
        for _ in range(count):
            kind, length = struct.unpack(">BH", self.raw[p:p + 3])
            slots.append((kind, self.raw[p + 3:p + 3 + length]))
            p += 3 + length
        # Section 2.1: limits checked before any slot is tried.
        passphrases = [b for k, b in slots if k == 2]
        if count == 0 or count > 64 or len(passphrases) > 4 or any(
                len(b) < 3 or b[0] > 17 or b[1] > 8 or b[2] > 8 for b in passphrases):
            raise Refused("damaged", "key slots beyond the reader's limits")
        return slots, p


def unwrap(kek, kind_name, wrapped):
    try:
        return AESGCM(kek).decrypt(b"\0" * 12, wrapped, kind_name.encode())
    except InvalidTag:
        return None


def file_keys(header, secret=None, passphrase=None):
    """Section 2: every file key K that a slot yields for the key given."""
    for kind, body in header.slots:
        if kind == 1 and secret is not None:
            yield unwrap(hkdf(secret, body[:16], "secret slot"), "secret", body[16:64])
        elif kind == 3 and secret is not None:
            scalar = X25519PrivateKey.from_private_bytes(hkdf(secret, b"", "x25519 identity"))
            ours = scalar.public_key().public_bytes_raw()
            shared = scalar.exchange(X25519PublicKey.from_public_bytes(body[:32]))
            yield unwrap(hkdf(shared, body[:32] + ours, "x25519 slot"), "x25519", body[32:80])
        elif kind == 2 and passphrase is not None:
            log_n, r, p, salt = body[0], body[1], body[2], body[3:19]
            kek = hashlib.scrypt(passphrase.encode(), salt=salt, n=1 << log_n, r=r, p=p, dklen=32,
                                 maxmem=256 << 20)
            yield unwrap(kek, "passphrase", body[19:67])


def open_header(header, secret=None, passphrase=None):
    """Sections 1.2 and 3: the signature first (when present), then a slot, then the MAC; a MAC
    that fails reads as no key (section 5: no passphrase oracle)."""
    if header.signature is not None:
        signer, signature = header.signature
        try:
            Ed25519PublicKey.from_public_bytes(signer).verify(signature, header.raw[:header.mac_at + 32])
        except InvalidSignature:
            raise Refused("bad-signature", "the header signature fails") from None
    for k in file_keys(header, secret, passphrase):
        if k is None:
            continue
        mac = hmac.new(hkdf(k, header.file_salt, "header"), header.raw[:header.mac_at], hashlib.sha256).digest()
        if hmac.compare_digest(mac, header.mac):
            return k
    raise Refused("no-key", "no slot opens, or the header MAC fails")


def check_private(header, k):
    """Section 3: the private metadata opens, and for a plain stream names the public guids."""
    try:
        meta = json.loads(AESGCM(hkdf(k, header.file_salt, "metadata")).decrypt(b"\0" * 12, header.private, None))
    except (InvalidTag, ValueError):
        raise Refused("damaged", "private metadata does not open") from None
    if header.snapshot is not None and meta.get("stream") == "plain" and "toguid" in meta:
        if (int(meta["toguid"]), int(meta["fromguid"])) != header.snapshot[:2]:
            raise Refused("damaged", "private guids differ from the public snapshot block")
    return meta


def body(data, header, k):
    """Section 4: chunks, trailer, footer."""
    end = len(data) - 16
    if end < len(header.raw) + 64 or data[end:end + 8] != b"ZGLACEND" or \
            struct.unpack(">Q", data[end + 8:])[0] != len(data):
        raise Refused("damaged", "no footer giving the archive's length")
    aead = AESGCM(hkdf(k, header.mac, "payload"))
    sealed = data[len(header.raw):end - 64]
    size, out, n = header.chunk_size + 16, [], 0
    while sealed:
        piece, sealed = sealed[:size], sealed[size:]
        if len(piece) < 17:
            raise Refused("damaged", "a data chunk too short")
        try:
            out.append(aead.decrypt(n.to_bytes(11, "big") + b"\0", piece, None))
        except InvalidTag:
            raise Refused("damaged", f"data chunk {n} does not authenticate") from None
        n += 1
    try:
        trailer = aead.decrypt(n.to_bytes(11, "big") + b"\x01", data[end - 64:end], None)
    except InvalidTag:
        raise Refused("damaged", "the trailer does not authenticate (cut, appended or reordered)") from None
    length, compressed, digest = struct.unpack(">QQ32s", trailer)
    packed = b"".join(out)
    if len(packed) != compressed:
        raise Refused("damaged", "compressed length differs from the trailer's")
    plain = decompress(header.compression, packed)
    if len(plain) != length or plaintext_digest(header.suite, plain) != digest:
        raise Refused("damaged", "plaintext length or digest differs from the trailer's")
    return plain


def plaintext_digest(suite, plain):
    """Section 4: suite 1, SHA-256 over the SHA-256s of 4 MiB blocks; suite 2, XXH3-128 in its
    canonical big-endian bytes, then 16 zero bytes."""
    if suite == 2:
        import xxhash  # only archives of suite 2 need it
        return xxhash.xxh3_128(plain).digest() + bytes(16)
    blocks = b"".join(hashlib.sha256(plain[i:i + (4 << 20)]).digest() for i in range(0, len(plain), 4 << 20))
    return hashlib.sha256(blocks).digest()


def decompress(algorithm, data):
    """Section 4: concatenated frames of the header's algorithm; section 5's decoding bounds."""
    try:
        if algorithm == 0:
            return data
        if algorithm == 1:
            import zstandard
            reader = zstandard.ZstdDecompressor(max_window_size=128 << 20).stream_reader(data, read_across_frames=True)
            return reader.read() if data else b""
        if algorithm == 2:
            import lz4.frame
            return _frames(data, lz4.frame.LZ4FrameDecompressor)
        if algorithm == 3:
            return _frames(data, bz2.BZ2Decompressor)
        return _frames(data, lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=128 << 20))
    except Exception as err:  # noqa: BLE001 - every decoder failure is a damaged archive
        raise Refused("damaged", f"cannot be decompressed: {err}") from None


def _frames(data, decoder):
    out = []
    while data:
        d = decoder()
        out.append(d.decompress(data))
        if not d.eof:
            raise ValueError("a frame is cut short")
        data = d.unused_data
    return b"".join(out)


def read(data, secret=None, passphrase=None):
    """The plaintext of the archive ``data``, or Refused."""
    header = Header(data)
    k = open_header(header, secret, passphrase)
    check_private(header, k)
    return body(data, header, k)


def check_vectors(directory):
    """Every vector of the manifest: the result must be its ``expect`` word, and an ok's
    plaintext its SHA-256.  Returns the lines that disagree."""
    directory = Path(directory)
    bad = []
    for vec in json.loads((directory / "manifest.json").read_text()):
        key = vec["key"]
        secret = passphrase = None
        if key.startswith("passphrase:"):
            passphrase = key[len("passphrase:"):]
        else:
            secret = key_file((directory / key).read_text(), "ZG-SECRET-KEY-")
        try:
            plain = read((directory / vec["file"]).read_bytes(), secret, passphrase)
            got = "ok" if hashlib.sha256(plain).hexdigest() == vec["plaintext_sha256"] else "wrong plaintext"
        except Refused as err:
            got = err.word
        if got != vec["expect"]:
            bad.append(f"{vec['file']}: expected {vec['expect']}, got {got}")
    return bad


def main(argv):
    if len(argv) == 1:
        bad = check_vectors(argv[0])
        print("\n".join(bad) or "every vector as expected")
        return 1 if bad else 0
    archive, keyfile = argv
    try:
        sys.stdout.buffer.write(read(Path(archive).read_bytes(), key_file(Path(keyfile).read_text(), "ZG-SECRET-KEY-")))
    except Refused as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
