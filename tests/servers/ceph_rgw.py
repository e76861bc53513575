"""Ceph's radosgw on 127.0.0.1: a second, real S3 implementation for the tests (beside moto).

Why: moto is a Python model of S3 that accepts what real servers refuse and lists what they lack.
RGW is the C++ S3 many sites run on premises; Debian bookworm ships Pacific 16.2, which needs
RADOS under it (no SQLite "dbstore" yet).  This starts the smallest cluster that serves S3:

    one ceph-mon, one ceph-osd on memstore (RAM), no mgr, auth none, then radosgw (beast)

every daemon in the foreground as a child of this process, in a temporary directory, on free
loopback ports; ``stop()`` kills them and removes the directory.  The storage classes the tests
use are added to the zone's placement before radosgw first starts (RGW refuses an unconfigured
class with 400 InvalidArgument); on Pacific they are labels: GET works at once, RestoreObject is
refused.  Deleted objects wait for RGW's garbage collector: ``gc()`` runs it, or memstore fills.

Measured here (2 cores): ~15 s from nothing to the first S3 answer.  Packages:
``apt-get install --no-install-recommends radosgw ceph-mon ceph-osd`` (.ci/run installs them).
Run alone: ``python3 -m tests.servers.ceph_rgw`` prints the endpoint and keys, until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ACCESS_KEY = "zgrgwaccess"
SECRET_KEY = "zgrgwsecretzgrgwsecret"
STORAGE_CLASSES = ("GLACIER", "DEEP_ARCHIVE", "STANDARD_IA")  # not GLACIER_IR: a class a server lacks
BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool", "ceph-authtool")


class RgwUnavailable(RuntimeError):
    """Ceph is not installed, or the cluster did not come up (the message says which step)."""


def missing() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, even by kill -9 (no daemons left over)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_CONF = """\
[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = {memstore_bytes}
run dir = {d}/run
pid file = {d}/run/$name.pid
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
mon data = {d}/mon.$id
osd data = {d}/osd.$id
keyring = {d}/keyring
ms bind ipv6 = false
# auth none: radosgw (unlike the ceph CLI) finds no common connection mode without these (EACCES)
ms mon client mode = crc
ms client mode = crc
[osd]
osd max object name len = 460
osd max object namespace len = 64
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw dns name = localhost
rgw data = {d}/rgw
# deleted objects' tails may be collected at once (gc() runs it)
rgw gc obj min wait = 0
"""


class CephRgw:
    """A one-host Ceph cluster with radosgw; ``start()`` returns the S3 endpoint URL."""

    def __init__(self, memstore_bytes: int = 6 << 30):
        self.memstore_bytes = memstore_bytes
        self.dir: Path | None = None
        self.procs: list[subprocess.Popen] = []
        self.url = ""
        self.env = {}

    # -- helpers
    def _conf(self) -> list[str]:
        return ["-c", str(self.dir / "ceph.conf")]

    def run(self, *argv: str, timeout: float = 60) -> str:
        """One Ceph CLI command against this cluster; its stdout."""
        try:
            proc = subprocess.run([argv[0], *self._conf(), *argv[1:]], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RgwUnavailable(f"{' '.join(argv[:3])}: no answer in {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise RgwUnavailable(f"{' '.join(argv[:3])} failed: {proc.stderr.strip()[-300:]}")
        return proc.stdout

    def _daemon(self, *argv: str) -> subprocess.Popen:
        log = open(self.dir / "log" / f"{argv[0]}.out", "ab")
        proc = subprocess.Popen([argv[0], *self._conf(), "-f", *argv[1:]], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()
        self.procs.append(proc)
        return proc

    def _wait(self, what: str, ok, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RgwUnavailable(f"{p.args[0]} exited ({p.returncode}) while waiting for {what}; "
                                         f"see {self.dir}/log")
            try:
                if ok():
                    return
            except (RgwUnavailable, OSError):
                pass
            time.sleep(0.2)
        raise RgwUnavailable(f"{what}: not ready after {seconds:.0f} s (logs in {self.dir}/log)")

    # -- life
    def start(self) -> str:
        lacking = missing()
        if lacking:
            raise RgwUnavailable(f"Ceph is not installed (no {', '.join(lacking)}): "
                                 f"apt-get install --no-install-recommends radosgw ceph-mon ceph-osd")
        self.dir = Path(tempfile.mkdtemp(prefix="zg-rgw-"))
        for sub in ("run", "log", "mon.a", "osd.0", "rgw"):
            (self.dir / sub).mkdir()
        mon_port, rgw_port = _free_port(), _free_port()
        fsid = str(uuid.uuid4())
        (self.dir / "ceph.conf").write_text(_CONF.format(fsid=fsid, mon_port=mon_port, rgw_port=rgw_port,
                                                         d=self.dir, memstore_bytes=self.memstore_bytes))
        try:
            self._bring_up(fsid, mon_port)
        except BaseException:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{rgw_port}"
        self._wait("radosgw", lambda: self._answers(), 120)
        self.env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                    "AWS_ENDPOINT_URL_S3": self.url}
        return self.url

    def _bring_up(self, fsid: str, mon_port: int) -> None:
        d = self.dir
        subprocess.run(["ceph-authtool", "--create-keyring", str(d / "keyring"), "--gen-key", "-n", "mon.",
                        "--cap", "mon", "allow *"], check=True, capture_output=True)
        subprocess.run(["monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{mon_port}]", "--fsid", fsid,
                        str(d / "monmap")], check=True, capture_output=True)
        self.run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(d / "monmap"), "--keyring", str(d / "keyring"))
        self._daemon("ceph-mon", "-i", "a")
        self._wait("ceph-mon", lambda: bool(self.run("ceph", "mon", "stat", timeout=5)), 60)
        osd = self.run("ceph", "osd", "create").strip()
        self.run("ceph-osd", "-i", osd, "--mkfs")
        self.run("ceph", "osd", "crush", "add", f"osd.{osd}", "1", "root=default")
        self._daemon("ceph-osd", "-i", osd)
        self._wait("ceph-osd", lambda: "1 up" in self.run("ceph", "osd", "stat", timeout=5), 90)
        # The user (which makes the default zone), then the zone's placement, before radosgw starts:
        # it reads the zone once, at start.
        self.run("radosgw-admin", "user", "create", "--uid=zg", "--display-name=zg",
                 f"--access-key={ACCESS_KEY}", f"--secret={SECRET_KEY}")
        self.run("radosgw-admin", "caps", "add", "--uid=zg", "--caps=user-policy=*")  # user() attaches policies
        for sc in STORAGE_CLASSES:
            self.run("radosgw-admin", "zonegroup", "placement", "add", "--rgw-zonegroup", "default",
                     "--placement-id", "default-placement", "--storage-class", sc)
            self.run("radosgw-admin", "zone", "placement", "add", "--rgw-zone", "default",
                     "--placement-id", "default-placement", "--storage-class", sc,
                     "--data-pool", f"default.rgw.{sc.lower()}.data")
        self._daemon("radosgw", "-n", "client.rgw.a")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.url + "/", timeout=2).read()
        except urllib.error.HTTPError:
            return True  # an S3 error document is an answer
        return True

    def user(self, name: str, policy: dict) -> dict:
        """A new S3 user whose only grant is ``policy`` (an IAM policy document, attached as
        RGW's user policy, PutUserPolicy, by the first user); its credentials as environment."""
        import json

        import boto3

        access, secret = f"zg{name}{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        self.run("radosgw-admin", "user", "create", f"--uid={access}", f"--display-name={name}",
                 f"--access-key={access}", f"--secret={secret}")
        boto3.client("iam", endpoint_url=self.url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                     region_name="us-east-1").put_user_policy(UserName=access, PolicyName=f"zg-{name}",
                                                              PolicyDocument=json.dumps(policy))
        return {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}

    def gc(self) -> None:
        """Free what deleted objects held (RGW collects them later by itself)."""
        self.run("radosgw-admin", "gc", "process", "--include-all", timeout=120)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


if __name__ == "__main__":  # pragma: no cover - by hand
    rgw = CephRgw()
    t0 = time.monotonic()
    print(rgw.start(), f"({time.monotonic() - t0:.1f} s)")
    print(" ".join(f"{k}={v}" for k, v in rgw.env.items()), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        rgw.stop()
