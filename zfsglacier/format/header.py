"""Archive format v1: its public parts, the header (parsed and built with ``construct``) and the
footer, which a tool without a key (zg-upload, zg-inspect, a store check) reads.

formats/SPEC.md is the normative description; this module is its executable form and the test
vectors in formats/vectors/ hold the two together.  Everything here is public (readable without a
key) except ``private_metadata``, which is AES-256-GCM ciphertext, and the MAC, which only a key
holder can check.  The body (chunks and trailer) is handled by ``zfsglacier.stream``.
"""

import json
import struct
from dataclasses import dataclass, field

from construct import (
    Bytes,
    Const,
    Enum,
    If,
    Int8sb,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    Prefixed,
    PrefixedArray,
    Struct,
    Switch,
    GreedyBytes,
    BitStruct,
    Flag,
    Padding,
    StreamError,
    ConstructError,
    this,
)

from .compression import CODECS
from ..plumbing.pipes import read_full
from ..errors import CorruptArchiveError, NotAnArchiveError, UnsupportedVersionError

MAGIC = b"ZGLACIER"
FORMAT_VERSION = 1
PREAMBLE_SIZE = 14  # magic (8) + version (2) + header_size (4): the part every version keeps
FOOTER = struct.Struct(">8sQ")  # the archive's last bytes: FOOTER_MAGIC and its total length
FOOTER_MAGIC = b"ZGLACEND"
MAX_HEADER_SIZE = 1 << 20  # refuse absurd headers before allocating them
MAC_SIZE = 32
MIN_CHUNK_SIZE = 1 << 12
MAX_CHUNK_SIZE = 1 << 24

# Readable by every version, so an old reader can name the version it would need.
Preamble = Struct(
    "magic" / Const(MAGIC),
    "version" / Int16ub,
    "header_size" / Int32ub,
)

Compression = Enum(Int8ub, **{c.name: c.id for c in CODECS.values()})  # SPEC 2.1: none 0, zstd 1, lz4 2, bz2 3, xz 4
# SPEC 1: both suites encrypt alike; they differ in the plaintext digest of the trailer (SPEC 4),
# 1: SHA-256 hash list, 2: XXH3-128 (written since 2026-12; format.archive.DIGESTS).
CipherSuite = Enum(Int8ub, aes256gcm_stream=1, aes256gcm_stream_xxh3=2)
WRITTEN_SUITE = "aes256gcm_stream_xxh3"
SlotType = Enum(Int8ub, secret=1, passphrase=2, x25519=3)

WRAPPED_KEY_SIZE = 48  # 32-byte file key + 16-byte GCM tag

SecretSlot = Struct("salt" / Bytes(16), "wrapped" / Bytes(WRAPPED_KEY_SIZE))
PassphraseSlot = Struct(
    "log_n" / Int8ub,
    "r" / Int8ub,
    "p" / Int8ub,
    "salt" / Bytes(16),
    "wrapped" / Bytes(WRAPPED_KEY_SIZE),
)
X25519Slot = Struct("ephemeral" / Bytes(32), "wrapped" / Bytes(WRAPPED_KEY_SIZE))

# Each slot is length-prefixed so a reader can skip slot types it does not know.
Slot = Struct(
    "type" / SlotType,
    "body" / Prefixed(Int16ub, Switch(
        this.type,
        {"secret": SecretSlot, "passphrase": PassphraseSlot, "x25519": X25519Slot},
        default=GreedyBytes,
    )),
)

# What a storage provider and a key-less catalog may know about the ZFS stream inside:
# enough to plan incrementals and chains (guids), nothing about names or contents.
PublicSnapshot = Struct(
    "toguid" / Int64ub,
    "fromguid" / Int64ub,
    "creation_time" / Int64ub,
    "versioninfo" / Int64ub,
    "drr_flags" / Int32ub,
    "objset_type" / Int32ub,
    "big_endian" / Int8ub,
)

HeaderFlags = BitStruct(Padding(14), "signed" / Flag, "has_snapshot" / Flag)
SIGNATURE_SIZE = 32 + 64  # Ed25519 public key, signature

# After the MAC, when flags bit 1 is set: who signed the header, and the signature over every
# header byte before it (the MAC included).  See SPEC section 1.2.
Signature = Struct("signer" / Bytes(32), "signature" / Bytes(64))

HeaderV1 = Struct(
    "preamble" / Preamble,
    "flags" / HeaderFlags,
    "created" / Int64ub,
    "compression" / Compression,
    "compression_level" / Int8sb,
    "cipher_suite" / CipherSuite,
    "chunk_size" / Int32ub,
    "file_salt" / Bytes(16),
    "snapshot" / If(lambda this: this.flags.has_snapshot, PublicSnapshot),
    "slots" / PrefixedArray(Int8ub, Slot),
    "private_metadata" / Prefixed(Int32ub, GreedyBytes),
    "mac" / Bytes(MAC_SIZE),
    "signed" / If(lambda this: this.flags.signed, Signature),
)


@dataclass
class SnapshotInfo:
    """Public identity of the ZFS stream an archive holds (see PublicSnapshot)."""

    toguid: int
    fromguid: int
    creation_time: int
    versioninfo: int
    drr_flags: int
    objset_type: int
    big_endian: bool

    @property
    def incremental(self):
        return self.fromguid != 0

    @property
    def compound(self):
        return (self.versioninfo & 3) == 2


@dataclass
class Header:
    """A parsed (or to-be-built) v1 header.  ``raw`` holds the exact bytes it was read from."""

    created: int
    compression: str
    compression_level: int
    chunk_size: int
    file_salt: bytes
    slots: list  # of (type_name, construct container or raw bytes)
    private_metadata: bytes  # ciphertext
    snapshot: SnapshotInfo | None = None
    cipher_suite: str = WRITTEN_SUITE
    mac: bytes = b"\0" * MAC_SIZE
    raw: bytes = field(default=b"", repr=False)
    signer: bytes | None = None  # Ed25519 public key of a signed header
    signature: bytes | None = None

    def _mac_start(self):
        return len(self.raw) - MAC_SIZE - (SIGNATURE_SIZE if self.signer is not None else 0)

    def mac_covered(self):
        """The header bytes the MAC covers: all before the MAC field."""
        return self.raw[:self._mac_start()]

    def signed_bytes(self):
        """The header bytes a signature covers: all before the signature block (the MAC included)."""
        return self.raw[:self._mac_start() + MAC_SIZE]


def footer_ok(last_bytes, total_length):
    """True if the final FOOTER.size bytes of an archive of ``total_length`` bytes are its footer."""
    if len(last_bytes) != FOOTER.size:
        return False
    magic, length = FOOTER.unpack(last_bytes)
    return magic == FOOTER_MAGIC and length == total_length


def _container(header):
    return dict(
        preamble=dict(version=FORMAT_VERSION, header_size=0),
        flags=dict(has_snapshot=header.snapshot is not None, signed=header.signer is not None),
        created=header.created,
        compression=header.compression,
        compression_level=header.compression_level,
        cipher_suite=header.cipher_suite,
        chunk_size=header.chunk_size,
        file_salt=header.file_salt,
        snapshot=None if header.snapshot is None else dict(
            header.snapshot.__dict__, big_endian=int(header.snapshot.big_endian)),
        slots=[dict(type=t, body=b) for t, b in header.slots],
        private_metadata=header.private_metadata,
        mac=header.mac,
        signed=None if header.signer is None else dict(signer=header.signer, signature=header.signature or bytes(64)),
    )


def build_unsigned(header):
    """Header bytes with the right header_size and a zero MAC; the MAC covers all but its own 32 bytes."""
    data = HeaderV1.build(_container(header))
    c = _container(header)
    c["preamble"]["header_size"] = len(data)
    return HeaderV1.build(c)


def seal_header(header, mac_of, sign=None):
    """Set ``header.mac`` (``mac_of(covered bytes)``), then the signature (``sign(bytes)``, when the
    header names a signer), and ``header.raw``."""
    header.raw = build_unsigned(header)
    start = header._mac_start()
    header.mac = mac_of(header.raw[:start])
    header.raw = header.raw[:start] + header.mac + header.raw[start + MAC_SIZE:]
    if header.signer is not None:
        header.signature = sign(header.signed_bytes())
        header.raw = header.signed_bytes() + header.signer + header.signature
    return header


def read_header(src):
    """Read one v1 header from ``src``.

    Raises NotAnArchiveError, UnsupportedVersionError or CorruptArchiveError; the MAC is not
    checked here (it needs the file key: see ``zfsglacier.keys.open_header``).
    """
    pre = read_full(src, PREAMBLE_SIZE)
    if len(pre) == 0:
        raise NotAnArchiveError("empty input: no archive to read")
    if not (pre.startswith(MAGIC) or MAGIC.startswith(pre)):
        raise NotAnArchiveError(describe_foreign(pre))
    if len(pre) < PREAMBLE_SIZE:
        raise CorruptArchiveError("archive truncated inside its header")
    p = Preamble.parse(pre)
    if p.version != FORMAT_VERSION:
        if p.version > FORMAT_VERSION:
            raise UnsupportedVersionError(
                f"archive format version {p.version} is newer than this zfsglacier reads "
                f"(version {FORMAT_VERSION}): install a zfsglacier release that reads format "
                f"version {p.version} or later")
        raise CorruptArchiveError(f"archive claims format version {p.version}, which never existed")
    if not PREAMBLE_SIZE + MAC_SIZE < p.header_size <= MAX_HEADER_SIZE:
        raise CorruptArchiveError(f"archive header size {p.header_size} is out of range")
    rest = read_full(src, p.header_size - PREAMBLE_SIZE)
    raw = pre + rest
    if len(raw) != p.header_size:
        raise CorruptArchiveError("archive truncated inside its header")
    try:
        c = HeaderV1.parse(raw)
        if len(HeaderV1.build(c)) != len(raw):
            raise CorruptArchiveError("archive header has trailing bytes")
    except (StreamError, ConstructError) as err:
        raise CorruptArchiveError(f"archive header is malformed ({type(err).__name__})") from None
    if not MIN_CHUNK_SIZE <= c.chunk_size <= MAX_CHUNK_SIZE:
        raise CorruptArchiveError(f"archive chunk size {c.chunk_size} is out of range")
    for what, value, known in (("compression", c.compression, Compression.encmapping),
                               ("cipher suite", c.cipher_suite, CipherSuite.encmapping)):
        if str(value) not in known:  # a later v1 writer may add one; say so instead of failing oddly
            raise UnsupportedVersionError(f"archive uses {what} #{int(value)}, unknown to this zfsglacier: "
                                          f"written by a newer release (install it) or a damaged header")
    snap = None
    if c.snapshot is not None:
        s = dict(c.snapshot)
        s.pop("_io", None)
        s["big_endian"] = bool(s["big_endian"])
        snap = SnapshotInfo(**s)
    return Header(
        created=c.created,
        compression=str(c.compression),
        compression_level=c.compression_level,
        cipher_suite=str(c.cipher_suite),
        chunk_size=c.chunk_size,
        file_salt=c.file_salt,
        snapshot=snap,
        slots=[(str(s.type), s.body) for s in c.slots],
        private_metadata=c.private_metadata,
        mac=c.mac,
        raw=raw,
        signer=c.signed.signer if c.signed is not None else None,
        signature=c.signed.signature if c.signed is not None else None,
    )


def describe_foreign(prefix):
    """Say what a non-archive input looks like, so the one-line error helps."""
    if not prefix:
        return "empty input: no archive to read"
    if prefix[:4] == b"\0\0\0\0" and len(prefix) >= 16:
        magic = prefix[8:16]
        if magic in ((0x2F5BACBAC).to_bytes(8, "little"), (0x2F5BACBAC).to_bytes(8, "big")):
            return "input is a plain ZFS send stream, not a zfsglacier archive (pipe it through zg-encrypt first)"
    if prefix[:3] == b"BZh":
        return "input is bzip2 data, not a zfsglacier archive (a 2013-format archive? try --legacy)"
    return "input is not a zfsglacier archive (no ZGLACIER magic at the start)"


def metadata_json(meta):
    """Private metadata is UTF-8 JSON with sorted keys: simple to read in ten years."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
