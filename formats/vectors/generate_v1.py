#!/usr/bin/env python3
"""Deterministic v1 vectors, written from SPEC.md alone (C2SP/CCTV style).

A second writer of the format, as `reference_reader.py` is a second reader: it imports nothing of
zfsglacier and uses `cryptography` for the ciphers, so zfsglacier is checked against bytes it did
not make.  Every key, salt and nonce comes from ``det(case, label)``, so running it again gives
the very same files (tests/test_vectors.py checks that).  One small function per case; each
returns the archive, what a reader must say of it, and the bytes it may emit:

- ``expect``: ok | not-an-archive | newer-version | damaged | no-key | bad-signature (SPEC 5);
- ``plaintext_sha256`` for ok cases;
- ``streaming_output_sha256`` / ``streaming_output_length`` for the others: the exact output of
  a reader that streams by section 4's reading rule (it holds back 80 bytes, opens a full chunk
  while C + 16 + 80 bytes remain, and writes each chunk that opened).  A reader that emits
  nothing before it fails conforms too; one that emits anything else does not.  These cases use
  compression none, so that no decoder's buffering changes what is emitted.

    python3 formats/vectors/generate_v1.py [DIR]      # default: formats/vectors/v1-spec
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

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
import xxhash

CHUNK = 4096  # the smallest chunk size (SPEC 1): several chunks from a few KB
CREATED = 1764547200  # 2025-12-01T00:00:00Z
SECRET = hashlib.sha256(b"zfsglacier vectors v1: secret.key").digest()
OTHER = hashlib.sha256(b"zfsglacier vectors v1: other.key").digest()
PASSPHRASE = "vector passphrase"


def det(case, label, n=32):
    """``n`` bytes fixed by the case and what they are for."""
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha256(f"zfsglacier vectors v1/{case}/{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


def hkdf(ikm, salt, label):
    """SPEC 2: HKDF-SHA256, info = "zfsglacier/v1 " || label, 32 bytes."""
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    return hmac.new(prk, b"zfsglacier/v1 " + label.encode() + b"\x01", hashlib.sha256).digest()


def seal(key, nonce, data, aad=None):
    return AESGCM(key).encrypt(nonce, data, aad)


def key_line(prefix, key):
    """SPEC 2: PREFIX || base64url-unpadded(key || first 4 bytes of SHA-256(prefix || key))."""
    raw = key + hashlib.sha256(prefix.encode() + key).digest()[:4]
    return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def x25519_public(secret):
    scalar = X25519PrivateKey.from_private_bytes(hkdf(secret, b"", "x25519 identity"))
    return scalar.public_key().public_bytes_raw()


# --- slots (SPEC 2) -----------------------------------------------------------------------------

def secret_slot(case, k, secret, tag="secret"):
    salt = det(case, f"{tag} slot salt", 16)
    return 1, salt + seal(hkdf(secret, salt, "secret slot"), b"\0" * 12, k, b"secret")


def x25519_slot(case, k, recipient):
    e = X25519PrivateKey.from_private_bytes(det(case, "x25519 ephemeral"))
    ephemeral = e.public_key().public_bytes_raw()
    shared = e.exchange(X25519PublicKey.from_public_bytes(recipient))
    return 3, ephemeral + seal(hkdf(shared, ephemeral + recipient, "x25519 slot"), b"\0" * 12, k, b"x25519")


def passphrase_slot(case, k, passphrase, log_n=10, r=8, p=1):
    salt = det(case, "passphrase salt", 16)
    kek = hashlib.scrypt(passphrase.encode(), salt=salt, n=1 << log_n, r=r, p=p, dklen=32, maxmem=64 << 20)
    return 2, bytes([log_n, r, p]) + salt + seal(kek, b"\0" * 12, k, b"passphrase")


# --- the archive (SPEC 1, 3, 4) -------------------------------------------------------------------

def digest(plain, suite=1):
    """SPEC 4: suite 1, SHA-256 over the SHA-256s of 4 MiB blocks; suite 2, XXH3-128 (canonical,
    big-endian) and 16 zero bytes."""
    if suite == 2:
        return xxhash.xxh3_128(plain).digest() + bytes(16)
    blocks = b"".join(hashlib.sha256(plain[i:i + (4 << 20)]).digest() for i in range(0, len(plain), 4 << 20))
    return hashlib.sha256(blocks).digest()


def archive(case, plain, *, slots=None, compression=0, compressed=None, metadata=None, version=1,
            trailer=None, sign=False, suite=1):
    """The bytes of one archive; ``slots(k)`` gives its slots for file key k (default: one secret
    slot for secret.key); ``compressed`` overrides the body's compressed bytes; ``trailer`` the
    sealed trailer's fields (plaintext length, compressed length, digest); ``suite`` the header's
    cipher suite (SPEC 1), which names the trailer's digest."""
    k = det(case, "file key")
    file_salt = det(case, "file salt", 16)
    slots = slots(k) if slots else [secret_slot(case, k, SECRET)]
    if compressed is None:
        compressed = {0: lambda b: b, 3: lambda b: bz2.compress(b, 9), 4: lambda b: lzma.compress(b)}[compression](plain)
    meta = json.dumps(metadata or {"host": "vectors", "tool": "generate_v1.py"}, sort_keys=True,
                      separators=(",", ":")).encode()
    private = seal(hkdf(k, file_salt, "metadata"), b"\0" * 12, meta)
    flags = 2 if sign else 0
    fields = struct.pack(">HQBbBI", flags, CREATED, compression, 0, suite, CHUNK) + file_salt
    fields += bytes([len(slots)]) + b"".join(struct.pack(">BH", t, len(b)) + b for t, b in slots)
    fields += struct.pack(">I", len(private)) + private
    size = 14 + len(fields) + 32 + (96 if sign else 0)
    head = b"ZGLACIER" + struct.pack(">HI", version, size) + fields
    mac = hmac.new(hkdf(k, file_salt, "header"), head, hashlib.sha256).digest()
    header = head + mac
    if sign:
        key = Ed25519PrivateKey.from_private_bytes(det(case, "signing seed"))
        header += key.public_key().public_bytes_raw() + key.sign(header)
    payload = hkdf(k, mac, "payload")
    body = [seal(payload, i.to_bytes(11, "big") + b"\0", compressed[off:off + CHUNK])
            for i, off in enumerate(range(0, len(compressed), CHUNK))]
    t = trailer or (len(plain), len(compressed), digest(plain, suite))
    body.append(seal(payload, len(body).to_bytes(11, "big") + b"\x01", struct.pack(">QQ32s", *t)))
    data = header + b"".join(body)
    return data + b"ZGLACEND" + struct.pack(">Q", len(data) + 16)


def streaming_output(blob, case):
    """What a reader following SPEC 4's reading rule writes before it fails, for an archive of
    compression none made with ``case``'s file key: it holds back the last 80 bytes, opens a full
    chunk while C + 16 + 80 bytes remain, and at the end, when the last 16 bytes are a footer that
    gives the length read, opens the last data chunk before the trailer; each chunk that opens is
    written at once, and the first that does not ends the output."""
    hs = struct.unpack(">I", blob[10:14])[0]
    payload = hkdf(det(case, "file key"), blob[hs - 32:hs], "payload")
    out, pos, n = [], hs, 0

    def opened(piece):
        try:
            out.append(AESGCM(payload).decrypt(n.to_bytes(11, "big") + b"\0", piece, None))
            return True
        except Exception:  # noqa: BLE001 - InvalidTag: the output ends here
            return False

    while len(blob) - pos >= CHUNK + 16 + 80:
        if not opened(blob[pos:pos + CHUNK + 16]):
            return b"".join(out)
        pos, n = pos + CHUNK + 16, n + 1
    footer_ok = blob[-16:-8] == b"ZGLACEND" and struct.unpack(">Q", blob[-8:])[0] == len(blob)
    last = blob[pos:len(blob) - 80]
    if footer_ok and 17 <= len(last) <= CHUNK + 16:
        opened(last)
    return b"".join(out)


def text(n, seed):
    words = [b"tank", b"snapshot", b"INSERT", b"VALUES", b"glacier", b"restore", b"\n"]
    out, i = bytearray(), 0
    while len(out) < n:
        h = hashlib.sha256(b"%s %d" % (seed, i)).digest()
        out += h if h[0] < 180 else b" ".join(words[b % len(words)] for b in h[:12])
        i += 1
    return bytes(out[:n])


# --- the cases ----------------------------------------------------------------------------------

P = text(5 * CHUNK + 123, b"plain")  # five full chunks and a short one, uncompressed


def flip(blob, at):
    b = bytearray(blob)
    b[at] ^= 0x01
    return bytes(b)


def header_size(blob):
    return struct.unpack(">I", blob[10:14])[0]


def good(name, blob, plain, note, key="secret.key"):
    return {"file": name, "blob": blob, "key": key, "expect": "ok", "note": note, "plain": plain}


def bad(name, blob, expect, note, key="secret.key", case="fail_base"):
    return {"file": name, "blob": blob, "key": key, "expect": expect, "note": note,
            "partial": streaming_output(blob, case) if expect == "damaged" else b""}


def cases():
    out = [
        good("good_none.zg", archive("none", P), P, "compression none, one secret slot, six chunks"),
        good("good_bz2.zg", archive("bz2", P, compression=3), P, "bzip2 stream"),
        good("good_xz.zg", archive("xz", P, compression=4), P, "xz stream"),
        good("good_two_frames.zg", archive("two_frames", P, compression=3,
                                           compressed=bz2.compress(P[:9000]) + bz2.compress(P[9000:])), P,
             "two concatenated bzip2 streams: readers read across frames (SPEC 4)"),
        good("good_x25519.zg", archive("x25519", P, slots=lambda k: [x25519_slot("x25519", k, x25519_public(SECRET))]),
             P, "an x25519 slot for secret.key's recipient (its .pub)"),
        good("good_passphrase.zg", archive("passphrase", P, slots=lambda k: [passphrase_slot("passphrase", k, PASSPHRASE)]),
             P, "a passphrase slot, scrypt log_n=10 r=8 p=1", key=f"passphrase:{PASSPHRASE}"),
        good("good_second_slot.zg", archive("second", P, slots=lambda k: [secret_slot("second", k, OTHER, "other"),
                                                                          secret_slot("second", k, SECRET)]),
             P, "two secret slots; secret.key opens the second"),
        good("good_unknown_slot_type.zg", archive("unknown_slot", P, slots=lambda k: [
            (9, det("unknown_slot", "type 9 body", 40)), secret_slot("unknown_slot", k, SECRET)]),
            P, "a slot of type 9, unknown: skipped by its length (SPEC 2)"),
        good("good_unknown_metadata_key.zg", archive("unknown_meta", P, metadata={
            "host": "vectors", "label": "weekly", "tool": "generate_v1.py", "x-future": [1, 2]}), P,
            "private metadata with keys a reader does not know: ignored (SPEC 3)"),
        good("good_empty.zg", archive("empty", b""), b"", "empty plaintext: no data chunk, trailer only"),
        good("good_exact_chunks.zg", archive("exact", P[:2 * CHUNK]), P[:2 * CHUNK],
             "plaintext of exactly two chunks: no short last chunk"),
        good("good_signed.zg", archive("signed", P, sign=True), P,
             "signed header (SPEC 1.2); the signer is the key of det('signed', 'signing seed')"),
        good("good_xxh3_none.zg", archive("xxh3_none", P, suite=2), P,
             "cipher suite 2: the trailer's digest is XXH3-128 and 16 zero bytes (SPEC 4)"),
        good("good_xxh3_bz2.zg", archive("xxh3_bz2", P, compression=3, suite=2), P,
             "cipher suite 2, bzip2: the digest is of the decompressed plaintext"),
        good("good_xxh3_empty.zg", archive("xxh3_empty", b"", suite=2), b"",
             "cipher suite 2, empty plaintext: XXH3-128 of nothing"),
    ]
    base = archive("fail_base", P)
    hs = header_size(base)
    sealed = CHUNK + 16
    chunks = [base[hs + i * sealed: hs + (i + 1) * sealed] for i in range(6)]
    tail = base[hs + 5 * sealed + (123 + 16):]  # trailer (64) and footer (16)
    last = base[hs + 5 * sealed: hs + 5 * sealed + 123 + 16]
    out += [
        bad("fail_not_an_archive.zg", b"ZGLACIEX" + base[8:], "not-an-archive", "magic changed"),
        bad("fail_version_2.zg", archive("v2", P, version=2), "newer-version", "version 2"),
        bad("fail_wrong_key.zg", base, "no-key", "good archive, opened with other.key", key="other.key"),
        bad("fail_flipped_mac.zg", flip(base, hs - 1), "no-key", "MAC changed: reads as a wrong key (SPEC 5)"),
        bad("fail_flipped_chunk_3.zg", flip(base, hs + 3 * sealed + 7), "damaged",
            "chunk 3 changed: chunks 0-2 may be emitted"),
        bad("fail_swapped_chunks_1_2.zg", base[:hs] + chunks[0] + chunks[2] + chunks[1] + b"".join(chunks[3:5])
            + last + tail, "damaged", "chunks 1 and 2 swapped: chunk 0 may be emitted"),
        bad("fail_dropped_chunk_4.zg", base[:hs] + b"".join(chunks[:4]) + last + tail[:-8]
            + struct.pack(">Q", len(base) - sealed), "damaged", "chunk 4 left out, footer adjusted"),
        bad("fail_cut_in_chunk_5.zg", base[:hs + 5 * sealed + 50], "damaged", "cut inside the last data chunk"),
        bad("fail_cut_trailer.zg", base[:-20], "damaged", "cut inside the trailer"),
        bad("fail_appended_byte.zg", base + b"\0", "damaged", "one byte appended"),
        bad("fail_trailer_length.zg", archive("trailer_len", P, trailer=(len(P) + 1, len(P), digest(P))), "damaged",
            "sealed trailer says one plaintext byte more: every chunk opens, the end check fails", case="trailer_len"),
        bad("fail_trailer_digest.zg", archive("trailer_dig", P, trailer=(len(P), len(P), digest(P + b"x"))),
            "damaged", "sealed trailer commits to another digest", case="trailer_dig"),
        bad("fail_65_slots.zg", archive("many", P, slots=lambda k: [secret_slot("many", k, OTHER, f"o{i}")
                                                                    for i in range(64)] + [secret_slot("many", k, SECRET)]),
            "damaged", "65 slots: refused before any slot is tried (SPEC 2.1)"),
    ]
    out += [
        bad("fail_xxh3_trailer_digest.zg", archive("xxh3_dig", P, suite=2, trailer=(len(P), len(P), digest(P + b"x", 2))),
            "damaged", "suite 2, the sealed trailer commits to another plaintext's XXH3-128", case="xxh3_dig"),
        bad("fail_xxh3_digest_padding.zg", archive("xxh3_pad", P, suite=2, trailer=(
            len(P), len(P), digest(P, 2)[:16] + b"\x01" + bytes(15))), "damaged",
            "suite 2, right XXH3-128 but the 16 bytes after it are not zero", case="xxh3_pad"),
        bad("fail_suite_1_digest_under_suite_2.zg", archive("suite_mix", P, suite=2, trailer=(
            len(P), len(P), digest(P, 1))), "damaged",
            "suite 2 header, suite 1 digest in the trailer: the header's suite decides", case="suite_mix"),
        bad("fail_suite_1_header_xxh3_digest.zg", archive("suite_mix1", P, suite=1, trailer=(
            len(P), len(P), digest(P, 2))), "damaged",
            "suite 1 header, suite 2 digest in the trailer", case="suite_mix1"),
        bad("fail_suite_3.zg", archive("suite3", P, suite=3), "newer-version",
            "cipher suite 3, unknown: the reader says a newer release is needed (SPEC 1)"),
    ]
    signed = archive("bad_signature", P, sign=True)
    out.append(bad("fail_bad_signature.zg", flip(signed, header_size(signed) - 1), "bad-signature",
                   "signature's last byte changed"))
    return out


def main(argv):
    here = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent / "v1-spec"
    here.mkdir(parents=True, exist_ok=True)
    (here / "secret.key").write_text("# zfsglacier test vectors: not a secret\n" + key_line("ZG-SECRET-KEY-", SECRET) + "\n")
    (here / "other.key").write_text("# zfsglacier test vectors: not a secret\n" + key_line("ZG-SECRET-KEY-", OTHER) + "\n")
    manifest = []
    for c in cases():
        (here / c["file"]).write_bytes(c["blob"])
        entry = {"file": c["file"], "key": c["key"], "expect": c["expect"], "note": c["note"]}
        if c["expect"] == "ok":
            entry["plaintext_sha256"] = hashlib.sha256(c["plain"]).hexdigest()
        else:
            entry["streaming_output_sha256"] = hashlib.sha256(c["partial"]).hexdigest()
            entry["streaming_output_length"] = len(c["partial"])
        manifest.append(entry)
    (here / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(manifest)} vectors to {here}")


if __name__ == "__main__":
    main(sys.argv)
