"""zg-keygen: make a secret key file, or print the public recipient of one."""

import datetime
import os
import sys

from ..format import keys
from ..errors import UsageError
from .common import parser, run

EXAMPLES = [
    ("zg-keygen -o ~/.zg/offsite.key --public-file ~/.zg/offsite.pub",
     "a secret key, and the recipient file a backup host needs (copy only the .pub there)"),
    ("zg-keygen --public ~/.zg/offsite.key", "print the recipient of an existing secret key"),
    ("zg-keygen --signing -o ~/.zg/host.sign --public-file host.signer",
     "a signing key for this backup host; readers check archives with --signer host.signer"),
]


def build_parser():
    p = parser("zg-keygen", "Create a secret key and print its public recipient. With -o the secret goes to FILE "
                            "(mode 0600, its directory made 0700) and the recipient to stdout, or to "
                            "--public-file; without -o the SECRET KEY ITSELF goes to stdout (the recipient to "
                            "stderr).", examples=EXAMPLES)
    p.add_argument("-o", "--output", metavar="FILE", help="write the new secret key here (never overwrites)")
    p.add_argument("--public-file", metavar="FILE",
                   help="with -o: write the public recipient (or signer) to FILE instead of stdout (never "
                        "overwrites; if either file cannot be written whole, neither is kept)")
    p.add_argument("--public", metavar="KEYFILE",
                   help="print the public recipient (or, of a signing key, the signer) of an existing key")
    p.add_argument("--signing", action="store_true",
                   help="make a signing key for a backup host instead (Ed25519); its signer line goes to "
                        "stdout, for readers' --signer")
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    if args.public:
        kf = keys.read_key_file(args.public)
        if kf.kind not in ("secret", "signing"):
            raise keys.KeyFileError(f"{args.public} is not a zfsglacier secret or signing key file")
        print(kf.secret.recipient().encode() if kf.kind == "secret" else kf.signing.signer().encode())
        return 0
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if args.signing:
        key = keys.SigningKey.generate()
        text, public, what = keys.signing_key_file_text(key, created), key.signer().encode(), "signer"
    else:
        key = keys.SecretKey.generate()
        text, public, what = keys.secret_key_file_text(key, created), key.recipient().encode(), "public recipient"
    if args.public_file and not args.output:
        raise UsageError("--public-file goes with -o FILE (without -o the secret key is written to stdout)")
    if args.output:
        if args.public_file and os.path.lexists(args.public_file):  # refused before anything is made
            raise keys.KeyFileError(f"{args.public_file} already exists; refusing to overwrite it")
        keys.write_new_key_file(args.output, text)
        if not args.public_file:
            print(public)
            return 0
        try:
            keys.write_new_key_file(args.public_file, public + "\n", mode=0o644)
        except BaseException:  # a secret without its recipient file is a half-done run: keep neither
            os.unlink(args.output)
            raise
    else:
        sys.stdout.write(text)
        sys.stdout.flush()  # first: a secret that went nowhere is reported, with nothing else
        sys.stderr.write(f"{what}: {public}\n")
    return 0


def main(argv=None):
    return run("zg-keygen", body, argv)
