#!/usr/bin/env python3
"""`make demo`: a real ZFS dataset backed up and restored, checked file by file.

Starts zfs-fuse (tests/zfsfuse.py), makes a pool on a sparse file, fills a dataset with real
files, then runs the same commands a user would type, printing each one.  Exits non-zero if any
file differs.  Everything it creates is removed at the end (the archives too, unless --keep).
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
import zfsfuse  # noqa: E402

BIN = REPO / "bin"


def run(cmd, **kw):
    print(f"$ {cmd}", flush=True)
    p = subprocess.run(["bash", "-c", "set -euo pipefail; " + cmd], env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}"),
                       **kw)
    if p.returncode != 0:
        raise SystemExit(f"demo: command failed with exit code {p.returncode}: {cmd}")
    return p


def digest_tree(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath, f)
            if p.is_file() and not p.is_symlink():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def fill(path, generation):
    """Real files: documentation from this machine, a generated SQL dump, some random bytes."""
    src = Path("/usr/share/doc")
    copied = 0
    for p in sorted(src.rglob("*")):
        if p.is_file() and not p.is_symlink() and copied < 300 * (generation + 1):
            dst = path / "doc" / p.relative_to(src)
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, dst)
            copied += 1
    with open(path / f"dump-{generation}.sql", "w") as f:
        for i in range(20000):
            f.write(f"INSERT INTO orders VALUES ({i}, 'customer-{i * 7 % 1000}', {i * 3.14:.2f}, 'gen{generation}');\n")
    (path / f"random-{generation}.bin").write_bytes(os.urandom(1 << 20))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", action="store_true", help="keep the work directory with keys and archives")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zfsglacier-demo-"))
    started = zfsfuse.start()
    pool = zfsfuse.Pool.create(size="1G")
    ok = False
    try:
        ds = f"{pool.name}/data"
        dest = f"file://{work}/offsite"
        os.environ["ZG_CATALOG"] = str(work / "catalog.db")
        run(f"zg-init {dest}")
        run(f"zfs create {ds}")
        mnt = Path(subprocess.run(["zfs", "get", "-H", "-o", "value", "mountpoint", ds], capture_output=True,
                                  text=True, check=True).stdout.strip())
        key, pub = work / "offsite.key", work / "offsite.pub"
        run(f"zg-keygen -o {key} > {pub}")
        for generation, snap in enumerate(("monday", "tuesday", "wednesday")):
            fill(mnt, generation)
            run(f"zg-backup {ds} {dest} --key {pub} --snapshot {snap}")
        want = digest_tree(mnt)
        print(f"# {len(want)} files in {ds}@wednesday")
        run(f"zg-ls {dest} {ds}")
        run(f"zfs release zfsglacier:{dest} {ds}@wednesday && zfs unmount {ds} && zfs destroy -r {ds}")
        run(f"zg-restore {dest} {ds}@wednesday {ds} --key {key}")
        got = digest_tree(mnt)
        diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        if diff:
            print(f"demo: FAILED: {len(diff)} files differ, e.g. {diff[:5]}", file=sys.stderr)
            return 1
        run(f"zg-verify {dest} --key {key}")
        sizes = sum(f.stat().st_size for f in (work / "offsite").glob("*.zg"))
        print(f"# OK: all {len(got)} files of {ds}@wednesday restored identical from a full and two "
              f"incrementals ({sizes} bytes in {dest})")
        ok = True
        return 0
    finally:
        pool.destroy()
        if started:
            zfsfuse.stop()
        if args.keep or not ok:
            print(f"# work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
