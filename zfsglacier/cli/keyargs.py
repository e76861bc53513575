"""How commands turn KEY arguments and passphrase options into recipients and identities."""

from .. import keys, stores
from ..errors import KeyFileError, UsageError


def add_key_options(p, *, encrypting):
    p.add_argument("keys", nargs="*", metavar="KEY",
                   help="key file(s): a zg-keygen secret key, or (to encrypt) a .pub recipient file; "
                        "the type is detected from the contents" +
                        ("" if encrypting else "; or a 2013 key file for 2013-format archives"))
    if encrypting:
        p.add_argument("-r", "--recipient", action="append", default=[], metavar="zgpub-...",
                       help="a public recipient given inline (repeatable)")
    p.add_argument("-p", "--passphrase", action="store_true",
                   help=f"also use a passphrase: from --passphrase-fd, ${keys.PASSPHRASE_ENV}, or the terminal")
    p.add_argument("--passphrase-fd", type=int, metavar="FD", help="read the passphrase (one line) from this fd")


def recipients(args):
    """Everything the archive should be openable by."""
    out = []
    for path in args.keys:
        kf = keys.read_key_file(path)
        if kf.kind == "secret":
            out.append(kf.secret)
        elif kf.kind == "public":
            out.extend(kf.recipients)
        else:
            raise KeyFileError(f"{path} is not a zfsglacier key file (make one with zg-keygen); "
                               f"2013-format keys can only decrypt")
    out.extend(keys.parse_recipient(r) for r in args.recipient)
    if args.passphrase or args.passphrase_fd is not None:
        out.append(keys.get_passphrase(fd=args.passphrase_fd, confirm=True))
    if not out:
        raise UsageError("no key given: name a key file (zg-keygen makes one) or use --passphrase")
    return out


def identities(args, *, allow_foreign=False):
    """Everything we may open archives with; (identities, foreign key files)."""
    idents, foreign = [], []
    for path in args.keys:
        kf = keys.read_key_file(path)
        if kf.kind == "secret":
            idents.append(kf.secret)
        elif kf.kind == "public":
            raise KeyFileError(f"{path} is a public key: it can encrypt but not decrypt; "
                               f"use the secret key file it came from")
        elif allow_foreign:
            foreign.append(kf)
        else:
            raise KeyFileError(f"{path} is not a zfsglacier secret key file")
    if args.passphrase or args.passphrase_fd is not None:
        idents.append(keys.get_passphrase(fd=args.passphrase_fd))
    if not idents and not foreign:
        raise UsageError("no key given: name a secret key file or use --passphrase")
    return idents, foreign


# --- sender signatures -------------------------------------------------------------------------

def add_sign_option(p):
    p.add_argument("--sign", metavar="FILE",
                   help="sign the archive with this signing key (zg-keygen --signing), so that readers "
                        "given its signer (--signer) accept it; default: the destination's `sign` setting")


def add_signer_option(p):
    p.add_argument("--signer", action="append", default=[], metavar="FILE",
                   help="accept only archives signed by a signer in FILE (zgsigner-... lines; repeatable); "
                        "default: the destination's `signer` setting")


def _setting(args, config, key):
    dest = getattr(args, "dest", None)
    return stores.destination_setting(dest, key, config=config) if dest and config is not None else None


def signing_key(args, config=None):
    """The SigningKey to sign with, or None."""
    path = args.sign or _setting(args, config, "sign")
    if not path:
        return None
    kf = keys.read_key_file(str(path))
    if kf.kind != "signing":
        raise KeyFileError(f"{path} is not a zfsglacier signing key (make one with zg-keygen --signing)")
    return kf.signing


def signers(args, config=None):
    """The Signers an archive must be signed by (empty: none required)."""
    paths = list(args.signer) or ([_setting(args, config, "signer")] if _setting(args, config, "signer") else [])
    out = []
    for path in paths:
        kf = keys.read_key_file(str(path))
        if kf.kind != "signer":
            raise KeyFileError(f"{path} is not a signer file (zgsigner-... lines, printed by zg-keygen --signing)")
        out.extend(kf.signers)
    return tuple(out)
