"""zg-encrypt: a filter from a ZFS send stream (or any bytes) to a zfsglacier archive."""

from ..format import archive, compression
from ..plumbing.pipes import widen_pipe
from .common import binary_stdin, binary_stdout, parser, run, refuse_terminal_output
from .keyargs import add_key_options, add_sign_option, recipients, signing_key


EXAMPLES = [
    ('zfs send tank/db@2026-11-27 | zg-encrypt ~/.zg/offsite.pub > db.zg',
     'a full, encrypted to one recipient (a backup host needs only the .pub)'),
    ('zfs send -i @2026-11-26 tank/db@2026-11-27 | zg-encrypt offsite.pub recovery.pub > db-incr.zg',
     'an incremental that either key opens'),
    ('tar c /etc | zg-encrypt -l 9 -p offsite.pub > etc.zg',
     'any stream (not a send stream: sealed as it is), high compression, and a passphrase slot too'),
]


def build_parser():
    p = parser("zg-encrypt", "Compress and encrypt stdin (e.g. `zfs send`) into an archive on stdout.", examples=EXAMPLES)
    add_key_options(p, "recipient", positional=True)
    p.add_argument("-c", "--compression", default=compression.DEFAULT, choices=compression.ALGORITHMS,
                   help="default zstd (multi-threaded)")
    p.add_argument("-l", "--level", type=int,
                   help="compression level. zstd: default 3 (independent 4 MiB frames, all cores both ways, "
                        "<128 MiB memory); 9 and up: one stream with long-distance matching over a 128 MiB "
                        "window, smaller than the 2013 recipe's output at several times its speed, ~250 MiB "
                        "memory to encrypt, ~150 MiB and one core to decrypt")
    p.add_argument("--chunk-size", type=int, default=archive.DEFAULT_CHUNK_SIZE, help="bytes per sealed chunk")
    p.add_argument("--threads", type=int, default=-1, help="zstd worker threads (default: all cores)")
    p.add_argument("--no-stream-check", action="store_true",
                   help="seal a ZFS send stream without following its records and checksums (by default a "
                        "stream that is cut short or fails its checksum leaves the archive unfinished, exit 9)")
    add_sign_option(p)
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    level = compression.check(args.compression, args.level)
    recips = recipients(args)
    src, out = binary_stdin(), binary_stdout()
    refuse_terminal_output(out, "zg-encrypt")
    widen_pipe(src)
    widen_pipe(out)
    archive.encrypt(src, out, recips, algorithm=args.compression, level=level, chunk_size=args.chunk_size,
                    threads=args.threads, check_stream=not args.no_stream_check,
                    sign=signing_key(args))
    out.flush()
    return 0


def main(argv=None):
    return run("zg-encrypt", body, argv)
