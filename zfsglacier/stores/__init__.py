"""Storage backends behind one interface (``base.Store``), chosen by destination URL.

    s3://bucket/prefix   S3 (storage_class option, default DEEP_ARCHIVE)
    glacier://vault      Amazon Glacier vault API
    file:///path         a local directory (also a bare absolute path)
    NAME                 [destinations.NAME] of the user configuration
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ..errors import UsageError
from .base import (STATES, TIERS, ArchiveInfo, Check, IncompleteUpload, Properties, Store, vouches,
                   ThawStatus, Upload, check_host, id_time)

# Options each kind of store takes (others given through a config destination are for the CLI).
STORE_OPTIONS = {
    "s3": {"storage_class", "part_size", "profile", "region", "endpoint", "retry_mode", "max_attempts",
           "connect_attempts", "connect_timeout", "read_timeout", "object_lock", "lock_days"},
    "glacier": {"part_size", "profile", "region", "endpoint", "retry_mode", "max_attempts", "connect_attempts",
                "connect_timeout", "read_timeout"},
    "file": {"part_size"},
}


# Settings of a configured destination that are for the commands, not the store.
CLI_OPTIONS = {"jobs", "sign", "signer", "rpo"}
# Where under an s3:// URL one host's archives go: ``host = "ID"`` adds ``/ID`` to the prefix ("" adds
# nothing); the commands resolve "auto" and the default (cli/storeargs.py) before opening the store.

def with_host(dest: str, host: str) -> str:
    """The URL of ``host``'s archives under the s3:// URL ``dest``."""
    if not host:
        return dest
    if not dest.lower().startswith("s3://"):
        raise UsageError(f"destination {dest!r}: host applies to s3:// destinations (a vault or a directory "
                         f"holds one host's archives: give each host its own)")
    return f"{dest.rstrip('/')}/{check_host(host)}"


def open_store(dest: str, *, config=None, **options) -> Store:
    """The store for a destination URL or configured name; options (None values ignored)
    override the configured ones.  No network access happens here."""
    options = {k: v for k, v in options.items() if v is not None}
    if "://" not in dest and not dest.startswith("/"):
        if config is None:
            from ..config import load_config
            config = load_config()
        named = config.destination(dest)
        merged = dict(named.options)
        merged.update(options)
        if "://" not in named.url and not named.url.startswith("/"):
            raise UsageError(f"destination {dest!r}: url {named.url!r} is not a URL")
        return open_store(named.url, config=config, **merged)
    if "host" in options:
        options = dict(options)
        host = options.pop("host")
        if host == "auto":
            raise UsageError(f"destination {dest!r}: host = \"auto\" is resolved by the commands")
        dest = with_host(dest, host)

    if dest.startswith("/"):
        scheme, netloc, path = "file", "", dest
    else:
        parts = urlsplit(dest)
        scheme, netloc, path = parts.scheme.lower(), parts.netloc, unquote(parts.path)
        if parts.query or parts.fragment:
            raise UsageError(f"destination {dest!r}: no ?query or #fragment allowed")
    if scheme not in STORE_OPTIONS:
        raise UsageError(f"destination {dest!r}: unknown scheme {scheme!r} "
                         f"(use s3://bucket/prefix, glacier://vault or file:///path)")
    store_opts = {k: v for k, v in options.items() if k in STORE_OPTIONS[scheme]}
    unknown = set(options) - STORE_OPTIONS[scheme] - CLI_OPTIONS
    if unknown:
        raise UsageError(f"destination {dest!r}: option(s) {', '.join(sorted(unknown))} do not "
                         f"apply to {scheme}://")

    if scheme == "file":
        if netloc not in ("", "localhost"):
            raise UsageError(f"destination {dest!r}: use file:///absolute/path (three slashes)")
        if not path.startswith("/"):
            raise UsageError(f"destination {dest!r}: the path must be absolute")
        from .file import FileStore
        return FileStore(path, url=f"file://{path}", **store_opts)
    if scheme == "s3":
        if not netloc:
            raise UsageError(f"destination {dest!r}: no bucket (use s3://bucket/prefix)")
        from .s3 import S3Store
        return S3Store(netloc, path.strip("/"), url=dest, **store_opts)
    if not netloc or path.strip("/"):
        raise UsageError(f"destination {dest!r}: use glacier://vault-name")
    from .vault import VaultStore
    return VaultStore(netloc, url=dest, **store_opts)


def destination_setting(dest: str, key: str, *, config=None, default=None):
    """A setting of a configured destination NAME (``default`` for a URL or when unset)."""
    if "://" in dest or dest.startswith("/"):
        return default
    if config is None:
        from ..config import load_config
        config = load_config()
    return config.destination(dest).options.get(key, default)


def store_jobs(dest: str, *, config=None, default: int = 4) -> int:
    """The ``jobs`` setting of a configured destination (the CLI's default for --jobs)."""
    value = destination_setting(dest, "jobs", config=config, default=default)
    if not isinstance(value, int) or value < 1:
        raise UsageError(f"destination {dest!r}: jobs must be a positive integer")
    return value


__all__ = ["open_store", "with_host", "check_host", "store_jobs", "destination_setting", "Store", "Upload", "ArchiveInfo", "Check", "Properties",
           "ThawStatus",
           "IncompleteUpload", "STATES", "TIERS", "id_time", "vouches"]
