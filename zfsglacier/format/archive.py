"""Encrypt a byte stream into a v1 archive and back: the layers composed.

encrypt:  input -> [sha256, length] -> compressor -> ChunkWriter -> output
decrypt:  input -> header/key slots -> ChunkReader -> decompressor -> [sha256, length] -> output
"""

import hmac
import io
import json
import os
import time
from dataclasses import dataclass, field

from Crypto.Cipher import AES

from .. import __version__
from . import compression, metadata, zfsstream
from ..errors import BrokenStreamError, CorruptArchiveError, ResumeMismatchError, ZgError
from .header import FORMAT_VERSION, WRITTEN_SUITE, Header, SnapshotInfo, metadata_json, read_header, seal_header
from .keys import ZERO_NONCE, check_signature, derive, header_mac, open_header
from ..plumbing.digest import BlockDigest, Xxh3Digest
from ..plumbing.pipeline import ReadAhead, WriteBehind
from ..plumbing.pipes import IO_SIZE, PeekReader, read_full
from .stream import ChunkReader, ChunkWriter

DEFAULT_CHUNK_SIZE = 1 << 20


# The trailer's plaintext digest, by the header's cipher suite (SPEC 4).
DIGESTS = {"aes256gcm_stream": BlockDigest, "aes256gcm_stream_xxh3": Xxh3Digest}


@dataclass
class Result:
    header: Header
    plaintext_length: int
    plaintext_digest: str  # hex, of the header's suite (DIGESTS)
    compressed_length: int
    identity: "zfsstream.StreamIdentity | None" = None


def _seal_metadata(file_key, salt, meta):
    c = AES.new(derive(file_key, salt, b"metadata"), AES.MODE_GCM, nonce=ZERO_NONCE)
    ct, tag = c.encrypt_and_digest(metadata_json(meta))
    return ct + tag


def read_private_metadata(header, file_key):
    """The encrypted part of the header (snapshot name, host, ...), as a dict."""
    blob = header.private_metadata
    c = AES.new(derive(file_key, header.file_salt, b"metadata"), AES.MODE_GCM, nonce=ZERO_NONCE)
    try:
        return json.loads(c.decrypt_and_verify(blob[:-16], blob[-16:]))
    except (ValueError, UnicodeDecodeError):
        raise CorruptArchiveError("archive's private metadata fails authentication") from None


@dataclass
class Prepared:
    """An archive whose header is made but whose body is not written yet."""

    header: Header
    file_key: bytes = field(repr=False)
    identity: "zfsstream.StreamIdentity | None"
    src: PeekReader
    check: "zfsstream.StreamCheck | None" = None
    declared: tuple | None = None
    tree: frozenset | None = None  # a -R stream: the snapshot guid of every dataset it must carry


def prepare(src, recipients, *, algorithm=compression.DEFAULT, level=None, chunk_size=DEFAULT_CHUNK_SIZE,
            extra_metadata=None, check_stream=True, declared=None, tree=None, sign=None, suite=WRITTEN_SUITE):
    """Sniff ``src`` for a ZFS stream and build the header, so that the public fields are known
    (e.g. for object metadata) before the first body byte is written.

    A ZFS stream is checked as it is encrypted (``check_stream``: see write_archive).  Its
    identity goes into the authenticated private metadata (``metadata.Identity``): from its
    DRR_BEGIN for a plain stream; for a compound one, whose outer BEGIN names no guid, from
    ``declared`` = (toguid, fromguid), which the check then holds the substreams to; for a
    replication (-R) stream also ``tree``, the guids of every dataset's snapshot it must hold.
    ``sign`` (a keys.SigningKey) signs the header.  ``suite`` (SPEC 1) may name an older cipher
    suite, for a reader of an older release (one that knows suite 1 only)."""
    level = compression.check(algorithm, level)
    if suite not in DIGESTS:
        raise ValueError(f"unknown cipher suite {suite!r}")
    src = src if isinstance(src, PeekReader) else PeekReader(src)
    ident = zfsstream.parse_begin(src.peek(zfsstream.BEGIN_RECORD_SIZE))
    file_key, file_salt = os.urandom(32), os.urandom(16)
    private = {"tool": f"zfsglacier {__version__}", "host": os.uname().nodename}
    snapshot = None
    if ident is not None:
        private.update(metadata.Identity.of_stream(ident, declared).private_fields())
        snapshot = SnapshotInfo(
            toguid=ident.toguid, fromguid=ident.fromguid, creation_time=ident.creation_time,
            versioninfo=ident.versioninfo, drr_flags=ident.drr_flags, objset_type=ident.objset_type,
            big_endian=ident.byteorder == "big")
    private.update(extra_metadata or {})
    header = Header(
        created=int(time.time()), compression=algorithm, compression_level=level, chunk_size=chunk_size,
        file_salt=file_salt, snapshot=snapshot, slots=[r.wrap(file_key) for r in recipients], cipher_suite=suite,
        private_metadata=_seal_metadata(file_key, file_salt, private))
    if sign is not None:
        header.signer = sign.signer().public
    seal_header(header, lambda covered: header_mac(file_key, file_salt, covered), sign and sign.sign)
    check = zfsstream.StreamCheck() if ident is not None and check_stream else None
    return Prepared(header, file_key, ident, src, check, declared if ident is not None else None,
                    frozenset(tree) if tree is not None else None)


def prepare_again(src, file_key, header_raw, *, check_stream=True, declared=None, tree=None):
    """``prepare`` for an archive begun before (a resumed backup, SPEC section 11): the very header
    bytes and file key of then, so that the same input makes the very same archive.  The header
    must open with the key (its MAC) and name the stream ``src`` starts with: ResumeMismatchError
    otherwise, before any byte is written."""
    src = src if isinstance(src, PeekReader) else PeekReader(src)
    try:
        raw = bytes(header_raw)
        header = read_header(io.BytesIO(raw))
    except (ValueError, TypeError, ZgError):
        raise ResumeMismatchError("the resume journal's archive header is not a readable header") from None
    if len(header.raw) != len(raw) or not hmac.compare_digest(
            header_mac(file_key, header.file_salt, header.mac_covered()), header.mac):
        raise ResumeMismatchError("the resume journal's file key does not open its archive header")
    check_signature(header)
    ident = zfsstream.parse_begin(src.peek(zfsstream.BEGIN_RECORD_SIZE))
    snap = header.snapshot
    got = None if ident is None else (ident.toguid, ident.fromguid, ident.creation_time, ident.versioninfo,
                                      ident.drr_flags, ident.objset_type, ident.byteorder == "big")
    want = None if snap is None else (snap.toguid, snap.fromguid, snap.creation_time, snap.versioninfo,
                                      snap.drr_flags, snap.objset_type, snap.big_endian)
    private = read_private_metadata(header, file_key)
    named = (int(private["toguid"]), int(private["fromguid"])) if "toguid" in private else None
    if got != want or (declared is not None and named != tuple(declared)) or \
            (ident is not None and private.get("snapshot") != ident.toname):
        raise ResumeMismatchError("the stream to resume is not the one the journaled archive header names")
    check = zfsstream.StreamCheck() if ident is not None and check_stream else None
    return Prepared(header, file_key, ident, src, check, declared if ident is not None else None,
                    frozenset(tree) if tree is not None else None)


def write_archive(prep, out, *, threads=-1):
    """Write the header and the body of a prepared archive to ``out``."""
    header, src = prep.header, prep.src
    out.write(header.raw)
    digest = DIGESTS[header.cipher_suite]()  # suite 1: hashed by the workers as they compress
    chunks = ChunkWriter(out, derive(prep.file_key, header.mac, b"payload"), header.chunk_size, len(header.raw))
    comp = compression.writer(header.compression, header.compression_level, chunks, threads=threads, digest=digest)
    ahead = ReadAhead(lambda: _checked(prep, read_full(src, compression.BLOCK_SIZE)))  # overlaps compressing
    length = 0
    try:
        while block := ahead.read_piece():
            length += len(block)
            comp.write(block)
        comp.close()
    except BaseException:
        comp.abort()  # an aborted archive: what is buffered is never compressed or written
        raise
    finally:
        ahead.close()
    chunks.finish(length, digest.digest())
    return Result(header, length, digest.hexdigest(), chunks.compressed_length, prep.identity)


def _checked(prep, block):
    """Feed the stream check (on the read-ahead thread).  A broken stream raises here, so the
    archive is left without its trailer and footer: no tool stores or restores it as complete."""
    check = prep.check
    if check is None:
        return block
    try:
        if block:
            check.feed(block)
        else:
            summary = check.finish()
            if prep.declared is not None:
                _check_declared(summary, *prep.declared, tree=prep.tree)
    except BrokenStreamError as err:
        raise BrokenStreamError(f"{err}: the archive was left unfinished (no trailer), so it cannot be "
                                f"stored or restored as complete") from None
    return block


def _check_declared(summary, toguid, fromguid, tree=None):
    """A compound stream must run from the declared base to the declared snapshot.  A `zfs send -I`
    one is one dataset's substreams, in order; a -R one (``tree``) is every dataset's, parents
    first (libzfs sends a tree's root first), so it starts from the base, reaches the snapshot
    somewhere, and holds a substream ending at every snapshot of the tree."""
    subs = summary.substreams
    if tree is None:
        got = (subs[-1].toguid, subs[0].fromguid) if subs else (None, None)
    else:
        tos = {s.toguid for s in subs}
        got = (toguid if toguid in tos else None, subs[0].fromguid if subs else None)
        lost = sorted(tree - tos)
        if got == (toguid, fromguid) and lost:
            raise BrokenStreamError(f"ZFS replication stream lacks the snapshot guids {', '.join(map(str, lost))} of "
                                    f"its tree")
    if got != (toguid, fromguid):
        raise BrokenStreamError(f"ZFS stream runs from guid {got[1]} to {got[0]}, not from {fromguid} to "
                                f"{toguid} as declared")


def encrypt(src, out, recipients, *, threads=-1, **options):
    """Write ``src`` to ``out`` as an archive that any of ``recipients`` can open."""
    return write_archive(prepare(src, recipients, **options), out, threads=threads)


def open_archive(src, identities, signers=()):
    """Read the header, check its signature (required to be one of ``signers`` when given), and
    unlock it: (header, file key)."""
    header = read_header(src)
    check_signature(header, signers)
    return header, open_header(header, identities)




def decrypt(src, out, identities, *, opened=None, signers=()):
    """Write the plaintext of the archive on ``src`` to ``out`` (``out=None``: verify only).

    Only authenticated bytes reach ``out``; a damaged or truncated archive raises
    CorruptArchiveError after writing at most its authenticated prefix.
    """
    header, file_key = opened or open_archive(src, identities, signers)
    chunks = ChunkReader(src, derive(file_key, header.mac, b"payload"), header.chunk_size, len(header.raw))
    ahead = ReadAhead(chunks.read_chunk)  # reading and opening chunks overlaps decompression
    digest = DIGESTS[header.cipher_suite]()
    parallel = behind = None
    codec = compression.CODECS[header.compression]
    try:  # compression.decoding wraps the decoder calls only: a failed write is never "damage"
        if codec.parallel_reader is not None:  # independent frames: decompressed and hashed on all cores
            behind = WriteBehind(out)
            parallel = codec.parallel_reader(ahead.read_piece, block_hash=digest.worker_hash)
            while True:
                with compression.decoding(codec):
                    data, digests = parallel.read_block()
                if not data:
                    break
                digest.add(data, digests)
                behind.write(data)
        else:
            behind = WriteBehind(out, digest)  # hashing and writing overlap decompression
            with compression.decoding(codec):
                plain = codec.reader(ahead)
            while True:
                with compression.decoding(codec):
                    data = plain.read(IO_SIZE)
                if not data:
                    break
                behind.write(data)
            if ahead.read_piece():
                raise CorruptArchiveError("archive has authenticated data after its compressed stream ended")
    except BaseException:
        _close_quietly(parallel, ahead, behind)  # the first error is the one to report
        raise
    if parallel is not None:
        parallel.close()
    ahead.close()
    if behind is not None:
        behind.close()  # the last writes' error, if any
    length = digest.length
    want_length, compressed_length, want_sha = chunks.trailer
    if length != want_length or digest.digest() != want_sha:
        raise CorruptArchiveError(f"decrypted data does not match the length and plaintext digest ({digest.name}) "
                                  f"in the archive's trailer")
    return Result(header, length, digest.hexdigest(), compressed_length)


def _close_quietly(*parts):
    for part in parts:
        if part is not None:
            try:
                part.close()
            except Exception:  # noqa: BLE001 - an error is already on its way out
                pass


def describe(header, private=None):
    """A JSON-friendly view of a header for zg-inspect."""
    d = {
        "format": f"zfsglacier v{FORMAT_VERSION}",
        "created": header.created,
        "compression": header.compression,
        "compression_level": header.compression_level,
        "cipher": f"AES-256-GCM STREAM (HKDF-SHA256), {DIGESTS[header.cipher_suite].name} plaintext digest",
        "chunk_size": header.chunk_size,
        "key_slots": [t for t, _ in header.slots],
        "header_size": len(header.raw),
    }
    if header.signer is not None:
        from .keys import Signer
        d["signer"] = Signer(header.signer).encode()
    if header.snapshot:
        s = header.snapshot
        d["snapshot"] = {
            "toguid": s.toguid, "fromguid": s.fromguid, "incremental": s.incremental,
            "creation_time": s.creation_time, "stream": "compound" if s.compound else "plain",
            "feature_flags": s.versioninfo >> 2, "byteorder": "big" if s.big_endian else "little",
            "drr_flags": s.drr_flags, "objset_type": s.objset_type,
        }
    if private is not None:
        d["private"] = private
    return d
