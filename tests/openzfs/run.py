"""The OpenZFS test tier (`make test-openzfs`): the ZFS tests of this checkout, run inside a QEMU
guest with real OpenZFS, over pools the tests make there.

    python3 tests/openzfs/run.py [PYTEST ARGS...]      # default: the ZFS tests on file://
    python3 tests/openzfs/run.py --shell                # boot, install, print how to ssh in; Ctrl-C stops
    python3 tests/openzfs/run.py --ci                   # what make check runs (CI_TESTS)

The tests run once per ZFS backend in ``$ZG_OPENZFS_BACKENDS`` (default ``pyzfs cli``), each with
``ZG_ZFS`` forcing it, so that the libzfs_core backend passes the same tests as the CLI one.

What goes into the guest, which has no network: this checkout (the files git tracks, and the C
extension built here: host and guest are both Debian 12, glibc 2.36, CPython 3.11) and an
installed tree of the Python distributions it needs, copied from this host's site-packages
(``dependency_files``), as one zstd tar over ssh.  The tests run there with pytest, as root, and
make their pools on sparse files exactly as on zfs-fuse (tests/zfsfuse.py sees /dev/zfs and
starts no daemon).  Exit: pytest's code; 0 with a SKIPPED line when no guest can run here (1 with
``--ci``: make check promises the tier ran).
"""

from __future__ import annotations

import importlib.util
import io
import os
import py_compile
import subprocess
import sys
import tarfile
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guest import REPO, BuildFailed, Guest, Unavailable, find_image  # noqa: E402

# The tests that need ZFS, on the stores that need no server (moto is not shipped to the guest).
DEFAULT_TESTS = ["tests/test_openzfs.py", "tests/test_replicate_zfs.py", "tests/test_zfs.py", "tests/test_filters_zfs.py",
                 "tests/test_chains_zfs.py", "tests/test_daily_zfs.py", "tests/test_resume_zfs.py", "-k", "not s3 and not rgw and not vault"]
# `--ci` (make check) has a time budget (CI: keep all of it under 45 min), so the files are shared
# out between the two backends' sessions, which run side by side, to end at about the same time.
# Each runs the files that drive every backend call directly (test_openzfs, test_zfs); pyzfs, the
# backend chosen by default where libzfs_core exists, runs the chains; the CLI backend runs the
# filters and --replicate (whose compound sends and receives go through the CLI on either backend).
# test_daily_zfs runs on zfs-fuse in `make test` and in the full tier (`make test-openzfs`).
# Measured (s, with a second guest beside, so high): chains 600-660, daily 560-645, filters 190-240;
# in the CI run of 50c68d8 the two sessions took 1042 (pyzfs) and 989 (CLI) side by side.
SERVERLESS = ["-k", "not s3 and not rgw and not vault"]
CI_TESTS = {
    "pyzfs": ["tests/test_openzfs.py", "tests/test_zfs.py", "tests/test_chains_zfs.py", *SERVERLESS],
    "cli": ["tests/test_openzfs.py", "tests/test_zfs.py", "tests/test_replicate_zfs.py", "tests/test_filters_zfs.py",
            "tests/test_resume_zfs.py", *SERVERLESS],
}
# What the guest needs: the runtime dependencies pyproject names (read from it, so a new one reaches
# the guest: a list kept here missed xxhash and the CI run of dc04b2d failed at collection), and
# pytest with the plugin pyproject's addopts name.
TEST_ROOTS = ["pytest", "pytest-benchmark"]
GUEST_DIR = "/root/zg"
# Bytecode is shipped, made here: host and guest run CPython 3.11 (one magic number for every
# 3.11.x), and a .pyc names its source's mtime and size, which tar keeps, so the guest's imports
# take it as their own (checked with python3 -v).  Compiling in the guest instead took 81 s in
# the CI run of 10e2410, and a compileall that finds every .pyc current still takes 66 s there
# (TCG makes its 3,000 stats and reads slow), so the guest compiles nothing; without bytecode,
# every zg-* process would compile its imports again, about a minute a test.
BYTECODE_TAG = sys.implementation.cache_tag


def _requirement_names(dist) -> list[str]:
    from packaging.requirements import Requirement
    out = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(req.name)
    return out


def runtime_roots() -> list[str]:
    """The distribution names of pyproject's ``[project] dependencies``."""
    import tomllib
    from packaging.requirements import Requirement
    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    return [Requirement(text).name for text in project["dependencies"]]


def dependency_files(roots=None) -> list[tuple[Path, str]]:
    """(file, path in site-packages) of every installed distribution ``roots`` need, transitively."""
    roots = [*runtime_roots(), *TEST_ROOTS] if roots is None else roots
    seen, todo, files = set(), list(roots), []
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"test-openzfs: {name} is not installed here (run `make install` first)") from None
        for f in dist.files or []:
            if f.parts[0] == ".." or (f.suffix == ".pyc" and BYTECODE_TAG not in f.name):
                continue  # console scripts outside site-packages; bytecode of other Pythons
            files.append((Path(dist.locate_file(f)), str(f)))
        todo.extend(_requirement_names(dist))
    return files


def checkout_files() -> list[tuple[Path, str]]:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    names = [n.decode() for n in tracked.split(b"\0") if n]
    names += [str(p.relative_to(REPO)) for p in (REPO / "zfsglacier").rglob("_fletcher*.so")]
    sources = [REPO / n for n in names if n.endswith(".py")]
    for src in sources:  # bytecode made here, where compiling is ~10x faster than in the guest
        if src.is_file():
            py_compile.compile(str(src), doraise=False, quiet=1)
            pyc = Path(importlib.util.cache_from_source(str(src)))
            if pyc.is_file():
                names.append(str(pyc.relative_to(REPO)))
    return [(REPO / n, n) for n in names if (REPO / n).is_file()]


def payload() -> bytes:
    """One zstd-compressed tar: src/ (the checkout) and site/ (the installed tree)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for prefix, files in (("src", checkout_files()), ("site", dependency_files())):
            for path, name in files:
                if path.is_file():
                    tar.add(path, arcname=f"{prefix}/{name}", recursive=False)
    return subprocess.run(["zstd", "-q", "-T0", "-6"], input=raw.getvalue(), capture_output=True, check=True).stdout


def main(argv) -> int:
    try:
        image = find_image()
        guest = Guest(image, Path(os.environ.get("ZG_OZVM_RUN", "/var/tmp/zfsglacier-ozvm/run")))
    except Unavailable as why:  # make check (--ci) promises the tier ran: there, no guest is a failure
        print(f"test-openzfs: {'FAILED' if argv == ['--ci'] else 'SKIPPED'}: {why}", file=sys.stderr)
        return 1 if argv == ["--ci"] else 0
    except BuildFailed as why:
        print(f"test-openzfs: FAILED: {why}", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    try:
        boot = guest.wait()
        print(f"test-openzfs: guest up in {boot:.0f} s ({guest.accel}): "
              f"{' '.join(guest.run('uname -r; zfs version | head -1; python3 -V').stdout.decode().split())}",
              file=sys.stderr)
        blob = payload()
        t1 = time.monotonic()
        guest.run(f"rm -rf {GUEST_DIR} && mkdir -p {GUEST_DIR} && zstd -dc | tar -x -C {GUEST_DIR}", input=blob)
        print(f"test-openzfs: {len(blob) / 1e6:.1f} MB of checkout and dependencies in {time.monotonic() - t1:.0f} s",
              file=sys.stderr)
        if argv == ["--shell"]:
            print(f"test-openzfs: guest ready: {' '.join(guest.ssh_command())}  (cd {GUEST_DIR}/src; "
                  f"PYTHONPATH={GUEST_DIR}/site); Ctrl-C stops it", file=sys.stderr, flush=True)
            while True:
                time.sleep(3600)
        ci = argv == ["--ci"]
        tests = CI_TESTS if ci else {}
        backends = os.environ.get("ZG_OPENZFS_BACKENDS", "pyzfs cli").split()
        # One pytest per backend, side by side in the guest: the tests wait on ZFS and on child
        # processes much of the time, so two sessions take far less than twice one (measured in
        # README).  Each makes its own pools and temporary directories.
        runs = {}
        for backend in backends:
            log = open(guest.dir / f"pytest-{backend}.log", "w+b")
            args = " ".join(f"'{a}'" for a in (argv if argv and not ci else tests.get(backend, DEFAULT_TESTS)))
            cmd = (f"cd {GUEST_DIR}/src && ZG_ZFS={backend} PYTHONPATH={GUEST_DIR}/site python3 -m pytest -q -rfEs "
                   f"--durations=12 --tb=short -p no:cacheprovider {args}")
            runs[backend] = (subprocess.Popen(guest.ssh_command() + [cmd], stdout=log, stderr=subprocess.STDOUT), log)
        print(f"test-openzfs: pytest with ZG_ZFS={' and ZG_ZFS='.join(backends)}, side by side", file=sys.stderr,
              flush=True)
        worst = 0
        for backend, (proc, log) in runs.items():
            code = proc.wait(timeout=4 * 3600)
            log.seek(0)
            sys.stdout.buffer.write(f"\n===== ZG_ZFS={backend} =====\n".encode() + log.read())
            sys.stdout.flush()
            print(f"test-openzfs: ZG_ZFS={backend}: pytest exited {code} after {time.monotonic() - t0:.0f} s "
                  f"from boot", file=sys.stderr, flush=True)
            worst = worst or code
        return worst
    except Unavailable as why:  # an image and QEMU are here, yet the guest does not run: a failure
        print(f"test-openzfs: FAILED: {why}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        guest.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
