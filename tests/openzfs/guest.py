"""A QEMU guest running real OpenZFS (Debian 12, OpenZFS 2.3 from bookworm-backports) for the
OpenZFS test tier: the ZFS its users run, where zfs-fuse (pool v23) cannot stand in.

The image is a directory with ``root.img`` (raw ext4 root), ``vmlinuz``, ``initrd.img``, ``kver``,
the throw-away ssh key ``id_ed25519``, and ``recipe`` (a digest of the build-image.sh that built
it).  ``find_image()`` takes ``$ZG_OZVM_IMAGE`` (a directory) as the user says; else the cache
(``$ZG_OZVM_CACHE``, default /var/tmp/zfsglacier-ozvm/image); else a packed ``.tar.zst`` of an
image (``$ZG_OZVM_PACKED``, else ../shared/tools/ozvm/ beside the clone), unpacked into the cache
(~5 s); else ``build_image()`` builds one into the cache from Debian packages (build-image.sh,
~9 min alone, ~12 beside ``make test``), so a clone alone runs the tier.  A cached or packed image
is used only if it is of this recipe, or, made elsewhere, holds every tool the tests run
(``NEEDED``, looked up with debugfs): the CI run of 10e2410 took a packed image without pbzip2,
and the 2013-recipe test failed in the guest for want of a tool, not of a fix.  A machine that
cannot build or boot one (no apt, no QEMU) gets a clear skip with the reason.

Measured here (2 cores, /dev/kvm is kvm_pvm, which Debian kernels cannot boot under, so QEMU
emulates with TCG): boot to ssh 36-41 s, a command ~150 ms over the ssh control connection, ZFS
~10x slower than native, host<->guest streams a few MB/s.  So the work runs inside the guest on
a few MB of data, and a guest is booted once per run; its root is a throw-away qcow2 overlay, so
the image never changes.  The guest reaches no network (QEMU user networking, restrict=on); the
host reaches it on 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILDER = Path(__file__).with_name("build-image.sh")
CACHE = Path(os.environ.get("ZG_OZVM_CACHE", "/var/tmp/zfsglacier-ozvm"))
IMAGE_FILES = ("root.img", "vmlinuz", "initrd.img", "kver", "id_ed25519")


class Unavailable(Exception):
    """No image, no QEMU, or no way to run it: the tier is skipped with this reason."""


def recipe() -> str:
    """The digest an image built by this checkout's build-image.sh carries in its ``recipe`` file."""
    return hashlib.sha256(BUILDER.read_bytes()).hexdigest()[:16]


def _recipe_of(image: Path) -> str | None:
    try:
        return (image / "recipe").read_text().strip()
    except OSError:
        return None


# What the tests run in the guest besides Python: an image from elsewhere is used only if it has them.
NEEDED = ("/usr/sbin/zfs", "/usr/sbin/zpool", "/usr/bin/python3", "/usr/lib/python3/dist-packages/libzfs_core",
          "/usr/bin/openssl", "/usr/bin/pbzip2", "/usr/bin/bzip2", "/usr/bin/zstd", "/usr/sbin/sshd")


def unusable(image: Path) -> str | None:
    """Why ``image`` will not do, or None: complete and of this recipe, or complete with NEEDED."""
    if not all((image / f).exists() for f in IMAGE_FILES):
        return f"it lacks one of {', '.join(IMAGE_FILES)}"
    made = _recipe_of(image)
    if made == recipe():
        return None
    if made is not None:
        return f"it was built by another build-image.sh (recipe {made}, this one is {recipe()})"
    if shutil.which("debugfs") is None:
        return None  # cannot look inside; the tests will say what is missing
    missing = [f for f in NEEDED if subprocess.run(["debugfs", "-R", f"stat {f}", str(image / "root.img")],
                                                   capture_output=True).stderr.count(b"not found")]
    return f"it lacks {', '.join(missing)}" if missing else None


def find_image() -> Path:
    explicit = os.environ.get("ZG_OZVM_IMAGE")
    if explicit:
        path = Path(explicit)
        if not all((path / f).exists() for f in IMAGE_FILES):
            raise Unavailable(f"$ZG_OZVM_IMAGE={path} lacks one of {', '.join(IMAGE_FILES)}")
        return path
    image = CACHE / "image"
    if image.exists():
        why = unusable(image)
        if why is None:
            return image
        print(f"test-openzfs: not using the cached image {image}: {why}", file=sys.stderr)
    packed = [Path(p) for p in [os.environ.get("ZG_OZVM_PACKED")] if p] + \
        sorted((REPO.parent / "shared" / "tools" / "ozvm").glob("*.tar.zst"))
    for tar in packed:
        if tar.exists():
            why = unusable(_unpack(tar, image))
            if why is None:
                return image
            print(f"test-openzfs: not using the packed image {tar}: {why}", file=sys.stderr)
    return build_image(image)


def build_image(image: Path) -> Path:
    """Build the image into ``image`` from Debian packages (build-image.sh); its log goes to
    ``image``.log.  Unavailable (a skip) where this machine has no apt to build with."""
    if shutil.which("apt-get") is None and shutil.which("mmdebstrap") is None:
        raise Unavailable("no OpenZFS guest image, and no apt here to build one from Debian packages: set "
                          "ZG_OZVM_IMAGE to an image directory or ZG_OZVM_PACKED to a packed one")
    image.parent.mkdir(parents=True, exist_ok=True)
    log = image.with_name(image.name + ".log")
    print(f"test-openzfs: building a guest image from Debian packages into {image} (~12 min; log {log})",
          file=sys.stderr)
    t0 = time.monotonic()
    with open(log, "wb") as out:
        done = subprocess.run(["bash", str(BUILDER), str(image)], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode or not all((image / f).exists() for f in IMAGE_FILES):
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise BuildFailed(f"building the guest image failed (exit {done.returncode}; {log}): {' | '.join(tail)}")
    (image / "recipe").write_text(recipe() + "\n")
    print(f"test-openzfs: image built in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return image


class BuildFailed(Exception):
    """The machine could build an image, and the build failed: a failure, not a skip."""


def _unpack(tar: Path, image: Path) -> Path:
    tmp = image.with_name(image.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with subprocess.Popen(["zstd", "-dc", str(tar)], stdout=subprocess.PIPE) as z:
        subprocess.run(["tar", "-xf", "-", "--sparse", "-C", str(tmp)], stdin=z.stdout, check=True)
    if z.returncode or not all((tmp / f).exists() for f in IMAGE_FILES):
        raise BuildFailed(f"{tar} is not a packed guest image (needs {', '.join(IMAGE_FILES)})")
    (tmp / "id_ed25519").chmod(0o600)
    shutil.rmtree(image, ignore_errors=True)
    tmp.rename(image)
    return image


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerator() -> str:
    """kvm where the host's KVM runs ordinary guests; tcg (emulation) otherwise.  kvm_pvm (software
    nested virtualisation, as on these machines) runs only PVM guest kernels: Debian's never gets
    out of its decompressor there."""
    forced = os.environ.get("ZG_OZVM_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    usable = os.access("/dev/kvm", os.W_OK)
    if usable and (Path("/sys/module/kvm_intel").exists() or Path("/sys/module/kvm_amd").exists()):
        return "kvm"
    return "tcg"


class Guest:
    """One booted guest: ``run`` commands in it (stdin and stdout pass through), ``stop`` it."""

    def __init__(self, image: Path, workdir: Path, *, disks: int = 2, disk_size: int = 2 << 30,
                 memory_mib: int = 2048, cpus: int = 2):
        for tool in ("qemu-system-x86_64", "qemu-img", "ssh"):
            if shutil.which(tool) is None:
                raise Unavailable(f"{tool} is not installed (apt-get install qemu-system-x86 qemu-utils "
                                  f"openssh-client)")
        self.image, self.dir = image, workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.key = self.dir / "id_ed25519"
        shutil.copy(image / "id_ed25519", self.key)
        self.key.chmod(0o600)
        self.accel = accelerator()
        overlay = self.dir / "root.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image / "root.img"),
                        str(overlay)], check=True)
        drives = []
        for n in range(1, disks + 1):
            disk = self.dir / f"disk{n}.img"
            with open(disk, "wb"):  # blank and sparse: pools go here
                pass
            os.truncate(disk, disk_size)
            drives += ["-drive", f"file={disk},format=raw,if=none,id=d{n},cache=unsafe,discard=unmap",
                       "-device", f"virtio-blk-pci,drive=d{n},serial=zg-disk{n}"]
        accel, cpu = ("kvm", "host,-arch-capabilities") if self.accel == "kvm" else ("tcg,thread=multi,tb-size=1024", "max")
        self.serial = self.dir / "serial.log"
        self._qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-name", "zg-openzfs", "-machine", "q35", "-accel", accel, "-cpu", cpu,
             "-m", str(memory_mib), "-smp", str(cpus), "-nodefaults", "-display", "none", "-no-user-config",
             "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
             "-append", "root=/dev/vda rw console=ttyS0,115200 quiet systemd.show_status=0 mitigations=off",
             "-drive", f"file={overlay},format=qcow2,if=none,id=root,cache=unsafe,discard=unmap",
             "-device", "virtio-blk-pci,drive=root", *drives,
             "-nic", f"user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:22",
             "-device", "virtio-rng-pci", "-serial", f"file:{self.serial}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.dir / "qemu.log", "wb"))
        self.devices = [f"/dev/disk/by-id/virtio-zg-disk{n}" for n in range(1, disks + 1)]

    def _ssh(self, *extra):
        return ["ssh", "-i", str(self.key), "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=5", "-o", "ControlMaster=auto", "-o", f"ControlPath={self.dir}/ssh.sock",
                "-o", "ControlPersist=600", *extra, "root@127.0.0.1"]

    def ssh_command(self) -> list[str]:
        """The ssh command line that reaches the guest (for a person, or a script)."""
        return self._ssh()

    def wait(self, timeout: float = 400) -> float:
        """Wait for ssh; returns the seconds it took."""
        t0 = time.monotonic()
        while True:
            if self._qemu.poll() is not None:
                log = (self.dir / "qemu.log").read_text(errors="replace").strip()
                raise Unavailable(f"qemu exited ({self._qemu.returncode}): {log[-300:]}")
            p = subprocess.run(self._ssh("-o", "ControlMaster=no", "-o", "ControlPath=none") + ["true"],
                               capture_output=True)
            if p.returncode == 0:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                tail = self.serial.read_text(errors="replace")[-600:] if self.serial.exists() else ""
                raise Unavailable(f"the guest did not answer ssh in {timeout:.0f} s ({self.accel}); serial: {tail}")
            time.sleep(1)

    def run(self, command: str, *, input: bytes | None = None, check: bool = True, timeout: float = 1800,
            stdout=None) -> subprocess.CompletedProcess:
        """``command`` (a shell line) in the guest, as root."""
        p = subprocess.run(self._ssh() + [command], input=input, timeout=timeout,
                           stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE)
        if check and p.returncode:
            raise RuntimeError(f"guest: `{command}` exited {p.returncode}: {p.stderr.decode(errors='replace')[-800:]}")
        return p

    def stop(self) -> None:
        if self._qemu.poll() is None:
            try:
                self.run("systemctl poweroff", check=False, timeout=30)
            except subprocess.TimeoutExpired:
                pass  # killed below
            try:
                self._qemu.wait(30)
            except subprocess.TimeoutExpired:
                self._qemu.kill()
                self._qemu.wait()
        try:  # the control connection's master; it can hang on a guest that died under it
            subprocess.run(self._ssh("-O", "exit"), capture_output=True, timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in self.dir.glob("disk*.img"):
            f.unlink()
        (self.dir / "root.qcow2").unlink(missing_ok=True)


if __name__ == "__main__":  # `python3 tests/openzfs/guest.py`: find or build the image, say where it is
    try:
        print(find_image())
    except Unavailable as why:
        print(f"test-openzfs: no image: {why}", file=sys.stderr)
    except BuildFailed as why:
        print(f"test-openzfs: FAILED: {why}", file=sys.stderr)
        sys.exit(1)
