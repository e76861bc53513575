#!/usr/bin/env python3
"""Write the v1 vectors added with zfsglacier 0.3 (run once; the outputs are committed):

- crafted inputs that ask a reader for unbounded work.  Each is an archive anyone with a recipient
  (.pub) could write; a reader must refuse it with the error class the manifest names, within
  256 MiB of memory, before trying any key slot where the header alone is at fault (SPEC 2.1, 5);
- a signed archive (SPEC 1.2) and one whose signature was changed.

Entries are merged into manifest.json beside the make_v1.py ones.
"""

import binascii
import hashlib
import io
import json
import lzma
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "v1"
sys.path.insert(0, str(HERE.parent.parent.parent))

from zfsglacier.format import archive, keys  # noqa: E402
from zfsglacier.format.header import seal_header  # noqa: E402
from zfsglacier.format.keys import derive, header_mac  # noqa: E402
from zfsglacier.format.stream import ChunkWriter  # noqa: E402

CHUNK = 4096


def sealed(compressed, algorithm, secret, slots=None, plain_length=0):
    """An archive whose body is ``compressed`` as given (valid AEAD), for ``secret``."""
    prep = archive.prepare(io.BytesIO(b""), [secret], algorithm=algorithm, chunk_size=CHUNK)
    h = prep.header
    if slots is not None:
        h.slots = slots
        seal_header(h, lambda covered: header_mac(prep.file_key, h.file_salt, covered))
    out = io.BytesIO()
    out.write(h.raw)
    w = ChunkWriter(out, derive(prep.file_key, h.mac, b"payload"), h.chunk_size, len(h.raw))
    w.write(compressed)
    w.finish(plain_length, hashlib.sha256(b"").digest())
    return out.getvalue()


def xz_with_dictionary(code):
    """A valid xz stream whose block header claims dictionary size code ``code`` (38: 2 GiB)."""
    data = bytearray(lzma.compress(b"x" * 1000, format=lzma.FORMAT_XZ,
                                   filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}]))
    start = 12  # after the stream header
    size = (data[start] + 1) * 4
    at = data.index(b"\x21\x01", start, start + size)  # filter id LZMA2, 1 byte of properties
    data[at + 2] = code
    crc = binascii.crc32(bytes(data[start:start + size - 4]))
    data[start + size - 4:start + size] = crc.to_bytes(4, "little")
    return bytes(data)


def zstd_huge_window():
    """A zstd frame (no content size) whose window descriptor asks 2^31 bytes, then one raw block."""
    window = 21 << 3  # exponent 21: 2^(10+21)
    payload = b"hello"
    block = (1 | (0 << 1) | (len(payload) << 3)).to_bytes(3, "little") + payload
    return b"\x28\xb5\x2f\xfd" + bytes([0x00, window]) + block


def main():
    secret = keys.classify_key((HERE / "secret.key").read_bytes()).secret  # committed 0644: a test key
    rnd = os.urandom
    many = [("passphrase", dict(log_n=20, r=8, p=16, salt=rnd(16), wrapped=rnd(48))) for _ in range(255)]
    costly = [("passphrase", dict(log_n=24, r=8, p=1, salt=rnd(16), wrapped=rnd(48)))] + \
        [secret.wrap(os.urandom(32))]
    cases = [
        ("fail_xz_huge_dictionary.zg", sealed(xz_with_dictionary(38), "xz", secret), "damaged",
         "xz stream claiming a 2 GiB dictionary: refused by the decoder's memory limit"),
        ("fail_zstd_huge_window.zg", sealed(zstd_huge_window(), "zstd", secret), "damaged",
         "zstd frame asking a 2 GiB window: refused (largest zfsglacier writes: 128 MiB)"),
        ("fail_many_passphrase_slots.zg", sealed(b"", "zstd", secret, slots=many), "damaged",
         "255 passphrase slots at N=2^20 p=16 (4 GiB, hours): refused before any slot is tried"),
        ("fail_scrypt_cost.zg", sealed(b"", "zstd", secret, slots=costly), "damaged",
         "a passphrase slot at N=2^24 beside a good secret slot: refused before any slot is tried"),
    ]
    signing = keys.SigningKey.generate()
    (HERE / "signer.pub").write_text(signing.signer().encode() + "\n")
    plain = b"a signed archive\n" * 1000
    out = io.BytesIO()
    archive.encrypt(io.BytesIO(plain), out, [secret], chunk_size=CHUNK, sign=signing)
    signed = out.getvalue()
    hlen = len(archive.read_header(io.BytesIO(signed)).raw)
    bad = bytearray(signed)
    bad[hlen - 1] ^= 1  # the signature's last byte
    cases += [
        ("good_signed.zg", signed, "ok", "signed by the Ed25519 key in signer.pub (SPEC 1.2)", plain),
        ("fail_bad_signature.zg", bytes(bad), "bad-signature", "signed archive whose signature was changed"),
    ]
    manifest_path = HERE / "manifest.json"
    manifest = [e for e in json.loads(manifest_path.read_text()) if e["file"] not in {c[0] for c in cases}]
    for name, blob, expect, note, *plain in cases:
        (HERE / name).write_bytes(blob)
        manifest.append({"file": name, "key": "secret.key", "expect": expect, "note": note,
                         "plaintext_sha256": hashlib.sha256(plain[0]).hexdigest() if plain else None})
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
