#!/usr/bin/env python3
"""Write the v1 test vectors (run once; the outputs are committed and must never change).

Every implementation of format v1 must open each good_* vector to the plaintext whose SHA-256 the
manifest gives, and reject each fail_* vector with the error class the manifest names.
"""

import hashlib
import io
import json
import os
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "v1"
sys.path.insert(0, str(HERE.parent.parent.parent))

from zfsglacier.format import archive, keys  # noqa: E402
from zfsglacier.format.header import read_header  # noqa: E402
from zfsglacier.format.stream import TAG_SIZE, END_SIZE  # noqa: E402

CHUNK = 4096


def plaintext(size, seed):
    rnd = random.Random(seed)
    words = [b"tank", b"snapshot", b"INSERT", b"VALUES", b"glacier", b"restore", b"\n"]
    out = bytearray()
    while len(out) < size:
        out += rnd.randbytes(64) if rnd.random() < 0.7 else b" ".join(rnd.choice(words) for _ in range(16))
    return bytes(out[:size])


def main():
    HERE.mkdir(exist_ok=True)
    secret, other = keys.SecretKey.generate(), keys.SecretKey.generate()
    recovery = keys.SecretKey.generate()
    for name, k in (("secret.key", secret), ("other.key", other), ("recovery.key", recovery)):
        (HERE / name).write_text(keys.secret_key_file_text(k, "vector"))
    (HERE / "recipients.pub").write_text(secret.recipient().encode() + "\n" + recovery.recipient().encode() + "\n")
    zfs_stream = (HERE / "zfs-send-full.bin").read_bytes() if (HERE / "zfs-send-full.bin").exists() else None
    manifest = []

    def put(name, blob, key, expect, plain=None, note=""):
        (HERE / name).write_bytes(blob)
        manifest.append({"file": name, "key": key, "expect": expect, "note": note,
                         "plaintext_sha256": hashlib.sha256(plain).hexdigest() if plain is not None else None})

    def make(plain, recips, **kw):
        out = io.BytesIO()
        archive.encrypt(io.BytesIO(plain), out, recips, chunk_size=CHUNK, **kw)
        return out.getvalue()

    p = plaintext(24000, 1)
    base = make(p, [secret])
    put("good_zstd_secret.zg", base, "secret.key", "ok", p, "zstd, one secret slot, several data chunks")
    for alg in ("none", "lz4", "bz2", "xz"):
        put(f"good_{alg}.zg", make(p, [secret], algorithm=alg), "secret.key", "ok", p, f"{alg} compression")
    put("good_x25519_two_recipients.zg", make(p, [secret.recipient(), recovery.recipient()]), "recovery.key", "ok",
        p, "two x25519 slots; opened by the second recipient's secret key")
    put("good_passphrase.zg", make(p, [keys.Passphrase(b"vector passphrase", log_n=10)]),
        "passphrase:vector passphrase", "ok", p, "scrypt log_n=10")
    put("good_empty.zg", make(b"", [secret], algorithm="none"), "secret.key", "ok", b"", "empty plaintext: trailer only")
    exact = plaintext(2 * CHUNK, 2)
    put("good_exact_chunks.zg", make(exact, [secret], algorithm="none"), "secret.key", "ok", exact,
        "plaintext exactly two chunks: no short last chunk")
    if zfs_stream:
        put("good_zfs_stream.zg", make(zfs_stream, [secret]), "secret.key", "ok", zfs_stream,
            "a real zfs-fuse full send stream: public snapshot block present")

    hlen = len(read_header(io.BytesIO(base)).raw)
    sealed = CHUNK + TAG_SIZE

    def flip(blob, pos):
        b = bytearray(blob)
        b[pos] ^= 0x01
        return bytes(b)

    body = base[hlen:]
    chunks = [body[i:i + sealed] for i in range(0, len(body) - END_SIZE, sealed)]
    assert len(chunks) >= 4, "the fail vectors below need a body of several chunks"
    trailer = body[-END_SIZE:]
    other_blob = make(p, [secret])
    fails = [
        ("fail_empty.zg", b"", "not-an-archive", "empty input"),
        ("fail_plain_text.zg", b"this is not an archive\n" * 4, "not-an-archive", "not an archive"),
        ("fail_future_version.zg", base[:8] + (2).to_bytes(2, "big") + base[10:], "newer-version",
         "version 2"),
        ("fail_truncated_preamble.zg", base[:11], "damaged", "cut inside the first 14 bytes"),
        ("fail_truncated_header.zg", base[:hlen - 5], "damaged", "cut inside the header"),
        ("fail_truncated_after_header.zg", base[:hlen], "damaged", "header only"),
        ("fail_truncated_chunk_boundary.zg", base[:hlen + 2 * sealed], "damaged",
         "cut at a chunk boundary"),
        ("fail_truncated_trailer.zg", base[:-1], "damaged", "last byte missing"),
        ("fail_no_trailer.zg", base[:-END_SIZE], "damaged", "trailer and footer removed"),
        ("fail_no_footer.zg", base[:-16], "damaged", "footer removed"),
        ("fail_footer_length.zg", base[:-1] + bytes([base[-1] ^ 1]), "damaged", "footer length wrong"),
        ("fail_flipped_created.zg", flip(base, 17), "no-key",
         "public header field changed: MAC (exit 4, like a wrong key: SPEC 5)"),
        ("fail_flipped_mac.zg", flip(base, hlen - 1), "no-key", "MAC changed (exit 4, like a wrong key: SPEC 5)"),
        ("fail_flipped_chunk.zg", flip(base, hlen + sealed + 100), "damaged", "chunk 1 changed"),
        ("fail_flipped_tag.zg", flip(base, hlen + sealed - 1), "damaged", "chunk 0 tag changed"),
        ("fail_flipped_trailer.zg", flip(base, len(base) - 20), "damaged", "trailer changed"),
        ("fail_swapped_chunks.zg", base[:hlen] + chunks[1] + chunks[0] + b"".join(chunks[2:]) + trailer,
         "damaged", "chunks 0 and 1 swapped"),
        ("fail_duplicated_chunk.zg", base[:hlen] + chunks[0] + b"".join(chunks) + trailer, "damaged",
         "chunk 0 repeated"),
        ("fail_appended.zg", base + b"\0", "damaged", "one byte appended"),
        ("fail_spliced_body.zg", base[:hlen] + other_blob[hlen:], "damaged",
         "body of another archive (same key) under this header"),
        ("fail_wrong_key.zg", base, "no-key", "good archive, opened with other.key"),
    ]
    for name, blob, expect, note in fails:
        put(name, blob, "other.key" if name == "fail_wrong_key.zg" else "secret.key", expect, None, note)
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(manifest)} vectors to {HERE}")


if __name__ == "__main__":
    main()
