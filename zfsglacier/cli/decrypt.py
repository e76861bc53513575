"""zg-decrypt: a filter from an archive (v1, or the 2013 format) back to the original stream."""

from ..format import archive, legacy
from ..errors import KeyFileError, NotAnArchiveError, SignerError
from ..format.header import MAGIC, describe_foreign
from ..plumbing.pipes import PeekReader, widen_pipe
from .common import binary_stdin, binary_stdout, parser, refuse_terminal_output, run
from .keyargs import add_key_options, add_signer_option, identities, signers


EXAMPLES = [
    ('zg-decrypt ~/.zg/offsite.key < db.zg | zfs receive tank/db-restored',
     'only authenticated bytes reach zfs receive; a damaged archive exits 5'),
    ('zg-fetch offsite ID | zg-decrypt ~/.zg/offsite.key --signer host.signer | zfs receive tank/db2',
     'refuse (exit 14) an archive not signed by this backup host'),
    ('zg-decrypt ~/.zg/old-2013.key < mysql@2013-12-19-1545.bz2.aes.bz2 > mysql.zfs',
     'a 2013-recipe archive (pbzip2 | openssl aes-256-cbc -a | pbzip2), detected by itself'),
]


def build_parser():
    p = parser("zg-decrypt", "Decrypt an archive on stdin to stdout; only authenticated bytes are written.", examples=EXAMPLES)
    add_key_options(p, "identity", positional=True, legacy=True)
    p.add_argument("--legacy", action="store_true",
                   help="the input is a 2013-format archive (pbzip2 | openssl aes-256-cbc -a | pbzip2); "
                        "normally detected automatically")
    add_signer_option(p)
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    required = signers(args)
    idents, foreign = identities(args, allow_foreign=True)
    src, out = binary_stdin(), binary_stdout()
    refuse_terminal_output(out, "zg-decrypt")
    # Only the output pipe is widened: a 1 MiB input pipe changed no speed here but made glibc's
    # per-thread arenas grow with the stream (350 MiB after 4.7 GB, against 90 MiB without).
    widen_pipe(out)
    src = PeekReader(src)
    head = src.peek(64)
    if args.legacy or (not head.startswith(MAGIC) and legacy.looks_legacy(head)):
        if required:
            raise SignerError("a 2013-format archive carries no signature, and a signer is required")
        if not foreign:
            raise KeyFileError("this is a 2013-format archive: give the 2013 key file (the one openssl used)")
        password = keys_password(foreign)
        legacy.decrypt_legacy(src, out, password)
    elif head.startswith(MAGIC) or MAGIC.startswith(head) and head:
        if not idents:
            raise KeyFileError(f"{foreign[0].path} is not a zfsglacier secret key file (needed for this archive)")
        archive.decrypt(src, out, idents, signers=required)
    else:
        raise NotAnArchiveError(describe_foreign(head))
    out.flush()
    return 0


def keys_password(foreign):
    if len(foreign) > 1:
        raise KeyFileError("give exactly one 2013 key file")
    return legacy.password_from_keyfile(foreign[0].raw)


def main(argv=None):
    return run("zg-decrypt", body, argv)
