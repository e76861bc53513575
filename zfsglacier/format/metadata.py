"""The formats around an archive, each read and written only here (formats/SPEC.md, sections 7-9):

- ``Identity``: which snapshot an archive holds, as its *authenticated* header says it (the public
  snapshot block, which the header MAC covers, and the private metadata).  Everything that decides
  which archive restores which snapshot comes from here, never from what a store says.
- ``PublicMetadata``: the ``zg-*`` fields a store keeps beside each object (S3 user metadata, a
  vault description, a file sidecar).  Public and *unauthenticated*: a store can change them, so
  they serve listings and key-less planning, and are checked against an Identity where one exists.
- ``CatalogCopy``: the encrypted copy of the catalog that zg-backup uploads (JSON inside an
  archive, so authenticated by it).

Values from a store are validated here (``MetadataError``) so that one bad object is reported and
skipped, never fatal, and nothing from a store reaches a terminal raw (``printable``).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from dataclasses import asdict, dataclass, field

from ..errors import CorruptArchiveError, ZgError
from .header import read_header
from .zfsstream import feature_names

PUBLIC_VERSION = "1"  # zg-format: the archive format; the field set below is that of version 1
CATALOG_COPY_VERSION = 1
MAX_GUID = (1 << 64) - 1
MAX_NAME = 1024  # dataset@snapshot: ZFS allows 255 per component
_DIGITS = re.compile(r"^[0-9]{1,20}$")
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_SEND = re.compile(r"^-[A-Za-z]( -[A-Za-z]){0,15}$")
_FEATURES = re.compile(r"^[a-z0-9_]{1,40}(,[a-z0-9_]{1,40}){0,31}$")


class MetadataError(ZgError):
    """A field a store returned (or a catalog copy holds) is not of its documented form."""

    exit_code = 12


def guid(value, what="guid"):
    """A ZFS guid from its decimal text (or int): 0 <= guid < 2^64."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and _DIGITS.match(value):
        n = int(value)
    else:
        raise MetadataError(f"{what} {printable(value)!r} is not a decimal number")
    if n > MAX_GUID:
        raise MetadataError(f"{what} {n} is larger than 64 bits")
    return n


def printable(value, limit=200):
    """``value`` as text safe for a terminal: control and non-ASCII characters escaped."""
    text = value if isinstance(value, str) else repr(value)
    out = "".join(c if 32 <= ord(c) < 127 else c.encode("unicode_escape").decode("ascii") for c in text)
    return out if len(out) <= limit else out[:limit] + "..."


# --- Identity --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Identity:
    """The snapshot an archive holds: ``toguid``/``fromguid`` (0 for a full), the dataset and
    snapshot names, the stream kind.  ``toguid`` is None only for compound streams written before
    zfsglacier 0.3, whose header names no guid."""

    toguid: int | None
    fromguid: int
    dataset: str | None
    snapshot: str | None
    stream: str  # plain | compound

    @property
    def name(self):
        return f"{self.dataset}@{self.snapshot}" if self.dataset and self.snapshot else None

    @classmethod
    def of_stream(cls, begin, declared=None):
        """From a stream's DRR_BEGIN (a zfsstream.StreamIdentity); ``declared`` = (toguid,
        fromguid) for a compound stream, whose outer BEGIN names none."""
        dataset, _, snap = begin.toname.partition("@")
        if begin.header_type == "compound":
            toguid, fromguid = declared if declared else (None, 0)
        else:
            toguid, fromguid = begin.toguid, begin.fromguid
        return cls(toguid, fromguid, dataset or None, snap or None, begin.header_type)

    def private_fields(self):
        """The keys this adds to an archive's private metadata (SPEC section 3)."""
        out = {"snapshot": self.name or "", "stream": self.stream}
        if self.toguid is not None:
            out.update(toguid=str(self.toguid), fromguid=str(self.fromguid))
        return out

    @classmethod
    def of_header(cls, header, private):
        """From an opened header (MAC checked) and its decrypted private metadata."""
        snap = header.snapshot
        name = private.get("snapshot")
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
            raise CorruptArchiveError("archive's private metadata has a malformed snapshot name")
        dataset, _, short = (name or "").partition("@")
        stream = "compound" if snap is not None and snap.compound else "plain"
        if "toguid" in private:
            toguid, fromguid = guid(private["toguid"], "toguid"), guid(private.get("fromguid", "0"), "fromguid")
            if snap is not None and not snap.compound and (toguid, fromguid) != (snap.toguid, snap.fromguid):
                raise CorruptArchiveError("archive's private and public snapshot guids disagree")
        elif snap is not None and not snap.compound:
            toguid, fromguid = snap.toguid, snap.fromguid
        else:
            toguid, fromguid = None, 0
        if snap is None and toguid is None:
            return None  # not a ZFS stream
        return cls(toguid, fromguid, dataset or None, short or None, stream)


# --- Public metadata -----------------------------------------------------------------------

@dataclass
class PublicMetadata:
    """The ``zg-*`` fields of an object.  ``header`` is a copy of the archive header (when it is
    small enough), so a key holder can learn names and guids from a listing without a thaw."""

    format: str = PUBLIC_VERSION
    created: int | None = None
    compression: str | None = None
    toguid: int | None = None
    fromguid: int | None = None
    snap_created: int | None = None
    stream: str | None = None
    header: bytes | None = None
    kind: str | None = None  # "catalog" for a catalog copy; absent for an archive
    features: str | None = None  # a plain send stream's feature names, comma-separated ("raw,large_blocks")
    send: str | None = None  # the zfs send flags its writer used ("-w", "-L -e"); absent: none or unknown

    _KEYS = {"format": "zg-format", "created": "zg-created", "compression": "zg-compression",
             "toguid": "zg-toguid", "fromguid": "zg-fromguid", "snap_created": "zg-snap-created",
             "stream": "zg-stream", "header": "zg-header", "kind": "zg-kind", "features": "zg-features",
             "send": "zg-send"}

    @property
    def feature_set(self) -> frozenset:
        """The stream's features by name: from ``zg-features``, else (archives from before 0.6, or
        a store that dropped the field) from the header copy's public block, which covers plain
        streams."""
        if self.features:
            return frozenset(self.features.split(","))
        if self.header:
            try:
                snap = read_header(io.BytesIO(self.header)).snapshot
            except ZgError:
                return frozenset()
            if snap is not None and not snap.compound:
                return frozenset(feature_names((snap.versioninfo >> 2) & ((1 << 30) - 1)))
        return frozenset()

    @property
    def send_flags(self) -> frozenset:
        return frozenset((self.send or "").split())

    @property
    def raw(self) -> bool:
        """A `zfs send -w` stream (the flag of a plain stream, or the writer's word for -I)."""
        return "raw" in self.feature_set or "-w" in self.send_flags

    def fields(self):
        """As string fields for a store."""
        out = {}
        for attr, key in self._KEYS.items():
            value = getattr(self, attr)
            if value is None:
                continue
            out[key] = base64.b64encode(value).decode() if attr == "header" else str(value)
        return out

    @classmethod
    def parse(cls, fields):
        """From a store's fields; MetadataError names the first field that is not of its form.
        Keys that are not ``zg-*`` are ignored; unknown ``zg-*`` keys too (a later version's)."""
        m = cls(format=None)
        for attr, key in cls._KEYS.items():
            value = fields.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or len(value) > 2048:
                raise MetadataError(f"metadata {key} is not a short string")
            if attr in ("toguid", "fromguid"):
                value = guid(value, key)
            elif attr in ("created", "snap_created"):
                if not _DIGITS.match(value):
                    raise MetadataError(f"metadata {key} {printable(value)!r} is not a time in seconds")
                value = int(value)
            elif attr == "header":
                try:
                    if not _B64.match(value):
                        raise ValueError
                    value = base64.b64decode(value, validate=True)
                except (ValueError, binascii.Error):
                    raise MetadataError(f"metadata {key} is not base64") from None
            elif attr == "stream" and value not in ("plain", "compound"):
                raise MetadataError(f"metadata {key} {printable(value)!r} is neither plain nor compound")
            elif attr == "features" and not _FEATURES.match(value):
                raise MetadataError(f"metadata {key} {printable(value)!r} is not a list of feature names")
            elif attr == "send" and not _SEND.match(value):
                raise MetadataError(f"metadata {key} {printable(value)!r} is not a list of zfs send flags")
            elif not value.isprintable():
                raise MetadataError(f"metadata {key} has unprintable characters")
            setattr(m, attr, value)
        return m

    @classmethod
    def of_header(cls, header):
        """The fields for an archive with this header (no key needed)."""
        m = cls(created=header.created, compression=f"{header.compression}:{header.compression_level}")
        if header.snapshot is not None:
            s = header.snapshot
            m.toguid, m.fromguid = s.toguid, s.fromguid
            m.snap_created, m.stream = s.creation_time, "compound" if s.compound else "plain"
        return m


HEADER_COPY_LIMIT = 540  # raw bytes: base64 of it still fits a vault description beside the other fields


def store_fields(header, *, declared=None, snap_created=None, send=None):
    """Public fields for a store's object metadata, plus a copy of the header when small enough:
    a key holder can then read names from a store listing without thawing anything.
    ``declared`` = (toguid, fromguid) and ``snap_created`` describe a compound stream; ``send``
    is the zfs send flags used (a chain keeps its full's; a compound stream's outer DRR_BEGIN
    does not carry its substreams' raw flag).  A plain stream's features come from its DRR_BEGIN."""
    m = PublicMetadata.of_header(header)
    if header.snapshot is not None and not header.snapshot.compound:
        names = feature_names((header.snapshot.versioninfo >> 2) & ((1 << 30) - 1))
        if names:
            m.features = ",".join(sorted(n.replace(" ", "_") for n in names))
    m.send = send or None
    if declared is not None:
        m.toguid, m.fromguid = declared
        m.stream = "compound"
    if snap_created is not None:
        m.snap_created = snap_created
    if len(header.raw) <= HEADER_COPY_LIMIT:
        m.header = header.raw
    return m.fields()


# --- The catalog copy ----------------------------------------------------------------------

ROW_FIELDS = {"id": str, "size": int, "sha256": (str, type(None)), "checksum": (str, type(None)),
              "uploaded": (int, float), "storage_class": (str, type(None)),
              "toguid": (int, type(None)), "fromguid": (int, type(None)),
              "snap_created": (int, type(None)), "stream": (str, type(None)),
              "dataset": (str, type(None)), "snapshot": (str, type(None)),
              "deleted": (int, float, type(None)), "version": (str, type(None))}


CATALOG_KIND = "catalog"  # the zg-kind of a catalog copy (SPEC section 8)


@dataclass
class CatalogCopy:
    """What a catalog copy holds: the destination's rows, as of ``written``."""

    dest: str
    rows: list = field(default_factory=list)  # dicts with ROW_FIELDS (plus "public")
    written: float | None = None

    def encode(self):
        return json.dumps({"zfsglacier_catalog": CATALOG_COPY_VERSION, "dest": self.dest,
                           "written": self.written, "archives": self.rows}, sort_keys=True).encode()

    @classmethod
    def decode(cls, data):
        """From the decrypted bytes; MetadataError when it is not a catalog copy of a known version."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise MetadataError("catalog copy is not JSON") from None
        if not isinstance(doc, dict) or doc.get("zfsglacier_catalog") != CATALOG_COPY_VERSION:
            raise MetadataError("not a catalog copy of a version this zfsglacier reads")
        rows = doc.get("archives")
        if not isinstance(rows, list):
            raise MetadataError("catalog copy has no list of archives")
        good = []
        for r in rows:
            if not isinstance(r, dict) or not all(isinstance(r.get(k), t) for k, t in ROW_FIELDS.items()
                                                  if k in r) or not isinstance(r.get("id"), str):
                continue  # a row of a form we do not know is skipped, not fatal
            good.append(r)
        return cls(str(doc.get("dest", "")), good, doc.get("written"))

    @staticmethod
    def row_of(archive_row):
        """A catalog ArchiveRow as a copy row."""
        d = asdict(archive_row) if hasattr(archive_row, "__dataclass_fields__") else dict(archive_row)
        return {k: d.get(k) for k in (*ROW_FIELDS, "public")}
