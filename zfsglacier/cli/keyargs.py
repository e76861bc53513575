"""How commands turn key options into recipients and identities (one group for every command)."""

from ..format import keys
from ..errors import KeyFileError, UsageError


# One key-option group for every command that takes keys, the same spelling and meaning everywhere;
# what a key is for follows the command's role: a command that encrypts takes *recipients* (a .pub
# file, or a secret key file, whose recipient is used), one that decrypts takes *identities*
# (secret key files).  Passphrases go wherever a key does.
ROLES = ("recipient", "identity")


def add_key_options(p, role, *, positional=False, legacy=False, why=None):
    """``--key KEY`` (repeatable), ``--recipient zgpub-...`` (encrypting), ``-p/--passphrase``
    and ``--passphrase-fd FD``; the filters (``positional``) also take KEY arguments, as in
    ``zg-encrypt KEY``.  ``legacy``: a 2013 key file is accepted too (zg-decrypt).  ``why``: what
    a key adds where one is optional (shown in --help)."""
    assert role in ROLES
    g = p.add_argument_group("keys")
    if role == "recipient":
        what = "a recipient: a .pub file (enough to encrypt) or a secret key file"
    else:
        what = "a secret key file" + (", or a 2013 key file for 2013-format archives" if legacy else "")
    what += " (the type is read from the contents)" + (f"; {why}" if why else "")
    if positional:
        g.add_argument("key_args", nargs="*", metavar="KEY", help=what)
    g.add_argument("--key", dest="keys", action="append", default=[], metavar="KEY",
                   help=("the same as a KEY argument; repeatable" if positional else what + "; repeatable"))
    if role == "recipient":
        g.add_argument(*(["-r"] if positional else []), "--recipient", action="append", default=[],
                       metavar="zgpub-...", help="a public recipient given inline (repeatable)")
    g.add_argument("-p", "--passphrase", action="store_true",
                   help=(f"also {'encrypt to' if role == 'recipient' else 'open with'} a passphrase: from "
                         f"--passphrase-fd, ${keys.PASSPHRASE_ENV}, or the terminal"))
    g.add_argument("--passphrase-fd", type=int, metavar="FD", help="read the passphrase (one line) from this fd")
    p.set_defaults(**({} if positional else {"key_args": []}), **({} if role == "recipient" else {"recipient": []}))


def default_keys(args, paths):
    """The key files a job names (config.toml), where the command line gave no key at all: an
    option given there wins."""
    if not given(args):
        args.keys = list(paths)


def key_files(args):
    return list(args.key_args) + list(args.keys)


def _passphrase(args):
    return args.passphrase or args.passphrase_fd is not None


def given(args):
    """Whether any key or passphrase was given (where a key is optional)."""
    return bool(key_files(args) or args.recipient or _passphrase(args))


def recipients(args):
    """Everything the archive should be openable by."""
    out = []
    for path in key_files(args):
        kf = keys.read_key_file(path)
        if kf.kind == "secret":
            out.append(kf.secret)
        elif kf.kind == "public":
            out.extend(kf.recipients)
        else:
            raise KeyFileError(f"{path} is not a zfsglacier key file (make one with zg-keygen); "
                               f"2013-format keys can only decrypt")
    out.extend(keys.parse_recipient(r) for r in args.recipient)
    if _passphrase(args):
        out.append(keys.get_passphrase(fd=args.passphrase_fd, confirm=True))
    if not out:
        raise UsageError("no key given: name a key file (zg-keygen makes one) or use --passphrase")
    return out


def identities(args, *, allow_foreign=False):
    """Everything we may open archives with; (identities, foreign key files)."""
    idents, foreign = [], []
    for path in key_files(args):
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
    if _passphrase(args):
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
    if not dest or config is None:
        return None
    from .. import stores  # only commands with a destination pay for the store layer's imports
    return stores.destination_setting(dest, key, config=config)


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
