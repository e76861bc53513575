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
from typing import BinaryIO, Iterator

from construct import Array, Bytes, Int8ub, Int32ub, Int32ul, Int64ub, Int64ul, Padding, Struct

from ..plumbing import fletcher
from ..errors import BrokenStreamError

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


# Send-stream feature flags (DMU_BACKUP_FEATURE_* in OpenZFS zfs_ioctl.h: bit -> name) and the pool
# feature a receiver must have for each (dmu_recv_begin_check refuses the stream without it).
# "spa_version>=24" is SA_SPILL's rule: pools from before system attributes (zfs-fuse: v23) lack it.
STREAM_FEATURES = {
    0: ("dedup", None), 1: ("dedupprops", None), 2: ("sa_spill", "spa_version>=24"),
    16: ("embed_data", "embedded_data"), 17: ("lz4", "lz4_compress"), 19: ("large_blocks", "large_blocks"),
    20: ("resuming", None), 21: ("redacted", "redacted_datasets"), 22: ("compressed", None),
    23: ("large_dnode", "large_dnode"), 24: ("raw", "encryption"), 25: ("zstd", "zstd_compress"),
    26: ("holds", None),
}
RAW = 1 << 24


def feature_names(flags: int) -> list[str]:
    """The stream features in ``flags`` (DMU_GET_FEATUREFLAGS of drr_versioninfo), by name;
    a bit this table does not know is "bit N"."""
    return [STREAM_FEATURES.get(b, (f"bit {b}",))[0] for b in range(30) if flags >> b & 1]


def pool_features_needed(flags: int) -> dict[str, str]:
    """stream feature name -> the pool feature a receiving pool needs for it."""
    return {STREAM_FEATURES[b][0]: STREAM_FEATURES[b][1] for b in STREAM_FEATURES
            if flags >> b & 1 and STREAM_FEATURES[b][1]}


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

    @property
    def raw(self) -> bool:
        """A `zfs send -w` stream: blocks as stored, still encrypted with the dataset's ZFS key."""
        return bool(self.feature_flags & RAW)


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


ZERO_CKSUM = fletcher.ZERO


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

def payload_length(head, order: str, where: str) -> int:
    """Payload bytes after the record ``head`` (312 bytes), computed as the OpenZFS receiver
    does, with its limits.  Raises BrokenStreamError for impossible sizes."""
    e = "<" if order == "little" else ">"
    kind = struct.unpack_from(e + "I", head, 0)[0]
    if kind == DRR_BEGIN:
        return struct.unpack_from(e + "I", head, 4)[0]
    if kind == 1:  # OBJECT: raw bonus, or the bonus rounded up to 8
        bonuslen, raw_bonuslen = struct.unpack_from(e + "I", head, 28)[0], struct.unpack_from(e + "I", head, 36)[0]
        return raw_bonuslen or (bonuslen + 7) & ~7
    if kind == 3:  # WRITE: the compressed size is never above the logical one
        logical, compressed = struct.unpack_from(e + "Q", head, 32)[0], struct.unpack_from(e + "Q", head, 96)[0]
        if logical < _SPA_MINBLOCKSIZE or compressed > logical:
            raise BrokenStreamError(f"ZFS stream corrupt: impossible sizes in the {where}")
        size = compressed or logical
    elif kind == 7:  # SPILL
        length, compressed = struct.unpack_from(e + "Q", head, 16)[0], struct.unpack_from(e + "Q", head, 40)[0]
        size = compressed or length
    elif kind == 8:  # WRITE_EMBEDDED
        return (struct.unpack_from(e + "I", head, 52)[0] + 7) & ~7
    else:
        return 0
    if size > _SPA_MAXBLOCKSIZE:
        raise BrokenStreamError(f"ZFS stream corrupt: payload of {size} bytes in the {where}")
    return size


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    """Read n bytes, in bounded pieces so a corrupt length cannot ask for a huge buffer."""
    chunks, got = [], 0
    while got < n:
        chunk = f.read(min(n - got, 1 << 20))
        if not chunk:
            raise BrokenStreamError(f"ZFS stream truncated: {what} needs {n} bytes, got {got}")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def iter_records(f: BinaryIO) -> Iterator[tuple[Record, bytes]]:
    """Yield (record, payload) for every record of the stream(s) on ``f`` until EOF.

    The byte order is taken from the latest DRR_BEGIN.  Raises BrokenStreamError if the input
    does not start with DRR_BEGIN, a record type is unknown, or a record or payload is cut short.
    """
    order, offset = None, 0
    while True:
        head = f.read(BEGIN_RECORD_SIZE)
        if not head:
            return
        if len(head) < BEGIN_RECORD_SIZE:
            head += _read_exact(f, BEGIN_RECORD_SIZE - len(head), f"the record at offset {offset}")
        kind, order = _kind(head, order, offset)
        if kind == DRR_BEGIN:
            fields, cksum = vars(parse_begin(head)), ZERO_CKSUM
        else:
            _, header, bodies = _LAYOUTS[order]
            rec = header.parse(head)
            fields = {k: v for k, v in bodies[kind].parse(rec.body).items() if k != "_io"}
            cksum = tuple(rec.checksum)
        where = f"{RECORD_TYPES[kind]} record at offset {offset}"
        plen = payload_length(head, order, where)
        payload = _read_exact(f, plen, f"the payload of the {where}") if plen else b""
        yield Record(offset, RECORD_TYPES[kind], order, fields, cksum, plen, head), payload
        offset += BEGIN_RECORD_SIZE + plen


def _kind(head, order, offset):
    """(record type, byte order) of a complete record header; a DRR_BEGIN sets the byte order."""
    if head[:4] == b"\0\0\0\0":  # DRR_BEGIN in either byte order
        ident = parse_begin(head)
        if ident is None:
            raise BrokenStreamError(f"not a ZFS send stream: bad DRR_BEGIN at offset {offset}")
        return DRR_BEGIN, ident.byteorder
    if order is None:
        raise BrokenStreamError("not a ZFS send stream: no DRR_BEGIN record at the start")
    kind = struct.unpack_from("<I" if order == "little" else ">I", head, 0)[0]
    if not 0 < kind < len(RECORD_TYPES):
        raise BrokenStreamError(f"ZFS stream corrupt: unknown record type {kind} at offset {offset}")
    return kind, order


@dataclass
class StreamSummary:
    """What a StreamCheck found: one identity per DRR_BEGIN, per-type counts and payload bytes."""

    begins: list = field(default_factory=list)  # StreamIdentity of every DRR_BEGIN, in order
    records: Counter = field(default_factory=Counter)
    payload_bytes: Counter = field(default_factory=Counter)
    total_bytes: int = 0
    end_checksums: int = 0  # DRR_END checksums checked
    record_checksums: int = 0  # per-record checksums present and checked

    @property
    def identity(self) -> StreamIdentity:
        return self.begins[0]

    @property
    def substreams(self) -> list:
        """The plain streams inside: the whole stream itself when it is plain."""
        return [b for b in self.begins if b.header_type == "plain"]


class StreamCheck:
    """Follows a ZFS send stream's record framing as its bytes go past, and checks its checksums.

    ``feed(data)`` takes the stream in pieces of any size, ``finish()`` says it ended; either
    raises BrokenStreamError as soon as the stream is known to be broken.  Rules, as OpenZFS's
    receiver applies them:

    - the first record is a DRR_BEGIN; a compound stream (-R, -I, -p) is BEGIN(compound) +
      its END, then plain substreams (BEGIN .. END each), then a bare END with no checksum;
    - the fletcher-4 checksum restarts at each DRR_BEGIN and covers every byte up to a DRR_END,
      which must carry it (a payload's last len % 4 bytes are not summed, as in ZFS);
    - payload lengths come from the record fields (``payload_length``); a record type that does
      not exist, a record outside a substream, bytes after the final END, or an end of input
      anywhere before it is a broken stream.

    Modern OpenZFS also puts a checksum in every record; ``record_checksums=True`` checks those
    too (for inspection: it cuts the work at every record).  The DRR_END checksum covers the same
    bytes, so the default path (zg-encrypt) sums long runs at once: see ``zfsglacier.fletcher``.
    """

    def __init__(self, *, record_checksums: bool = False):
        self.summary = StreamSummary()
        self._each = record_checksums
        self._where = "start"  # start -> [header -> package ->] substream -> ... -> done
        self._order = None
        self._state = fletcher.ZERO
        self._carry = b""  # bytes of a word cut by the end of a piece, summed with the next piece
        self._head = bytearray()  # a record header cut by the end of a piece
        self._left = 0  # payload bytes still to come
        self._tail = 0  # len % 4 of the payload being read: not summed
        self._offset = 0  # stream offset of the next record

    def _sum(self, piece):
        if self._carry:
            need = 4 - len(self._carry)
            word = self._carry + bytes(piece[:need])
            if len(word) < 4:
                self._carry = word
                return
            self._state = fletcher.update(self._state, word, self._order)
            piece = piece[need:]
        whole = len(piece) // 4 * 4
        if whole:
            self._state = fletcher.update(self._state, piece[:whole], self._order)
        self._carry = bytes(piece[whole:])

    def feed(self, data) -> None:
        view = memoryview(data).cast("B")
        end, pos, start = len(view), 0, 0  # view[start:pos]: bytes not summed yet (summed in runs)
        while pos < end:
            if self._left:
                take = min(self._left, end - pos)
                pos += take
                self._left -= take
                if not self._left and self._tail:
                    self._sum(view[start:pos])
                    self._carry, start = b"", pos  # the payload's last len % 4 bytes
                continue
            if self._where == "done":
                raise BrokenStreamError(f"ZFS stream has data after its end (offset {self._offset})")
            if not self._head and end - pos >= BEGIN_RECORD_SIZE:
                run = self._record(view[pos:pos + BEGIN_RECORD_SIZE], view[start:pos])
                start = {"before": start, "header": pos}.get(run, pos + BEGIN_RECORD_SIZE)
                pos += BEGIN_RECORD_SIZE
                continue
            if not self._head:  # a header cut by the end of the piece: kept aside until whole
                self._sum(view[start:pos])
            take = min(BEGIN_RECORD_SIZE - len(self._head), end - pos)
            self._head += view[pos:pos + take]
            pos = start = pos + take
            if len(self._head) < BEGIN_RECORD_SIZE:
                return
            head, self._head = bytes(self._head), bytearray()
            if self._record(head, None) != "after":
                self._sum(head)
        self._sum(view[start:pos])

    def _record(self, head, pending):
        """Check one whole record header.  ``pending``: the bytes before it not yet summed (None
        if none).  Returns where the next run of bytes to sum starts: ``before`` (pending and
        this header are both still to sum), ``header`` (pending is summed: the header is not),
        ``after`` (both are summed)."""
        s, at = self.summary, self._offset
        kind, self._order = _kind(head, self._order, at)
        name = RECORD_TYPES[kind]
        where = f"{name} record at offset {at}"
        plen = payload_length(head, self._order, where)
        s.records[name] += 1
        s.payload_bytes[name] += plen
        self._offset = at + BEGIN_RECORD_SIZE + plen
        s.total_bytes = self._offset
        self._left, self._tail = plen, plen % 4
        if kind == DRR_BEGIN:
            ident = parse_begin(head)
            if self._where == "start":
                self._where = "header" if ident.header_type == "compound" else "substream"
            elif self._where == "package" and ident.header_type == "plain":
                self._where = "package-substream"
            else:
                raise BrokenStreamError(f"ZFS stream corrupt: unexpected {where}")
            s.begins.append(ident)
            self._state, self._carry = fletcher.ZERO, b""  # the checksum restarts here
            return "header"
        if kind == DRR_END and self._where == "package":
            self._where = "done"  # the bare END closing a compound stream: no checksum
            return "header"
        if self._where == "package":
            raise BrokenStreamError(f"ZFS stream corrupt: {where} outside a substream")
        if kind == DRR_END:
            if pending is not None:
                self._sum(pending)
            e = "<4Q" if self._order == "little" else ">4Q"
            if struct.unpack_from(e, head, 8) != self._state:
                raise BrokenStreamError(f"ZFS stream checksum mismatch in the {where}")
            s.end_checksums += 1
            self._where = "done" if self._where == "substream" else "package"
            self._check_own(head, where)  # the END's own checksum: the one no later END covers
            return "after"
        if self._where == "header":
            raise BrokenStreamError(f"ZFS stream corrupt: {where} inside a compound header")
        if not self._each:
            return "before"
        if pending is not None:
            self._sum(pending)
        self._check_own(head, where)
        self._sum(head[_CKSUM_OFFSET:])
        return "after"

    def _check_own(self, head, where):
        """A record's own trailing checksum: of every byte since BEGIN up to that field."""
        self._sum(head[:_CKSUM_OFFSET])
        own = struct.unpack_from("<4Q" if self._order == "little" else ">4Q", head, _CKSUM_OFFSET)
        if own != ZERO_CKSUM:
            if own != self._state:
                raise BrokenStreamError(f"ZFS stream checksum mismatch in the {where}")
            self.summary.record_checksums += 1

    def finish(self) -> StreamSummary:
        """The input ended: it must have ended exactly after the final DRR_END."""
        if self._where != "done" or self._left or self._head:
            raise BrokenStreamError(
                f"ZFS stream truncated: it ends after {self._offset - self._left + len(self._head)} bytes "
                f"without its final DRR_END")
        return self.summary


def verify_stream(f: BinaryIO, *, record_checksums: bool = True) -> StreamSummary:
    """Walk a whole stream on ``f``, check every fletcher-4 checksum in it, and summarise it."""
    check = StreamCheck(record_checksums=record_checksums)
    while piece := f.read(1 << 20):
        check.feed(piece)
    return check.finish()
