"""Write the zfs-fuse chain that the OpenZFS tier restores (issue 11: round trips across versions).

    python3 tests/data/zfs-fuse-chain/generate.py      # on a host with zfs-fuse (pool v23)

A small dataset on a zfs-fuse pool, a full and an incremental archived by zg-backup to a
`file://` store kept here (``store/``), the test key that opens them (``test.key``: a key for
test data only), and the file digests of each snapshot (``expected.json``).  Not deterministic
(ZFS guids, keys and nonces are random): it is recorded data, made once and committed, and
tests/test_openzfs.py restores it with zg-restore on OpenZFS 2.3 and compares every file.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from zfsfuse import AdminZfs, running_pool  # noqa: E402


def zg(cmd, *args, env):
    return subprocess.run([sys.executable, str(REPO / "bin" / f"zg-{cmd}"), *map(str, args)], check=True,
                          capture_output=True, env={**os.environ, **env}).stdout.decode()


def digest(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return dict(sorted(out.items()))


def main():
    for name in ("store", "test.key", "expected.json"):
        shutil.rmtree(HERE / name, ignore_errors=True) if name == "store" else (HERE / name).unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp())
    env = {"ZG_CATALOG": str(work / "catalog.db")}
    zfs = AdminZfs()
    with running_pool("128M") as pool:
        ds = f"{pool.name}/fuse"
        zfs.create(ds)
        root = Path(zfs.mountpoint(ds))
        zg("keygen", "-o", HERE / "test.key", env=env)
        pub = work / "test.pub"
        pub.write_text(zg("keygen", "--public", HERE / "test.key", env=env))
        dest = f"file://{HERE / 'store'}"
        zg("init", dest, env=env)
        expected = {"dataset": ds, "zfs": "zfs-fuse 0.7, pool version 23", "snapshots": {}}
        for i, snap in enumerate(("v23-full", "v23-incr")):
            (root / "docs").mkdir(exist_ok=True)
            (root / "docs" / f"note{i}.txt").write_text(f"written on zfs-fuse, generation {i}\n" * 200)
            (root / f"data{i}.bin").write_bytes(hashlib.sha256(str(i).encode()).digest() * 2048)
            if i == 1:
                (root / "data0.bin").unlink()
            zg("backup", ds, dest, "--key", pub, "--snapshot", snap, "--no-hold", env=env)
            expected["snapshots"][snap] = digest(root)
        zfs.destroy(ds, recursive=True)
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(work)
    print(f"wrote {HERE}/store, test.key, expected.json ({ds})")


if __name__ == "__main__":
    main()
