"""zg-keygen: make a secret key file, or print the public recipient of one."""

import datetime
import sys

from .. import keys
from .common import parser, run


def body(argv):
    p = parser("zg-keygen", "Create a secret key file (mode 0600) and print its public recipient.")
    p.add_argument("-o", "--output", metavar="FILE", help="write the new secret key here (never overwrites)")
    p.add_argument("--public", metavar="KEYFILE", help="print the public recipient of an existing secret key")
    args = p.parse_args(argv)
    if args.public:
        kf = keys.read_key_file(args.public)
        if kf.kind != "secret":
            raise keys.KeyFileError(f"{args.public} is not a zfsglacier secret key file")
        print(kf.secret.recipient().encode())
        return 0
    key = keys.SecretKey.generate()
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = keys.secret_key_file_text(key, created)
    if args.output:
        keys.write_new_key_file(args.output, text)
        print(key.recipient().encode())
    else:
        sys.stdout.write(text)
        sys.stderr.write(f"public recipient: {key.recipient().encode()}\n")
    return 0


def main(argv=None):
    return run("zg-keygen", body, argv)
