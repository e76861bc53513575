#!/bin/bash
# Remake the 2013-format test vectors in this directory with the real tools (openssl, pbzip2).
# The output differs on every run (random salts and keys); vectors.json records what to expect.
# Usage: bash make.sh   (run from anywhere; needs openssl, pbzip2, python3)
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The 2013 recipe, exactly: pbzip2 -9 | openssl aes-256-cbc -a -salt -pass file:K | pbzip2 -9
encrypt() {  # encrypt KEYFILE DIGEST < plaintext > archive
    pbzip2 -9 | openssl aes-256-cbc -a -salt -pass "file:$1" -md "$2" 2>/dev/null | pbzip2 -9
}
# a key like `openssl rand 512`, redrawn until python's test on it (argument 1) holds
key_where() {
    while true; do
        openssl rand 512 > "$tmp/k"
        if python3 -c "import sys; k = open('$tmp/k', 'rb').read(); sys.exit(0 if ($1) else 1)"; then
            cat "$tmp/k"; return
        fi
    done
}
flip() {  # flip FILE OFFSET: xor one byte with 0x01
    python3 -c "import sys; p, o = sys.argv[1], int(sys.argv[2]); b = bytearray(open(p, 'rb').read()); b[o] ^= 1; open(p, 'wb').write(b)" "$1" "$2"
}

# Plaintext: ~1.9 MB, so pbzip2 -9 makes 3 streams (one per 900 kB); mostly zeros to stay tiny.
{ openssl rand 1024; head -c 1000000 /dev/zero; seq 1 3000; head -c 900000 /dev/zero; echo end; } > "$tmp/plain"
bzip2 -9 < "$tmp/plain" > plain.bz2

key_where "k.split(b'\n')[0].find(b'\0') > 0" > ok_md5.key          # NUL inside the first line
key_where "b'\n' in k[1:] and b'\0' not in k.split(b'\n')[0] and k[0] != 10" > ok_sha256.key
{ printf '\n'; key_where "True" | head -c 511; } > ok_newline_key.key   # empty password
{ printf '\0'; key_where "True" | head -c 511; } > fail_nul_key.key      # openssl refuses it
key_where "k[0] not in (0, 10)" > fail_wrong_key.key

encrypt ok_md5.key md5 < "$tmp/plain" > ok_md5.bz2
encrypt ok_sha256.key sha256 < "$tmp/plain" > ok_sha256.bz2
encrypt ok_newline_key.key md5 < "$tmp/plain" > ok_newline_key.bz2

size=$(stat -c %s ok_md5.bz2)
head -c 2700000000 /dev/zero | tr '\0' A | bzip2 -9 > fail_bzip2_bomb.bz2  # ~25 s; the same bytes every run
head -c $((size / 2)) ok_md5.bz2 > fail_truncated.bz2
cp ok_md5.bz2 fail_bitflip.bz2
flip fail_bitflip.bz2 $((size / 2))

# A damaged block in the 2nd inner stream, encrypted and compressed properly: only the
# inner bzip2 CRC can catch it; the 1st stream (900000 bytes) may be written before the error.
pbzip2 -9 < "$tmp/plain" > "$tmp/inner"
second=$(python3 -c "import sys; d = open('$tmp/inner', 'rb').read(); print(d.index(b'BZh9', 4))")
flip "$tmp/inner" $((second + 200))
pbzip2 -9 -d < "$tmp/inner" > /dev/null 2>&1 && { echo "flip was not detected by bzip2" >&2; exit 1; }
openssl aes-256-cbc -a -salt -pass file:ok_md5.key -md md5 -in "$tmp/inner" 2>/dev/null | pbzip2 -9 > fail_inner_crc.bz2

# Check every ok vector with the 2013 decrypt recipe before recording it.
for name in ok_md5:md5 ok_sha256:sha256 ok_newline_key:md5; do
    v=${name%%:*}; md=${name#*:}
    bzip2 -dc $v.bz2 | openssl aes-256-cbc -d -a -pass file:$v.key -md $md 2>/dev/null | bzip2 -d | cmp - "$tmp/plain"
done

python3 - "$tmp/plain" <<'PY'
import hashlib, json, sys
plain = open(sys.argv[1], "rb").read()
ok = {"sha256": hashlib.sha256(plain).hexdigest(), "size": len(plain)}
cases = [
    {"name": "ok_md5", "archive": "ok_md5.bz2", "key": "ok_md5.key", "md": "md5", **ok},
    {"name": "ok_sha256", "archive": "ok_sha256.bz2", "key": "ok_sha256.key", "md": "sha256", **ok},
    {"name": "ok_newline_key", "archive": "ok_newline_key.bz2", "key": "ok_newline_key.key",
     "md": "md5", **ok},
    {"name": "fail_truncated", "archive": "fail_truncated.bz2", "key": "ok_md5.key",
     "error": "CorruptArchiveError"},
    {"name": "fail_bitflip", "archive": "fail_bitflip.bz2", "key": "ok_md5.key",
     "error": "CorruptArchiveError"},
    {"name": "fail_inner_crc", "archive": "fail_inner_crc.bz2", "key": "ok_md5.key",
     "error": "CorruptArchiveError"},
    {"name": "fail_wrong_key", "archive": "ok_sha256.bz2", "key": "fail_wrong_key.key",
     "error": "NoMatchingKeyError"},
    {"name": "fail_nul_key", "archive": None, "key": "fail_nul_key.key", "error": "KeyFileError"},
    {"name": "fail_bzip2_bomb", "archive": "fail_bzip2_bomb.bz2", "key": "ok_md5.key", "error": "CorruptArchiveError",
     "note": "1,904 bytes of one bzip2 stream that expand to 2.7 GB ('A' x 2.7e9, bzip2 -9): no key is needed to "
             "refuse it, within bounded memory"},
]
doc = {"plaintext": {"file": "plain.bz2", **ok}, "cases": cases}
with open("vectors.json", "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
PY
ls -l
