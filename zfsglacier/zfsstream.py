"""Read the header and records of a ZFS send stream, without ZFS.

Why: the archive tools must recognise a `zfs send` stream on their input and record what it is
(``toguid``/``fromguid``/``toname``: the chain key for incrementals) before encrypting it, and
tests and ``zg-inspect`` need to check a stream's own fletcher-4 checksums without a pool.

Layouts are those of ``dmu_replay_record_t`` in OpenZFS ``zfs_ioctl.h`` (312-byte records,
either byte order; the magic in DRR_BEGIN tells which).  Payload lengths are derived from the
record fields exactly as a receiver does, so old zfs-fuse (v1) streams and modern OpenZFS
streams both walk correctly.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate
from typing import BinaryIO, Iterator

from construct import Array, Bytes, Int8ub, Int32ub, Int32ul, Int64ub, Int64ul, Padding, Struct

from .errors import CorruptArchiveError

BEGIN_RECORD_SIZE = 312
DRR_MAGIC = 0x2F5BACBAC
_CKSUM_OFFSET = 280  # drr_u.drr_checksum.drr_checksum: the last 32 bytes of every record
_HDRTYPES = {1: "plain", 2: "compound"}  # DMU_SUBSTREAM, DMU_COMPOUNDSTREAM
_FEATURE_BITS = (1 << 30) - 1  # DMU_GET_FEATUREFLAGS: bits 2..31 of versioninfo

RECORD_TYPES = ("BEGIN", "OBJECT", "FREEOBJECTS", "WRITE", "FREE", "END", "WRITE_BYREF",
                "SPILL", "WRITE_EMBEDDED", "OBJECT_RANGE", "REDACT")
DRR_BEGIN, DRR_END = 0, 5


def _layouts(u32, u64):
    """construct definitions of every record for one byte order: (begin, header, bodies)."""
    cksum = Array(4, u64)
    begin = Struct(
        "drr_type" / u32, "payloadlen" / u32,
        "magic" / u64, "versioninfo" / u64, "creation_time" / u64,
        "objset_type" / u32, "flags" / u32, "toguid" / u64, "fromguid" / u64,
        "toname" / Bytes(256),
    )
    header = Struct("drr_type" / u32, "payloadlen" / u32, "body" / Bytes(272),
                    "checksum" / cksum)
    bodies = {
        1: Struct("object" / u64, "type" / u32, "bonustype" / u32, "blksz" / u32,
                  "bonuslen" / u32, "checksumtype" / Int8ub, "compress" / Int8ub,
                  "dn_slots" / Int8ub, "flags" / Int8ub, "raw_bonuslen" / u32, "toguid" / u64),
        2: Struct("firstobj" / u64, "numobjs" / u64, "toguid" / u64),
        3: Struct("object" / u64, "type" / u32, Padding(4), "offset" / u64,
                  "logical_size" / u64, "toguid" / u64, "checksumtype" / Int8ub,
                  "flags" / Int8ub, "compressiontype" / Int8ub, Padding(5),
                  "key_cksum" / cksum, "key_prop" / u64, "compressed_size" / u64),
        4: Struct("object" / u64, "offset" / u64, "length" / u64, "toguid" / u64),
        5: Struct("checksum" / cksum, "toguid" / u64),
        6: Struct("object" / u64, "offset" / u64, "length" / u64, "toguid" / u64,
                  "refguid" / u64, "refobject" / u64, "refoffset" / u64),
        7: Struct("object" / u64, "length" / u64, "toguid" / u64, "flags" / Int8ub,
                  "compressiontype" / Int8ub, Padding(6), "compressed_size" / u64),
        8: Struct("object" / u64, "offset" / u64, "length" / u64, "toguid" / u64,
                  "compression" / Int8ub, "etype" / Int8ub, Padding(6),
                  "lsize" / u32, "psize" / u32),
        9: Struct("firstobj" / u64, "numslots" / u64, "toguid" / u64),
        10: Struct("object" / u64, "offset" / u64, "length" / u64, "toguid" / u64),
    }
    return begin, header, bodies


_LAYOUTS = {"little": _layouts(Int32ul, Int64ul), "big": _layouts(Int32ub, Int64ub)}
_MAGIC_BYTES = {"little": DRR_MAGIC.to_bytes(8, "little"), "big": DRR_MAGIC.to_bytes(8, "big")}


@dataclass(frozen=True)
class StreamIdentity:
    """What a DRR_BEGIN record says about a stream (or, in a compound stream, a substream).

    ``toname`` is decoded as UTF-8 with ``surrogateescape``: a name that is not valid UTF-8
    round-trips exactly via ``toname.encode("utf-8", "surrogateescape")``.
    """

    toguid: int
    fromguid: int
    creation_time: int
    versioninfo: int
    header_type: str
    feature_flags: int
    objset_type: int
    drr_flags: int
    toname: str
    byteorder: str
    payloadlen: int = 0  # bytes of the nvlist after the record (compound headers, new features)

    @property
    def incremental(self) -> bool:
        return self.fromguid != 0


def _byteorder(buf) -> str | None:
    magic = bytes(buf[8:16])
    for order, want in _MAGIC_BYTES.items():
        if magic == want:
            return order
    return None


def parse_begin(buf: bytes) -> StreamIdentity | None:
    """The identity in the DRR_BEGIN record at the start of ``buf``; None if it is not one.

    Never raises: any input that is too short, has no magic, or has an impossible header type
    gives None.
    """
    try:
        buf = bytes(buf[:BEGIN_RECORD_SIZE])
    except (TypeError, ValueError, KeyError, IndexError):
        return None
    if len(buf) < BEGIN_RECORD_SIZE or buf[:4] != b"\0\0\0\0":
        return None
    order = _byteorder(buf)
    if order is None:
        return None
    rec = _LAYOUTS[order][0].parse(buf)
    header_type = _HDRTYPES.get(rec.versioninfo & 3)
    if header_type is None:
        return None
    return StreamIdentity(
        toguid=rec.toguid, fromguid=rec.fromguid, creation_time=rec.creation_time,
        versioninfo=rec.versioninfo, header_type=header_type,
        feature_flags=(rec.versioninfo >> 2) & _FEATURE_BITS, objset_type=rec.objset_type,
        drr_flags=rec.flags, toname=rec.toname.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"),
        byteorder=order, payloadlen=rec.payloadlen,
    )


# --- fletcher-4, as ZFS computes it over the stream (32-bit words in the stream's byte order)

_M64 = (1 << 64) - 1
ZERO_CKSUM = (0, 0, 0, 0)


def fletcher4(data, state=ZERO_CKSUM, byteorder="little"):
    """Continue a fletcher-4 state over ``data`` (its length a multiple of 4, as in ZFS)."""
    a, b, c, d = state
    fmt = "<" if byteorder == "little" else ">"
    view = memoryview(data)
    for start in range(0, len(view) - 3, 1 << 20):  # bounded chunks: bounded temporary lists
        chunk = view[start:start + (1 << 20)]
        words = struct.unpack(f"{fmt}{len(chunk) // 4}I", chunk[: len(chunk) // 4 * 4])
        # a, b, c, d are running sums of each other: C-level prefix sums, one mask per chunk.
        sums_a = list(accumulate(words, initial=a))
        sums_b = list(accumulate(sums_a[1:], initial=b))
        sums_c = list(accumulate(sums_b[1:], initial=c))
        a, b, c = sums_a[-1] & _M64, sums_b[-1] & _M64, sums_c[-1] & _M64
        d = (d + sum(sums_c[1:])) & _M64
    return (a, b, c, d)


# --- walking records


@dataclass(frozen=True)
class Record:
    """One record: its offset in the input, type name, parsed fields, and payload length."""

    offset: int
    type: str
    byteorder: str
    fields: dict
    checksum: tuple  # trailing per-record fletcher-4 (zero when the sender did not fill it)
    payload_len: int
    raw: bytes  # the 312 header bytes


_SPA_MINBLOCKSIZE, _SPA_MAXBLOCKSIZE = 512, 16 << 20


def _payload_len(kind: int, f, where: str) -> int:
    """Payload bytes after a record, computed as the OpenZFS receiver does (with its limits)."""
    if kind == DRR_BEGIN:
        return f["payloadlen"]
    if kind == 1:  # OBJECT: raw bonus, or the bonus rounded up to 8
        return f["raw_bonuslen"] or (f["bonuslen"] + 7) & ~7
    if kind == 3:  # WRITE: the compressed size is never above the logical one
        if f["logical_size"] < _SPA_MINBLOCKSIZE or f["compressed_size"] > f["logical_size"]:
            raise CorruptArchiveError(f"ZFS stream corrupt: impossible sizes in the {where}")
        size = f["compressed_size"] or f["logical_size"]
    elif kind == 7:  # SPILL
        size = f["compressed_size"] or f["length"]
    elif kind == 8:  # WRITE_EMBEDDED
        return (f["psize"] + 7) & ~7
    else:
        return 0
    if size > _SPA_MAXBLOCKSIZE:
        raise CorruptArchiveError(f"ZFS stream corrupt: payload of {size} bytes in the {where}")
    return size


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    """Read n bytes, in bounded pieces so a corrupt length cannot ask for a huge buffer."""
    chunks, got = [], 0
    while got < n:
        chunk = f.read(min(n - got, 1 << 20))
        if not chunk:
            raise CorruptArchiveError(f"ZFS stream truncated: {what} needs {n} bytes, got {got}")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def iter_records(f: BinaryIO) -> Iterator[tuple[Record, bytes]]:
    """Yield (record, payload) for every record of the stream(s) on ``f`` until EOF.

    The byte order is taken from the latest DRR_BEGIN.  Raises CorruptArchiveError if the input
    does not start with DRR_BEGIN, a record type is unknown, or a record or payload is cut short.
    """
    order, offset = None, 0
    while True:
        head = f.read(BEGIN_RECORD_SIZE)
        if not head:
            return
        if len(head) < BEGIN_RECORD_SIZE:
            head += _read_exact(f, BEGIN_RECORD_SIZE - len(head), f"the record at offset {offset}")
        if head[:4] == b"\0\0\0\0":  # DRR_BEGIN in either byte order
            ident = parse_begin(head)
            if ident is None:
                raise CorruptArchiveError(f"not a ZFS send stream: bad DRR_BEGIN at offset {offset}")
            order = ident.byteorder
            fields, cksum, kind = vars(ident), ZERO_CKSUM, DRR_BEGIN
        elif order is None:
            raise CorruptArchiveError("not a ZFS send stream: no DRR_BEGIN record at the start")
        else:
            _, header, bodies = _LAYOUTS[order]
            rec = header.parse(head)
            kind = rec.drr_type
            if kind not in bodies:
                raise CorruptArchiveError(
                    f"ZFS stream corrupt: unknown record type {kind} at offset {offset}")
            fields = {k: v for k, v in bodies[kind].parse(rec.body).items() if k != "_io"}
            cksum = tuple(rec.checksum)
        where = f"{RECORD_TYPES[kind]} record at offset {offset}"
        plen = _payload_len(kind, fields, where)
        payload = _read_exact(f, plen, f"the payload of the {where}") if plen else b""
        yield Record(offset, RECORD_TYPES[kind], order, fields, cksum, plen, head), payload
        offset += BEGIN_RECORD_SIZE + plen


@dataclass
class StreamSummary:
    """What verify_stream found: one identity per DRR_BEGIN, per-type counts and payload bytes."""

    begins: list = field(default_factory=list)  # StreamIdentity of every DRR_BEGIN, in order
    records: Counter = field(default_factory=Counter)
    payload_bytes: Counter = field(default_factory=Counter)
    total_bytes: int = 0
    end_checksums: int = 0  # DRR_END checksums checked
    record_checksums: int = 0  # per-record checksums present and checked

    @property
    def identity(self) -> StreamIdentity:
        return self.begins[0]


def verify_stream(f: BinaryIO) -> StreamSummary:
    """Walk a whole stream, check every fletcher-4 checksum in it, and summarise it.

    The running checksum restarts at each DRR_BEGIN and covers every byte since: a DRR_END
    carries the checksum of all bytes before it; a non-zero trailing per-record checksum (modern
    OpenZFS) must equal the checksum of everything before that field.  A compound stream (-R,
    -I, -p) is BEGIN(compound, nvlist)+END, then plain substreams, then a bare END that carries
    no checksum.  Raises CorruptArchiveError on a mismatch, truncation, a record out of place,
    a missing final END, or bytes after it.
    """
    s = StreamSummary()
    state, where = ZERO_CKSUM, "start"  # start -> [header -> package ->] substream -> ... -> done
    for rec, payload in iter_records(f):
        at = f"{rec.type} record at offset {rec.offset}"
        s.records[rec.type] += 1
        s.payload_bytes[rec.type] += rec.payload_len
        s.total_bytes = rec.offset + BEGIN_RECORD_SIZE + rec.payload_len
        if rec.type == "BEGIN":
            ident = parse_begin(rec.raw)
            if where == "start":
                where = "header" if ident.header_type == "compound" else "substream"
            elif where == "package" and ident.header_type == "plain":
                where = "package-substream"
            else:
                raise CorruptArchiveError(f"ZFS stream corrupt: unexpected {at}")
            s.begins.append(ident)
            state = fletcher4(rec.raw, ZERO_CKSUM, rec.byteorder)
        elif rec.type == "END" and where == "package":
            where = "done"  # the bare END closing a compound stream
        elif where == "package":
            raise CorruptArchiveError(f"ZFS stream corrupt: {at} outside a substream")
        else:
            if rec.type == "END":
                if tuple(rec.fields["checksum"]) != state:
                    raise CorruptArchiveError(f"ZFS stream checksum mismatch in the {at}")
                s.end_checksums += 1
                where = "done" if where == "substream" else "package"
            elif where == "header":
                raise CorruptArchiveError(f"ZFS stream corrupt: {at} inside a compound header")
            state = _check_record(rec, state, s)
        if payload:
            state = fletcher4(payload, state, rec.byteorder)
        if where == "done":
            if f.read(1):
                raise CorruptArchiveError(
                    f"ZFS stream has data after its end (offset {s.total_bytes})")
            break
    if where != "done":
        raise CorruptArchiveError(
            f"ZFS stream truncated: it ends after {s.total_bytes} bytes without its final DRR_END")
    return s


def _check_record(rec: Record, state, s: StreamSummary):
    """Fold a (non-BEGIN) record into the running checksum, checking its trailing checksum."""
    state = fletcher4(rec.raw[:_CKSUM_OFFSET], state, rec.byteorder)
    if rec.checksum != ZERO_CKSUM:
        if rec.checksum != state:
            raise CorruptArchiveError(
                f"ZFS stream checksum mismatch in the {rec.type} record at offset {rec.offset}")
        s.record_checksums += 1
    return fletcher4(rec.raw[_CKSUM_OFFSET:], state, rec.byteorder)
