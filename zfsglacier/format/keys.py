"""Keys and key slots.

Every archive has one random 256-bit *file key*.  Each key slot in the header wraps that file key
for one way of opening the archive:

- ``secret``: a secret key file from zg-keygen, used directly (symmetric; no public-key maths, so it
  stays sound even against a future quantum computer).  KEK = HKDF-SHA256(secret, slot salt).
- ``x25519``: a public recipient (``zgpub-...``).  A backup host holding only the ``.pub`` file can
  encrypt and never decrypt.  KEK = HKDF-SHA256(X25519(ephemeral, recipient), ephemeral || recipient).
  The matching private scalar is derived from the secret key file, so one secret key file opens
  both kinds of slot.
- ``passphrase``: scrypt(passphrase, salt, N=2^log_n, r, p).

A KEK wraps the file key with AES-256-GCM under a zero nonce (each KEK is used once: it depends on a
fresh random salt or ephemeral key).  The file key never leaves memory; from it, HKDF derives the
header MAC key, the private-metadata key and the payload key (bound to the header MAC, so a body
cannot be spliced under another header).

Key files are text: ``#`` comment lines, then one ``ZG-SECRET-KEY-...`` line (secret) or one or more
``zgpub-...`` lines (recipients).  The encoded strings carry a 4-byte checksum against typos.
"""

import base64
import getpass
import hashlib
import hmac
import os
import stat
from dataclasses import dataclass

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol import DH
from Crypto.Protocol.KDF import HKDF, scrypt
from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from ..errors import CorruptArchiveError, KeyFileError, NoMatchingKeyError, OutputClosedError, SignerError, UsageError

SECRET_PREFIX = "ZG-SECRET-KEY-"
PUBLIC_PREFIX = "zgpub-"
SIGNING_PREFIX = "ZG-SIGNING-KEY-"
SIGNER_PREFIX = "zgsigner-"
FILE_KEY_SIZE = 32
ZERO_NONCE = bytes(12)

# scrypt cost: 2^16 * r=8 -> 64 MiB of memory, p=4 lanes of work (~0.5 s here).  Readers refuse
# more than what zfsglacier writes plus a margin of one doubling (N=2^17, r=8: 128 MiB; p=8: ~2 s),
# and more than MAX_PASSPHRASE_SLOTS such slots, before trying any slot: a hostile header cannot
# make a reader allocate gigabytes or work for hours (255 slots at N=2^20 would be 4 GiB, hours).
SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P = 16, 8, 4
MAX_LOG_N, MAX_R, MAX_P = 17, 8, 8
MAX_PASSPHRASE_SLOTS = 4
MAX_SLOTS = 64  # x25519 and secret slots cost ~0.1 ms each to try


def hkdf(secret, salt, label):
    return HKDF(secret, FILE_KEY_SIZE, salt, SHA256, context=b"zfsglacier/v1 " + label)


def _wrap(kek, file_key, slot_type):
    c = AES.new(kek, AES.MODE_GCM, nonce=ZERO_NONCE)
    c.update(slot_type.encode())
    ct, tag = c.encrypt_and_digest(file_key)
    return ct + tag


def _unwrap(kek, wrapped, slot_type):
    c = AES.new(kek, AES.MODE_GCM, nonce=ZERO_NONCE)
    c.update(slot_type.encode())
    try:
        return c.decrypt_and_verify(wrapped[:FILE_KEY_SIZE], wrapped[FILE_KEY_SIZE:])
    except ValueError:
        return None


def _encode(prefix, raw):
    check = hashlib.sha256(prefix.encode() + raw).digest()[:4]
    return prefix + base64.urlsafe_b64encode(raw + check).decode().rstrip("=")


def _decode(prefix, text, what):
    body = text[len(prefix):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        raw = b""
    if len(raw) != 36 or hashlib.sha256(prefix.encode() + raw[:32]).digest()[:4] != raw[32:]:
        raise KeyFileError(f"{what} is damaged (bad length or checksum)")  # never echo key material
    return raw[:32]


# --- identities (things that decrypt) and recipients (things that encrypt) -----------------


@dataclass(frozen=True)
class SecretKey:
    """A zg-keygen secret key: opens ``secret`` slots directly and ``x25519`` slots via its scalar."""

    secret: bytes

    @classmethod
    def generate(cls):
        return cls(os.urandom(32))

    def _x25519(self):
        return DH.import_x25519_private_key(hkdf(self.secret, b"", b"x25519 identity"))

    def recipient(self):
        return PublicRecipient(self._x25519().public_key().export_key(format="raw"))

    def encode(self):
        return _encode(SECRET_PREFIX, self.secret)

    def wrap(self, file_key):
        salt = os.urandom(16)
        return ("secret", dict(salt=salt, wrapped=_wrap(hkdf(self.secret, salt, b"secret slot"), file_key, "secret")))

    def unwrap(self, slot_type, body):
        if slot_type == "secret":
            return _unwrap(hkdf(self.secret, body.salt, b"secret slot"), body.wrapped, "secret")
        if slot_type == "x25519":
            me = self._x25519()
            return _x25519_unwrap(me, me.public_key().export_key(format="raw"), body)
        return None


@dataclass(frozen=True)
class PublicRecipient:
    """An X25519 public key (``zgpub-...``): can wrap a file key, cannot unwrap one."""

    public: bytes

    def encode(self):
        return _encode(PUBLIC_PREFIX, self.public)

    def wrap(self, file_key):
        eph = DH.import_x25519_private_key(os.urandom(32))
        eph_pub = eph.public_key().export_key(format="raw")
        shared = DH.key_agreement(static_priv=eph, static_pub=DH.import_x25519_public_key(self.public),
                                  kdf=lambda z: z)
        if shared == bytes(32):
            raise KeyFileError("public key is a low-order point and cannot be used")
        kek = hkdf(shared, eph_pub + self.public, b"x25519 slot")
        return ("x25519", dict(ephemeral=eph_pub, wrapped=_wrap(kek, file_key, "x25519")))


def _x25519_unwrap(priv, pub_raw, body):
    try:
        shared = DH.key_agreement(static_priv=priv, static_pub=DH.import_x25519_public_key(body.ephemeral),
                                  kdf=lambda z: z)
    except ValueError:
        return None
    if shared == bytes(32):
        return None
    return _unwrap(hkdf(shared, body.ephemeral + pub_raw, b"x25519 slot"), body.wrapped, "x25519")


@dataclass(frozen=True)
class Passphrase:
    """A passphrase: wraps and unwraps through scrypt."""

    text: bytes
    log_n: int = SCRYPT_LOG_N

    def wrap(self, file_key):
        salt = os.urandom(16)
        kek = scrypt(self.text, salt, FILE_KEY_SIZE, N=1 << self.log_n, r=SCRYPT_R, p=SCRYPT_P)
        return ("passphrase", dict(log_n=self.log_n, r=SCRYPT_R, p=SCRYPT_P, salt=salt,
                                   wrapped=_wrap(kek, file_key, "passphrase")))

    def unwrap(self, slot_type, body):
        if slot_type != "passphrase":
            return None
        kek = scrypt(self.text, body.salt, FILE_KEY_SIZE, N=1 << body.log_n, r=body.r, p=body.p)
        return _unwrap(kek, body.wrapped, "passphrase")


# --- sender signatures (Ed25519) -------------------------------------------------------------
# A backup host may sign the headers it writes, so that a reader who requires that signer accepts
# no archive from someone who merely learned a .pub.  Signing the header is enough: the payload key
# is derived from the header MAC, which is keyed by the file key that only the writer (and the
# recipients) know, so no one else can put another body under a signed header.


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key (its 32-byte seed), from zg-keygen --signing."""

    seed: bytes

    @classmethod
    def generate(cls):
        return cls(os.urandom(32))

    def _key(self):
        return ECC.construct(curve="Ed25519", seed=self.seed)

    def signer(self):
        return Signer(self._key().public_key().export_key(format="raw"))

    def sign(self, data):
        return eddsa.new(self._key(), "rfc8032").sign(data)

    def encode(self):
        return _encode(SIGNING_PREFIX, self.seed)


@dataclass(frozen=True)
class Signer:
    """An Ed25519 public key (``zgsigner-...``): who may have written an archive."""

    public: bytes

    def encode(self):
        return _encode(SIGNER_PREFIX, self.public)

    def verifies(self, data, signature):
        try:
            eddsa.new(eddsa.import_public_key(self.public), "rfc8032").verify(data, signature)
            return True
        except ValueError:
            return False


def check_signature(header, signers=()):
    """A signed header's signature must verify; with ``signers`` given, the header must be signed
    by one of them.  Checked before any key slot is tried (it needs no secret)."""
    if header.signer is not None:
        if not Signer(header.signer).verifies(header.signed_bytes(), header.signature):
            raise SignerError("archive header's signature does not verify: modified or damaged")
    if not signers:
        return
    if header.signer is None:
        raise SignerError("archive is not signed, and a signer is required: not written by the backup host "
                          "you trust (or by a zfsglacier older than 0.3)")
    if header.signer not in {s.public for s in signers}:
        raise SignerError(f"archive is signed by {Signer(header.signer).encode()}, not by a required signer")


def signing_key_file_text(key, created):
    return (f"# zfsglacier signing key: keep it on the backup host only; it vouches for the archives it writes\n"
            f"# created: {created}\n"
            f"# signer: {key.signer().encode()}\n"
            f"{key.encode()}\n")


# --- key files ------------------------------------------------------------------------------


@dataclass
class KeyFile:
    """What a KEY argument turned out to be, detected from its contents."""

    path: str
    kind: str  # "secret" | "public" | "signing" | "signer" | "foreign" (anything else: a 2013 key, say)
    secret: SecretKey | None = None
    recipients: tuple = ()
    raw: bytes = b""
    signing: SigningKey | None = None
    signers: tuple = ()


def read_key_file(path):
    """Read and classify a key file.  Secret and foreign keys must not be group/other readable."""
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            raw = f.read(1 << 20)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except IsADirectoryError:
        raise KeyFileError(f"key file {path} is a directory") from None
    except PermissionError:
        raise KeyFileError(f"key file {path} is not readable (permission denied)") from None
    except OSError as err:
        raise KeyFileError(f"key file {path} cannot be read: {err.strerror}") from None
    if not raw:
        raise KeyFileError(f"key file {path} is empty")
    kf = classify_key(raw, path)
    if kf.kind not in ("public", "signer") and stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
        raise KeyFileError(
            f"key file {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}")
    return kf


def classify_key(raw, path="key"):
    try:
        lines = [ln.strip() for ln in raw.decode("ascii").splitlines()]
    except UnicodeDecodeError:
        return KeyFile(path, "foreign", raw=raw)
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if lines and lines[0].startswith(SECRET_PREFIX):
        if len(lines) != 1:
            raise KeyFileError(f"key file {path} has more than one line besides comments")
        return KeyFile(path, "secret", secret=SecretKey(_decode(SECRET_PREFIX, lines[0], f"secret key in {path}")))
    if lines and all(ln.startswith(PUBLIC_PREFIX) for ln in lines):
        return KeyFile(path, "public", recipients=tuple(parse_recipient(ln, path) for ln in lines))
    if lines and lines[0].startswith(SIGNING_PREFIX):
        if len(lines) != 1:
            raise KeyFileError(f"key file {path} has more than one line besides comments")
        return KeyFile(path, "signing", signing=SigningKey(_decode(SIGNING_PREFIX, lines[0], f"signing key in {path}")))
    if lines and all(ln.startswith(SIGNER_PREFIX) for ln in lines):
        return KeyFile(path, "signer", signers=tuple(Signer(_decode(SIGNER_PREFIX, ln, f"signer in {path}"))
                                                     for ln in lines))
    return KeyFile(path, "foreign", raw=raw)


def parse_recipient(text, where="argument"):
    if not text.startswith(PUBLIC_PREFIX):
        raise KeyFileError(f"{where}: not a zfsglacier public key (expected {PUBLIC_PREFIX}...)")
    raw = _decode(PUBLIC_PREFIX, text, f"public key in {where}")
    try:
        DH.import_x25519_public_key(raw)
    except ValueError:
        raise KeyFileError(f"public key in {where} is not a usable X25519 key (a low-order or invalid point): "
                           f"make a new one with zg-keygen") from None
    return PublicRecipient(raw)


def secret_key_file_text(key, created):
    return (f"# zfsglacier secret key: keep it secret, keep a copy off-site; it decrypts every archive made for it\n"
            f"# created: {created}\n"
            f"# recipient: {key.recipient().encode()}\n"
            f"{key.encode()}\n")


def write_new_key_file(path, text, mode=0o600):
    """Create a key file with ``mode`` (0600: a secret), refusing to overwrite anything, and whole
    or not at all; directories it needs that do not exist yet (``~/.zg`` on a fresh machine) are
    made: the key's own 0700, any above it as mkdir makes them."""
    parent = os.path.dirname(os.fspath(path))
    if parent and not os.path.isdir(parent):
        try:
            os.makedirs(parent, mode=0o700)
        except OSError as err:
            why = "a file is in the way" if isinstance(err, (FileExistsError, NotADirectoryError)) else err.strerror
            raise KeyFileError(f"cannot create {path}: cannot make its directory {parent} ({why})") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
    except OSError as err:
        raise KeyFileError(f"cannot create {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:  # a full disk: no half-written key file left behind
        os.unlink(path)
        raise OutputClosedError(f"cannot write {path}: {err.strerror}; nothing was kept") from None


# --- passphrases ----------------------------------------------------------------------------

PASSPHRASE_ENV = "ZG_PASSPHRASE"


def get_passphrase(*, fd=None, confirm=False):
    """From --passphrase-fd, else $ZG_PASSPHRASE, else the terminal; never from a plain argument."""
    if fd is not None:
        try:
            with os.fdopen(fd, "rb", closefd=False) as f:
                text = f.readline().rstrip(b"\r\n")
        except OSError as err:
            raise UsageError(f"cannot read the passphrase from fd {fd}: {err.strerror}") from None
    elif os.environ.get(PASSPHRASE_ENV):
        text = os.environ[PASSPHRASE_ENV].encode()
    else:
        try:
            tty = open("/dev/tty", "r+")
        except OSError:
            raise UsageError(
                f"no terminal to ask for the passphrase: set {PASSPHRASE_ENV} or use --passphrase-fd") from None
        with tty:
            text = getpass.getpass("passphrase: ", stream=tty).encode()
            if confirm and getpass.getpass("passphrase again: ", stream=tty).encode() != text:
                raise UsageError("the two passphrases differ")
    if not text:
        raise UsageError("empty passphrase")
    return Passphrase(text)


# --- opening a header -----------------------------------------------------------------------


def derive(file_key, header_salt_or_mac, label):
    return hkdf(file_key, header_salt_or_mac, label)


def header_mac(file_key, file_salt, covered):
    """HMAC-SHA256 of ``covered``: the header bytes before the MAC field."""
    key = derive(file_key, file_salt, b"header")
    return hmac.new(key, covered, hashlib.sha256).digest()


def check_slot_costs(header):
    """Refuse a header that asks more work than zfsglacier ever writes (see MAX_*), before any
    slot is tried."""
    phrases = [b for t, b in header.slots if t == "passphrase" and not isinstance(b, bytes)]
    if len(header.slots) > MAX_SLOTS or len(phrases) > MAX_PASSPHRASE_SLOTS:
        raise CorruptArchiveError(f"archive header has {len(header.slots)} key slots ({len(phrases)} passphrase), "
                                  f"more than zfsglacier writes (at most {MAX_SLOTS}, {MAX_PASSPHRASE_SLOTS}): "
                                  f"refused before trying any")
    for b in phrases:
        if not (1 <= b.log_n <= MAX_LOG_N and 1 <= b.r <= MAX_R and 1 <= b.p <= MAX_P):
            raise CorruptArchiveError(f"passphrase slot asks for scrypt cost N=2^{b.log_n} r={b.r} p={b.p}, beyond "
                                      f"the limit (N=2^{MAX_LOG_N} r={MAX_R} p={MAX_P}): refused before trying any")


def open_header(header, identities):
    """Find the file key with any identity; verify the header MAC.  Returns the file key.

    A slot that opens while the MAC fails is treated like a slot that opens nothing, with the
    same error and exit code (4): otherwise someone who plants a passphrase slot of their own
    guess in an archive could learn from the exit code (4 or 5) whether the victim's passphrase
    is that guess.  So a damaged header with the right key also reads "no key ... opens"; the
    message says that it may be damaged."""
    if not identities:
        raise UsageError("no key given: name a secret key file or use --passphrase")
    check_slot_costs(header)
    kinds = []
    for slot_type, body in header.slots:
        kinds.append(slot_type)
        for ident in identities:
            file_key = ident.unwrap(slot_type, body) if not isinstance(body, bytes) else None
            if file_key is not None and hmac.compare_digest(
                    header_mac(file_key, header.file_salt, header.mac_covered()), header.mac):
                return file_key
    have = ", ".join(sorted(set(kinds))) or "none"
    raise NoMatchingKeyError(f"no key given opens this archive (its key slots: {have}): wrong key or passphrase, "
                             f"or a damaged or modified header")
