"""zg-inspect: show an archive's header; with --key also its private metadata, with --verify the body."""

import datetime
import sys

from ..format import archive
from ..errors import UsageError
from ..format.header import read_header
from ..format.keys import check_signature
from ..plumbing.pipes import PeekReader
from . import schema
from .common import binary_stdin, parser, run
from .keyargs import add_key_options, given, identities


EXAMPLES = [
    ('zg-inspect < db.zg',
     'the public header: format, compression, sizes, snapshot guids; no key needed'),
    ('zg-inspect --key ~/.zg/offsite.key --verify db.zg',
     'also the names inside, and every chunk authenticated'),
    ('zg-inspect --json db.zg',
     'the same as JSON'),
]


def build_parser():
    p = parser("zg-inspect", "Show what an archive's header says (no key needed for the public part).", examples=EXAMPLES)
    add_key_options(p, "identity", why="also decrypt the private metadata and check the header MAC")
    p.add_argument("--verify", action="store_true",
                   help="also decrypt the whole body (writing nothing) and check every chunk and the trailer")
    p.add_argument("--json", action="store_true", help="machine-readable output (schema zfsglacier.inspect/1)")
    p.add_argument("file", nargs="?", help="archive file (default: stdin)")
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    src = PeekReader(open(args.file, "rb") if args.file else binary_stdin())
    keyed = given(args)
    if keyed:
        idents, _ = identities(args)
        opened = archive.open_archive(src, idents)
        header, file_key = opened
        info = archive.describe(header, archive.read_private_metadata(header, file_key))
        info["header_mac"] = "ok"
        if args.verify:
            r = archive.decrypt(src, None, idents, opened=opened)
            info["verified"] = {"plaintext_length": r.plaintext_length, "plaintext_digest": r.plaintext_digest,
                                "compressed_length": r.compressed_length}
    else:
        if args.verify:
            raise UsageError("--verify needs --key or --passphrase")
        header = read_header(src)
        check_signature(header)  # needs no key: a signature that fails is reported here too
        info = archive.describe(header)
    if args.json:
        schema.dump("inspect", **info)
    else:
        _print_human(info)
    return 0


def _when(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _print_human(info):
    w = sys.stdout.write
    w(f"format:       {info['format']}\n")
    w(f"created:      {_when(info['created'])}\n")
    w(f"compression:  {info['compression']} level {info['compression_level']}\n")
    w(f"cipher:       {info['cipher']}, {info['chunk_size']} byte chunks\n")
    w(f"key slots:    {', '.join(info['key_slots'])}\n")
    if "signer" in info:
        w(f"signed by:    {info['signer']}\n")
    s = info.get("snapshot")
    if s:
        kind = "incremental" if s["incremental"] else "full"
        w(f"zfs stream:   {kind}, {s['stream']}, {s['byteorder']}-endian, features 0x{s['feature_flags']:x}\n")
        w(f"  toguid:     {s['toguid']}\n")
        if s["incremental"]:
            w(f"  fromguid:   {s['fromguid']}\n")
        w(f"  snapshot created: {_when(s['creation_time'])}\n")
    else:
        w("zfs stream:   none recognised (the input was not a ZFS send stream)\n")
    if "private" in info:
        w(f"header MAC:   {info['header_mac']}\n")
        for k, v in sorted(info["private"].items()):
            w(f"  {k}: {v}\n")
    if "verified" in info:
        v = info["verified"]
        w(f"verified:     {v['plaintext_length']} bytes, digest {v['plaintext_digest']}\n")


def main(argv=None):
    return run("zg-inspect", body, argv, report=True)
