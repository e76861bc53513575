"""Every failure a user can cause maps to one exception class and one documented exit code.

The command-line wrapper (zfsglacier.cli.common.run) prints ``str(err)`` as one line on stderr
and exits with ``err.exit_code``; no traceback ever reaches the user for these.  The table is
repeated in README.md; keep the two in step.
"""


class ZgError(Exception):
    """Base class: a failure with a clear one-line message and a documented exit code."""

    exit_code = 1


class UsageError(ZgError):
    """Bad command-line arguments or options."""

    exit_code = 2


class KeyFileError(ZgError):
    """Key file missing, unreadable, malformed, or readable by group/others."""

    exit_code = 3


class NoMatchingKeyError(ZgError):
    """None of the given keys opens any key slot of the archive (wrong key or passphrase)."""

    exit_code = 4


class CorruptArchiveError(ZgError):
    """Authentication failed, the archive is truncated, or its structure is invalid."""

    exit_code = 5


class UnsupportedVersionError(ZgError):
    """The archive was written by a newer format version than this tool reads."""

    exit_code = 6


class NotAnArchiveError(ZgError):
    """The input is not a zfsglacier archive (empty, a plain ZFS stream, something else)."""

    exit_code = 7


class OutputClosedError(ZgError):
    """The reader of our stdout went away (broken pipe) or the output could not be written."""

    exit_code = 8

    def __init__(self, message, *, broken_pipe=False):
        super().__init__(message)
        self.broken_pipe = broken_pipe  # the reader stopped (EPIPE), rather than the disk or device failing


class InputError(ZgError):
    """The input could not be read (an I/O error, a closed stdin)."""

    exit_code = 19


class BrokenStreamError(ZgError):
    """The input is a ZFS send stream that is broken: cut short, no final DRR_END, a checksum that
    fails, or records that make no sense.  zg-encrypt then leaves its archive without an end, so
    nothing stores it as complete."""

    exit_code = 9


class SignerError(ZgError):
    """A signer is required and the archive is not signed by one of them, or its signature fails."""

    exit_code = 14


class StoreError(ZgError):
    """The destination failed: authentication, missing bucket/vault, or retries exhausted.
    ``code`` is the provider's own error code (``NoSuchUpload``, ``InvalidObjectState``...) when
    there is one: callers that act on a particular failure test it, never the message."""

    exit_code = 10

    def __init__(self, message, *, code=None):
        super().__init__(message)
        self.code = code


class NotFoundError(ZgError):
    """The archive id (or dataset/snapshot) asked for does not exist."""

    exit_code = 11


class RestorePendingError(ZgError):
    """A thaw (S3 restore / vault retrieval job) was requested and is not finished: run again later.
    ``thaw``: (destination, archive id) when the archive is cold and a thaw can be asked for (the
    commands then say how: the stores know no command line)."""

    exit_code = 75  # EX_TEMPFAIL: "try again later"

    def __init__(self, message, *, thaw=None):
        super().__init__(message)
        self.thaw = thaw


class IntegrityError(ZgError):
    """Bytes read back from a store do not match the checksums recorded at upload."""

    exit_code = 12


class ResumeMismatchError(IntegrityError):
    """A resumed archive would send, where an earlier run may already have sent other bytes,
    bytes that differ (or a resume journal is damaged): refused before anything is sent.
    zg-backup answers it by starting the archive anew under a new key."""


class ZfsError(ZgError):
    """A zfs command failed, or a dataset/snapshot is not in the state required."""

    exit_code = 13


class DatasetNotFoundError(NotFoundError):
    """zfs says the dataset or snapshot named does not exist."""


class ZfsMissingError(ZfsError):
    """No zfs command on this host (then no dataset of it is here either)."""


class TargetExistsError(ZgError):
    """zg-restore's target exists, or has local changes a receive would roll back: refused
    unless --force."""

    exit_code = 15


class PartialFailureError(ZgError):
    """Some of the datasets of a recursive run failed (each is named above the summary); the
    others are done and recorded."""

    exit_code = 16


class LockedError(ZgError):
    """Another zfsglacier run holds the lock on this dataset and destination."""

    exit_code = 17


class CatalogError(ZgError):
    """The catalog is missing, damaged, foreign, or not writable by a command that records."""

    exit_code = 18


class DamagedCatalogError(CatalogError):
    """The catalog file is damaged, or is not a zfsglacier catalog: `zg-catalog rebuild` replaces it."""


class RetainedError(ZgError):
    """The store keeps the archive under Object Lock until a date the message names: the server
    refuses to delete it before (a governance lock yields to --bypass-governance)."""

    exit_code = 20


class RpoBreachedError(ZgError):
    """zg-status: a dataset's last good backup is older than its recovery point objective (or it
    has none that can be restored)."""

    exit_code = 21
