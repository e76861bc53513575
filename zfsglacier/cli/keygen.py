"""zg-keygen: make a secret key file, or print the public recipient of one."""

import datetime
import sys

from ..format import keys
from .common import parser, run


def body(argv):
    p = parser("zg-keygen", "Create a secret key file (mode 0600) and print its public recipient.")
    p.add_argument("-o", "--output", metavar="FILE", help="write the new secret key here (never overwrites)")
    p.add_argument("--public", metavar="KEYFILE",
                   help="print the public recipient (or, of a signing key, the signer) of an existing key")
    p.add_argument("--signing", action="store_true",
                   help="make a signing key for a backup host instead (Ed25519); its signer line goes to "
                        "stdout, for readers' --signer")
    args = p.parse_args(argv)
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
    if args.output:
        keys.write_new_key_file(args.output, text)
        print(public)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()  # first: a secret that went nowhere is reported, with nothing else
        sys.stderr.write(f"{what}: {public}\n")
    return 0


def main(argv=None):
    return run("zg-keygen", body, argv)
