"""User configuration: ``$ZG_CONFIG``, else ``$XDG_CONFIG_HOME/zfsglacier/config.toml``
(``~/.config/zfsglacier/config.toml``).  A missing file is an empty configuration.  A complete
sample is ``data/config.sample.toml`` (``zg-config sample``; README shows it); every key:

    catalog = "/var/lib/zfsglacier/catalog.db"   # default: ~/.local/share/zfsglacier/catalog.db
    default_destination = "offsite"

    [destinations.offsite]
    url = "s3://my-bucket/backups"   # or glacier://vault, file:///path
    storage_class = "DEEP_ARCHIVE"   # S3 only: GLACIER, GLACIER_IR, STANDARD_IA, STANDARD
    profile = "backup"               # AWS profile; region = "eu-west-1" likewise
    endpoint = "https://s3.example.net"  # an S3-compatible server (Ceph RGW...); default: AWS's
    jobs = 4                         # parts in flight
    part_size = "64M"                # first upload part (S3: 5M..5G; a vault: a power of two)
    object_lock = "compliance"       # S3 only: "governance" or "compliance", with lock_days: each archive
    lock_days = 90                   # is locked that long, and every archive its chain needs at least as long
    host = "web1"                    # s3:// only: this host's archives under url + "/web1" ("auto": this
                                     # machine's name; "": right under url); unset: see cli/storeargs.host_of

Credentials never go here: boto3's own chain (AWS_PROFILE, ~/.aws, environment) provides them.
Unknown keys in a destination are refused (a typo must not silently pick a default storage class).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import UsageError
from .plumbing.parts import parse_size

SAMPLE = os.path.join(os.path.dirname(__file__), "data", "config.sample.toml")  # zg-config sample

# Keys a [destinations.NAME] table may hold besides url, each with the TOML types it may have: the
# stores' options plus CLI settings.  A wrong type is refused when the file is read, naming the key
# (a `jobs = "4"` must not surface later as an internal error deep in a transfer).
_TEXT, _INT, _NUMBER = (str,), (int,), (int, float)
DESTINATION_TYPES = {
    "storage_class": _TEXT, "part_size": (int, str), "profile": _TEXT, "region": _TEXT, "endpoint": _TEXT,
    "retry_mode": _TEXT, "max_attempts": _INT, "connect_attempts": _INT, "connect_timeout": _NUMBER,
    "read_timeout": _NUMBER, "jobs": _INT, "object_lock": _TEXT, "lock_days": _INT,
    "host": _TEXT,  # s3:// only: "ID", "auto" (this machine's name) or "" (none); unset: see cli/storeargs.host_of
    "sign": _TEXT, "signer": _TEXT,  # the signing key zg-backup signs with; the signer file readers require
    "rpo": _TEXT,  # the longest a dataset may go without a backup there ("26h", "8d"): zg-status
}
DESTINATION_KEYS = set(DESTINATION_TYPES)
TOP_KEYS = {"catalog", "default_destination", "destinations", "hooks", "jobs"}

# Keys of a [jobs.NAME] table (what zg-backup --job, zg-prune --job, zg-drill --job and zg-units take),
# with their types; ages ("30d") and schedules are checked where they are used (cli/jobs.py).
_LIST = (list,)
JOB_TYPES = {
    "datasets": _LIST, "destination": _TEXT, "keys": _LIST, "recursive": (bool,), "intermediates": (bool,),
    "snapshot": _TEXT,  # "auto" (zg-<UTC time>), or a strftime pattern of UTC time ("daily-%Y-%m-%d")
    "existing": _TEXT,  # back up the newest existing snapshot matching this pattern (sanoid: "autosnap_*_daily")
    "full_every": _INT, "full_if_older_than": _TEXT, "rpo": _TEXT,
    "keep_last": _INT, "keep_hourly": _INT, "keep_daily": _INT, "keep_weekly": _INT, "keep_monthly": _INT,
    "keep_yearly": _INT,
    "compression": _TEXT, "level": _INT, "sign": _TEXT,
    "schedule": _TEXT, "prune_schedule": _TEXT, "drill_schedule": _TEXT,  # systemd OnCalendar expressions
    "drill_max_cost": _NUMBER,  # dollars a monthly drill may spend on thaws
    "drill_key": _TEXT,  # the secret key a drill decrypts with (without one it checks checksums only)
}
HOOK_KEYS = {"on_success", "on_failure"}  # [hooks]: shell commands run after zg-backup, zg-prune, zg-verify, zg-drill
_PATHS = ("sign", "signer")  # "~/" in these is the user's home, as in catalog
_TYPE_WORDS = {_TEXT: "a string", _INT: "an integer", _NUMBER: "a number", (int, str): "bytes or a size like \"64M\"",
               (list,): "a list", (bool,): "true or false"}


def config_path() -> str:
    """Where the configuration is read from (it need not exist)."""
    if os.environ.get("ZG_CONFIG"):
        return os.environ["ZG_CONFIG"]
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "zfsglacier", "config.toml")


def default_catalog_path() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "share")
    return os.path.join(base, "zfsglacier", "catalog.db")


@dataclass
class Destination:
    """A named destination: its URL and the options passed to the store (and CLI)."""

    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    """A named job: what to back up where, how often, and what to keep (``[jobs.NAME]``)."""

    name: str
    datasets: list
    destination: str
    keys: list
    settings: dict = field(default_factory=dict)  # every other key of the table, as written

    def get(self, key, default=None):
        return self.settings.get(key, default)


@dataclass
class Config:
    """The parsed configuration; ``raw`` keeps every table for modules with their own sections."""

    path: Optional[str]
    catalog: str
    destinations: dict[str, Destination]
    default_destination: Optional[str] = None
    raw: dict[str, Any] = field(default_factory=dict)
    hooks: dict[str, str] = field(default_factory=dict)  # on_success / on_failure: shell commands
    jobs: dict[str, Job] = field(default_factory=dict)

    def job(self, name: str) -> Job:
        try:
            return self.jobs[name]
        except KeyError:
            known = ", ".join(sorted(self.jobs)) or "none defined"
            raise UsageError(f"no job {name!r} in {self.path or config_path()} ({known})") from None

    def destination(self, name: str) -> Destination:
        try:
            return self.destinations[name]
        except KeyError:
            where = self.path or config_path()
            known = ", ".join(sorted(self.destinations)) or "none defined"
            raise UsageError(f"unknown destination {name!r}: not a URL (s3://, glacier://, "
                             f"file://) and not in {where} ({known})") from None


def load_config(path: Optional[str] = None) -> Config:
    """Read and check the configuration file; UsageError with the file name when malformed."""
    path = path or config_path()
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        return Config(None, default_catalog_path(), {})
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config {path}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"config {path}: {exc.strerror}") from None

    def bad(msg: str) -> UsageError:
        return UsageError(f"config {path}: {msg}")

    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(TOP_KEYS))})")
    catalog = raw.get("catalog", default_catalog_path())
    if not isinstance(catalog, str):
        raise bad("catalog must be a path string")
    default = raw.get("default_destination")
    if default is not None and not isinstance(default, str):
        raise bad("default_destination must be a name")
    tables = raw.get("destinations", {})
    if not isinstance(tables, dict):
        raise bad("[destinations] must be a table of tables")
    destinations = {}
    for name, table in tables.items():
        if not isinstance(table, dict) or not isinstance(table.get("url"), str):
            raise bad(f"[destinations.{name}] needs url = \"s3://...\", \"glacier://...\" "
                      f"or \"file:///...\"")
        unknown = set(table) - DESTINATION_KEYS - {"url"}
        if unknown:
            raise bad(f"[destinations.{name}]: unknown key(s) {', '.join(sorted(unknown))} "
                      f"(known: url, {', '.join(sorted(DESTINATION_KEYS))})")
        options = {k: v for k, v in table.items() if k != "url"}
        for key, value in options.items():
            kinds = DESTINATION_TYPES[key]
            if isinstance(value, bool) or not isinstance(value, kinds):  # TOML's true is no number
                raise bad(f"[destinations.{name}]: {key} must be {_TYPE_WORDS[kinds]}, not {value!r}")
            if key in _PATHS:
                options[key] = os.path.expanduser(value)
        if "part_size" in options:
            try:  # a number of bytes, or a size like "64M"
                options["part_size"] = parse_size(options["part_size"])
            except ValueError as exc:
                raise bad(f"[destinations.{name}]: part_size: {exc}") from None
        destinations[name] = Destination(name, table["url"], options)
    hooks = raw.get("hooks", {})
    if not isinstance(hooks, dict) or set(hooks) - HOOK_KEYS or not all(isinstance(v, str) for v in hooks.values()):
        raise bad(f"[hooks] takes {' and '.join(sorted(HOOK_KEYS))}, each a shell command (a string)")
    if default is not None and default not in destinations:
        raise bad(f"default_destination {default!r} is not under [destinations]")
    jobs = {name: _job(bad, name, table, default) for name, table in _tables(bad, raw, "jobs").items()}
    return Config(path, os.path.expanduser(catalog), destinations, default, raw, dict(hooks), jobs)


def _tables(bad, raw, key):
    tables = raw.get(key, {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise bad(f"[{key}] must be a table of tables ([{key}.NAME])")
    return tables


def _job(bad, name, table, default):
    where = f"[jobs.{name}]"
    unknown = set(table) - set(JOB_TYPES)
    if unknown:
        raise bad(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(JOB_TYPES))})")
    for key, value in table.items():
        kinds = JOB_TYPES[key]
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise bad(f"{where}: {key} must be {_TYPE_WORDS[kinds]}, not {value!r}")
    datasets, keys = table.get("datasets"), table.get("keys")
    if not datasets or not all(isinstance(d, str) and d for d in datasets):
        raise bad(f"{where} needs datasets = [\"pool/dataset\", ...]")
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise bad(f"{where} needs keys = [\"~/.zg/offsite.pub\"] (the recipients its archives are encrypted to)")
    destination = table.get("destination", default)
    if not destination:
        raise bad(f"{where} needs destination = \"NAME\" (or a default_destination)")
    if "snapshot" in table and "existing" in table:
        raise bad(f"{where}: snapshot (take one) and existing (use what sanoid or another tool took) exclude "
                  f"each other")
    settings = {k: v for k, v in table.items() if k not in ("datasets", "destination", "keys")}
    for key in ("sign", "drill_key"):
        if key in settings:
            settings[key] = os.path.expanduser(settings[key])
    return Job(name, list(datasets), destination, [os.path.expanduser(k) for k in keys], settings)
