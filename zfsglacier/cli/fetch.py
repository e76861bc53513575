"""zg-fetch: a store -> stdout (or a file), thawing cold archives first; every byte verified."""

import hashlib
import os

from ..services import thaw
from ..stores import vouches
from ..errors import IntegrityError, NotFoundError, OutputClosedError, UsageError
from ..plumbing.pipes import IO_SIZE, widen_pipe
from .common import binary_stdout, output_file, parser, refuse_terminal_output, run
from .progress import Progress, add_progress_option
from .storeargs import add_store_options, add_thaw_options, catalog, jobs, open_dest, recorded_elsewhere, thaw_policy

EXAMPLES = [
    ('zg-fetch offsite 20261127T163200Z-1a2b3c4d | zg-decrypt ~/.zg/offsite.key | zfs receive tank/db2',
     'thaw if cold, wait, fetch verified, decrypt, receive'),
    ('zg-fetch --no-wait --tier Bulk offsite 20261127T163200Z-1a2b3c4d',
     'request the cheapest thaw and exit 75 at once; run again later'),
    ('zg-fetch -o db.zg offsite 20261127T163200Z-1a2b3c4d',
     'to a file, renamed into place once verified'),
]


def build_parser():
    p = parser("zg-fetch", "Write archive ID from DEST to stdout (or -o FILE), thawing it first if it is cold.", examples=EXAMPLES)
    add_store_options(p)
    p.add_argument("id", metavar="ID", help="archive id, as zg-upload printed it (zg-ls lists them)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (via FILE.partial, renamed when verified)")
    p.add_argument("--resume", action="store_true",
                   help="with -o: keep the bytes already in FILE.partial and fetch only the rest")
    add_thaw_options(p)
    add_progress_option(p)
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    config, store, dest = open_dest(args)
    with catalog(args, config, write=False) as cat:  # none (another machine): the store's checks only
        known = cat.get(dest, args.id)
        progress = Progress("fetch", known.size if known is not None else None, mode=args.progress)
        try:
            thaw.thaw_all(store, dest, cat, [args.id], thaw_policy(args), progress.say)
        except NotFoundError as err:
            raise NotFoundError(f"{err}{recorded_elsewhere(cat, dest, lambda r: r.id == args.id)}") from None
        if args.output:
            fetch_to_file(store, args, jobs(args, config), known, progress)
        else:
            out = binary_stdout()
            refuse_terminal_output(out, "zg-fetch")
            widen_pipe(out)
            copy_verified(store.open_read(args.id, jobs=jobs(args, config), recorded=known), out, known, args.id,
                          progress)
        cat.thaw_done(dest, args.id)
    return 0


def copy_verified(reader, out, known, archive_id, progress, digest=None, done=0):
    """Copy a store reader to ``out``.  The store verified every range; the whole must also be what
    was uploaded.  When the reader checks the whole against the very checksum the catalog recorded
    at upload, that is the check; otherwise (a resumed read, or a store checksum that changed, as
    when an object is copied in place to another storage class) the bytes are hashed here and
    compared with the SHA-256 recorded at upload."""
    vouched = known is not None and vouches(reader, known.checksum, known.sha256)
    try:
        if digest is None and not vouched and known is not None and known.sha256:
            digest = hashlib.sha256()
        for piece in reader.pieces():
            if digest is not None:
                digest.update(piece)
            out.write(piece)
            done += len(piece)
            progress.update(done)
    finally:
        reader.close()
    progress.done()
    if digest is not None and known is not None and known.sha256 and digest.hexdigest() != known.sha256:
        raise IntegrityError(f"archive {archive_id}: SHA-256 of the bytes read differs from the one recorded "
                             f"at upload: it was replaced or damaged in the store")
    if known is not None and done != known.size:  # a store that says "empty" has nothing to verify
        raise IntegrityError(f"archive {archive_id}: {done} bytes read, {known.size} were uploaded: it was "
                             f"replaced or damaged in the store")
    return done


def fetch_to_file(store, args, n_jobs, known, progress):
    partial = args.output + ".partial"
    digest, have = None, 0
    if args.resume and os.path.exists(partial) and not (known is not None and known.sha256):
        raise UsageError(f"cannot resume into {partial}: the catalog has no SHA-256 recorded at upload for "
                         f"{args.id}, so the bytes already there cannot be checked; fetch without --resume")
    if args.resume and os.path.exists(partial):
        digest = hashlib.sha256()  # the store cannot check a whole it reads only part of
        with open(partial, "rb") as f:
            while data := f.read(IO_SIZE):
                digest.update(data)
                have += len(data)
    elif args.resume:
        pass  # nothing fetched yet: a normal fetch
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if have else os.O_TRUNC)
    with os.fdopen(os.open(partial, flags, 0o600), "wb") as f:  # 0600 whatever the umask: it is an archive
        out = output_file(f, partial)
        reader = store.open_read(args.id, jobs=n_jobs, start=have, recorded=known)
        try:
            copy_verified(reader, out, known, args.id, progress, digest, have)
        except IntegrityError as err:
            os.unlink(partial)  # never resume from bytes that failed verification
            raise IntegrityError(f"{err} ({partial} removed: fetch again)") from None
        except OutputClosedError as err:  # a full disk: what was written is verified, keep it
            raise OutputClosedError(f"{err} ({partial} keeps what was written: make room, then run the same "
                                    f"command with --resume)") from None
        out.flush()  # and fsync
    os.replace(partial, args.output)


def main(argv=None):
    return run("zg-fetch", body, argv)
