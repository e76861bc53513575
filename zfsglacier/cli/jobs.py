"""[jobs.NAME] of config.toml, applied to the arguments of the commands that run jobs (zg-backup,
zg-prune, zg-drill; zg-units writes the timers that run them; zg-status reads their RPOs).

A job's settings are defaults: an option given on the command line wins.  The job names its
destination and keys once, so that the timer's command line is only `zg-backup --job NAME`.
"""

import fnmatch
import shutil
import subprocess
import time

from ..config import load_config
from ..format import keys
from ..errors import NotFoundError, UsageError
from .sizes import age_setting

# The job settings that are zg-backup options: key in [jobs.NAME] -> attribute of its arguments.
BACKUP_SETTINGS = {"recursive": "recursive", "intermediates": "intermediates", "full_every": "full_every",
                   "full_if_older_than": "full_if_older_than", "compression": "compression", "level": "level",
                   "sign": "sign"}
KEEP = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def add_job_option(p, what):
    p.add_argument("--job", metavar="NAME", help=f"{what} of [jobs.NAME] in config.toml (its destination, "
                                                 f"datasets, keys and settings; options given here win)")


def parse(build_parser, argv):
    """(parser, arguments, the Job that --job names or None) of a command that runs jobs."""
    p = build_parser()
    args = p.parse_args(argv)
    return p, args, job_of(args)


def job_of(args):
    """The Job that ``--job`` names, or None."""
    if not getattr(args, "job", None):
        return None
    return load_config().job(args.job)


def age(job, key):
    return age_setting(job.get(key), f"[jobs.{job.name}] {key}")


def apply(args, job, parser, settings):
    """Fill ``args`` from ``job`` where the command line left the parser's default (keys: the
    command's own choice, with keyargs.default_keys)."""
    for key, attr in settings.items():
        if key in job.settings and getattr(args, attr) == parser.get_default(attr):
            value = age(job, key) if key.endswith("older_than") else job.settings[key]
            setattr(args, attr, value)
    if getattr(args, "dest", None) in (None, ""):
        args.dest = job.destination


def snapshot_name(job, now=None):
    """The snapshot a run of ``job`` takes: "auto", or its strftime pattern of UTC ``now``; None
    when the job backs up snapshots another tool takes (``existing``)."""
    if job.get("existing"):
        return None
    pattern = job.get("snapshot", "auto")
    if pattern == "auto":
        return "auto"
    return time.strftime(pattern, time.gmtime(now))


def newest_matching(zfs, dataset, pattern):
    """The short name of ``dataset``'s newest snapshot whose name matches ``pattern`` (fnmatch)."""
    snaps = [s for s in zfs.snapshots(dataset) if fnmatch.fnmatchcase(s.short, pattern)]
    if not snaps:
        raise NotFoundError(f"{dataset} has no snapshot matching {pattern!r} (the job's `existing`: is the tool "
                            f"that takes them running?)")
    return snaps[-1].short


def schedule(job, key, default):
    """The job's systemd calendar expression for ``key``, checked by systemd-analyze where it is."""
    value = job.get(key, default)
    if "\n" in value or not value.strip():
        raise UsageError(f"[jobs.{job.name}] {key}: give a systemd calendar expression (daily, Sun 03:00, ...)")
    checker = shutil.which("systemd-analyze")
    if checker:  # systemd's own parser says whether the timer will ever fire
        done = subprocess.run([checker, "calendar", value], capture_output=True, text=True)
        if done.returncode:
            raise UsageError(f"[jobs.{job.name}] {key} = {value!r} is not a systemd calendar expression "
                             f"({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'refused'})")
    return value


def check(job, config):
    """What zg-config check says of a job: its destination, keys, ages and schedules, in words."""
    if "://" not in job.destination and not job.destination.startswith("/"):
        config.destination(job.destination)
    for path in job.keys:
        kf = keys.read_key_file(path)
        if kf.kind not in ("public", "secret"):
            raise UsageError(f"key {path} is not a recipient (.pub) or secret key file")
    if job.get("drill_key"):
        if keys.read_key_file(job.get("drill_key")).kind != "secret":
            raise UsageError(f"drill_key {job.get('drill_key')} is not a secret key file")
    for key in ("full_if_older_than", "rpo"):
        age(job, key)
    for key, default in (("schedule", "daily"), ("prune_schedule", "weekly"), ("drill_schedule", "monthly")):
        schedule(job, key, default)
    how = f"snapshots matching {job.get('existing')!r}" if job.get("existing") else \
        f"snapshot {job.get('snapshot', 'auto')!r}"
    return f"{', '.join(job.datasets)} to {job.destination}, {how}, {job.get('schedule', 'daily')}"
