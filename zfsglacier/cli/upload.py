"""zg-upload: stdin (an archive from zg-encrypt) -> a store; prints the archive id."""

import io
import os
import secrets
import stat
import sys

from ..errors import CorruptArchiveError, NotAnArchiveError, UsageError
from ..services import backup
from ..format.header import FOOTER, MAGIC, PREAMBLE_SIZE, Preamble, describe_foreign, footer_ok, read_header
from ..format.metadata import store_fields
from ..plumbing.parts import MEMORY_HELP
from ..plumbing.pipes import IO_SIZE, PeekReader, widen_pipe
from .common import binary_stdin, parser, run
from .progress import Progress, add_progress_option
from .storeargs import add_store_options, catalog, jobs, open_dest
from .sizes import parse_size
from ..catalog.locks import UPLOADS, Locks, lock_directory

def public_metadata(src):
    """Store metadata of the archive at the start of ``src``, which is not consumed."""
    pre = src.peek(PREAMBLE_SIZE)
    size = Preamble.parse(pre).header_size if len(pre) == PREAMBLE_SIZE and pre.startswith(MAGIC) else 0
    return store_fields(read_header(io.BytesIO(src.peek(size or PREAMBLE_SIZE))))


UPLOAD_HELP = ("The stream is cut into parts sent JOBS at a time; parts already stored are verified and "
               "kept by --resume. " + MEMORY_HELP)


EXAMPLES = [
    ('zfs send tank/db@d | zg-encrypt offsite.pub | zg-upload s3://bucket/zfs --name tank/db@d',
     'stream it up, verified; prints the archive id and records it in the catalog'),
    ('zg-upload offsite --expected-size 2T < big.zg',
     'a big archive: part sizes chosen for its size'),
    ('zg-upload --resume offsite < db.zg',
     'after kill -9: send only the parts the store does not hold'),
]


def build_parser():
    p = parser("zg-upload", "Upload an archive from stdin to DEST, verified end to end; "
                            "print its id on stdout. " + UPLOAD_HELP, examples=EXAMPLES)
    add_store_options(p)
    p.add_argument("--storage-class", help="S3 storage class: DEEP_ARCHIVE (default), GLACIER, GLACIER_IR, "
                                          "STANDARD_IA, STANDARD")
    p.add_argument("--expected-size", type=parse_size, metavar="SIZE",
                   help="an upper bound of the stream size (e.g. 2T): lets the part size fit; vaults need it "
                        "beyond ~1 TiB")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted upload: feed the SAME bytes again; parts already stored are "
                        "verified by hash and not sent again")
    p.add_argument("--raw", action="store_true",
                   help="accept input that is not a zfsglacier archive (its completeness cannot be checked)")
    p.add_argument("--name", metavar="DATASET@SNAP", help="name to record in the catalog")
    add_progress_option(p)
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    config, store, dest = open_dest(args, storage_class=args.storage_class)
    src = PeekReader(binary_stdin())
    widen_pipe(src._raw)
    head = src.peek(16)
    if not head:
        raise NotAnArchiveError("no input: nothing to upload (did the command before zg-upload fail?)")
    is_archive = head.startswith(MAGIC)
    if is_archive:
        metadata = public_metadata(src)
    elif args.raw:
        metadata = {}
    else:
        raise NotAnArchiveError(describe_foreign(head) + "; pass --raw to upload other data anyway")
    dataset, snapshot = _split_name(args.name)
    n_jobs = jobs(args, config)
    with catalog(args, config) as cat, Locks(lock_directory(cat.path)) as locks:
        locks.take(dest, UPLOADS, "zg-upload", shared=True)
        progress = Progress("upload", _input_size(), mode=args.progress)
        token = secrets.token_hex(8)
        if args.resume:
            up = store.open_resume(expected_size=args.expected_size, jobs=n_jobs)
        else:
            up = store.open_upload(metadata, expected_size=args.expected_size, jobs=n_jobs)
            cat.upload_started(dest, token, metadata)  # stays listed if this process is killed
        try:
            with up:
                total, tail = 0, b""
                while data := src.read(IO_SIZE):
                    up.write(data)
                    total += len(data)
                    tail = (tail + data[-FOOTER.size:])[-FOOTER.size:]  # no copy of the whole piece
                    progress.update(total)
                progress.done()
                if is_archive and not footer_ok(tail, total):
                    # The writer upstream died mid-stream: storing this would record a useless archive.
                    raise CorruptArchiveError("input ended before the archive's end (did zg-encrypt or zfs send "
                                              "fail?): nothing was stored")
                info = up.commit()
            cat.record(dest, info, dataset=dataset, snapshot=snapshot)
            backup.chain_locks(store, cat, dest, info)
        finally:  # completed, or aborted by the `with`: either way no longer an incomplete upload
            cat.upload_ended(dest, token)
        if args.resume:
            cat.uploads_resumed(dest, info.metadata)
    sys.stdout.write(info.id + "\n")
    sys.stdout.flush()
    return 0


def _input_size():
    """The size of stdin when it is a file (the progress line's total), else None."""
    try:
        st = os.fstat(0)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _split_name(name):
    if not name:
        return None, None
    if "@" not in name:
        raise UsageError(f"--name {name!r}: expected DATASET@SNAPSHOT")
    return tuple(name.split("@", 1))


def main(argv=None):
    return run("zg-upload", body, argv)
