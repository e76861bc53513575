"""zg-config: where the configuration is read from, a complete sample of it, and a check of it.

``check`` reads the file as every command does, then opens each destination's store (no network:
a store is only configured) and reads the key files it names, so that what a command would refuse
at 3 a.m. is refused now, one line per destination.
"""

import argparse
import os
import sys
import urllib.parse

from .. import stores
from ..config import SAMPLE, config_path, load_config
from ..errors import OutputClosedError, UsageError, ZgError
from . import jobs as jobs_config
from .common import parser, run
from .keyargs import signers, signing_key
from .storeargs import this_host

EXAMPLES = [
    ("zg-config sample -o ~/.config/zfsglacier/config.toml", "start from the annotated sample, then edit it"),
    ("zg-config check", "read the configuration as the commands will and check every destination in it"),
    ("zg-config check /etc/zfsglacier/config.toml", "check another file (as ZG_CONFIG=FILE would use it)"),
]


def build_parser():
    p = parser("zg-config", "Show, start or check the configuration (destinations, default destination, "
                            "catalog, retries) that every command reads.", examples=EXAMPLES)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    ck = sub.add_parser("check", help="check the configuration: exit 0 when every destination can be used, "
                                      "2 (with one line per problem) when not")
    ck.add_argument("file", nargs="?", metavar="FILE", help="the file to check (default: the one in use)")
    sm = sub.add_parser("sample", help="print a complete, commented sample configuration")
    sm.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead (its directory is made; an "
                                                          "existing file is never overwritten)")
    sub.add_parser("path", help="print the path the configuration is read from ($ZG_CONFIG, else "
                                "$XDG_CONFIG_HOME/zfsglacier/config.toml)")
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    if args.cmd == "path":
        print(config_path())
        return 0
    if args.cmd == "sample":
        with open(SAMPLE, encoding="utf-8") as f:
            text = f.read()
        if args.output:
            _write_new(os.path.expanduser(args.output), text)
        else:
            sys.stdout.write(text)
        return 0
    path = args.file or config_path()
    if not os.path.exists(path):
        raise UsageError(f"config {path}: no such file (`zg-config sample > {path}` starts one; without a "
                         f"file, commands take URLs only)")
    config = load_config(path)
    problems = _report([(name, lambda n=name: _check_destination(config, n)) for name in sorted(config.destinations)]
                       + [(f"job {name}", lambda n=name: jobs_config.check(config.job(n), config))
                          for name in sorted(config.jobs)])
    print(f"catalog {config.catalog}" + ("" if os.path.exists(config.catalog) else " (made at the first backup)"))
    if config.default_destination:
        print(f"default {config.default_destination}")
    if problems:
        raise UsageError(f"config {path}: {problems} of {len(config.destinations) + len(config.jobs)} "
                         f"destination(s) and job(s) cannot be used (see the FAIL lines)")
    return 0


def _report(checks):
    """One ok or FAIL line per (label, check); returns how many failed."""
    problems = 0
    for label, check in checks:
        try:
            print(f"ok      {label}: {check()}")
        except ZgError as err:
            problems += 1
            print(f"FAIL    {label}: {err}")
    return problems


def _check_destination(config, name):
    """What a command would open for destination ``name`` (its store, jobs, keys), in words."""
    named = config.destination(name)
    options = {}
    if named.options.get("host") == "auto":
        options["host"] = this_host()
    store = stores.open_store(name, config=config, **options)
    stores.store_jobs(name, config=config)
    keys = argparse.Namespace(dest=name, sign=None, signer=[])
    signing_key(keys, config)
    signers(keys, config)
    profile = named.options.get("profile")
    import botocore.session  # here: 0.27 s to import, and only profiles need it
    if profile and profile not in botocore.session.Session().available_profiles:
        raise UsageError(f"profile {profile!r} is not in the AWS configuration (~/.aws/config, ~/.aws/credentials "
                         f"or $AWS_CONFIG_FILE): `aws configure --profile {profile}` adds it")
    endpoint = named.options.get("endpoint")
    if endpoint and urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
        raise UsageError(f"endpoint {endpoint!r}: give a URL, https://host[:port]")
    cls = store.price_class()
    return f"{store.url}" + (f" ({cls})" if cls and "://" in named.url and not named.url.startswith("file") else "")


def _write_new(path, text):
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise UsageError(f"{path} already exists; refusing to overwrite it (`zg-config check` checks it)") from None
    except OSError as err:
        raise OutputClosedError(f"cannot write {path}: {err.strerror}") from None


def main(argv=None):
    return run("zg-config", body, argv, report=True)
