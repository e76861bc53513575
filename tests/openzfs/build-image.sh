#!/bin/bash
# Build the OpenZFS guest image of the test tier from Debian packages only.
#
#   tests/openzfs/build-image.sh OUT_DIR
#
# OUT_DIR gets root.img (raw ext4), vmlinuz, initrd.img, kver, id_ed25519(.pub) and versions
# (kernel, OpenZFS, Python of the guest).  Work files go to OUT_DIR.build/, downloaded .debs to
# $ZG_OZVM_DEBS (default: OUT_DIR/../debs) so that a second build downloads nothing.
#
# What it makes: Debian 12 (bookworm, minbase), its kernel 6.1, and OpenZFS from
# $ZG_OZVM_ZFS_SUITE (bookworm-backports: 2.3.x; bookworm: 2.1.x), zfs-dkms compiled in the
# chroot against the guest kernel's headers, python3-pyzfs, and the tools the tests call.
# The mirror is the one this machine's apt already uses (its debian.sources or sources.list),
# because CI reaches the package registries and nothing else.
#
# Measured here (2 cores): ~14 min from nothing, of which the DKMS compile is ~10.5.
#
# Two rules, each enforced once below:
#  - nothing in the chroot may load a module into the HOST kernel: zfsutils' postinst runs
#    `modprobe zfs`; modprobe and insmod are diverted to no-ops for the build;
#  - no loop mounts (CI machines may not allow them): the root is made with `mkfs.ext4 -d`.
set -euo pipefail

OUT=${1:?usage: build-image.sh OUT_DIR}
OUT=$(realpath -m "$OUT")
WORK=$OUT.build
DEBS=${ZG_OZVM_DEBS:-$(dirname "$OUT")/debs}
ZFS_SUITE=${ZG_OZVM_ZFS_SUITE:-bookworm-backports}
say() { printf 'build-image %s: %s\n' "$(date +%T)" "$*" >&2; }

# ---- the mirror this machine uses (deb822 first, then one-line sources)
mirror_for() {  # $1: a regex on the suite
    { awk -v want="$1" '/^URIs:/ {u=$2} /^Suites:/ {for (i = 2; i <= NF; i++) if ($i ~ want) {print u; exit}}' \
          /etc/apt/sources.list.d/*.sources 2>/dev/null || true
      awk -v want="$1" '$1 == "deb" && $3 ~ want {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true
    } | head -1
}
MIRROR=${ZG_OZVM_MIRROR:-$(mirror_for '^bookworm$')}
SECURITY=${ZG_OZVM_SECURITY_MIRROR:-$(mirror_for 'security')}
[ -n "$MIRROR" ] || { say "no Debian bookworm mirror in this machine's apt sources; set ZG_OZVM_MIRROR"; exit 2; }
[ -n "$SECURITY" ] || SECURITY=${MIRROR%/debian}/debian-security

# ---- host tools
need=()
for tool in mmdebstrap:mmdebstrap mkfs.ext4:e2fsprogs zstd:zstd ssh-keygen:openssh-client; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null
fi

rm -rf "$WORK"; mkdir -p "$WORK" "$DEBS"
ssh-keygen -q -t ed25519 -N '' -C zg-openzfs-guest -f "$WORK/id_ed25519"
cat >"$WORK/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: bookworm-security
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# ---- what runs inside the new root, after the base system is unpacked ($1 is the root)
cat >"$WORK/customize" <<'EOS'
#!/bin/sh
set -eu
R=$1; WORK=$2; ZFS_SUITE=$3
export DEBIAN_FRONTEND=noninteractive
in_root() { chroot "$R" "$@"; }

# Rule 1: the chroot shares the host's kernel; no module may reach it.
for f in /sbin/modprobe /sbin/insmod; do
    in_root dpkg-divert --local --rename --add "$f" >/dev/null
    printf '#!/bin/sh\necho "build chroot: $0 $* refused" >&2\nexit 0\n' >"$R$f"
    chmod 755 "$R$f"
done

KVER=$(ls "$R/lib/modules" | sort -V | tail -1)
echo "$KVER" >"$WORK/kver"
in_root apt-get install -y -q -o APT::Install-Recommends=0 -o DPkg::Lock::Timeout=900 -t "$ZFS_SUITE" \
    zfs-dkms zfsutils-linux python3-pyzfs
ls "$R/lib/modules/$KVER/updates/dkms/"zfs.ko* >/dev/null 2>&1 || in_root dkms autoinstall -k "$KVER"
ls "$R/lib/modules/$KVER/updates/dkms/"zfs.ko* >/dev/null   # fails the build when DKMS made no module

for f in /sbin/modprobe /sbin/insmod; do
    rm -f "$R$f"
    in_root dpkg-divert --local --rename --remove "$f" >/dev/null
done

# A guest that boots straight to sshd on 10.0.2.15 (QEMU user networking), root by key only.
echo zg-openzfs >"$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 zg-openzfs\n' >"$R/etc/hosts"
echo '/dev/vda / ext4 defaults,noatime 0 1' >"$R/etc/fstab"
mkdir -p "$R/etc/systemd/network" "$R/root/.ssh" "$R/etc/systemd/journald.conf.d"
printf '[Match]\nName=en* eth*\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
    >"$R/etc/systemd/network/10-guest.network"
in_root systemctl enable systemd-networkd.service ssh.service >/dev/null 2>&1
in_root systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer fstrim.timer man-db.timer >/dev/null 2>&1
chmod 700 "$R/root/.ssh"
install -m 600 "$WORK/id_ed25519.pub" "$R/root/.ssh/authorized_keys"
printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n' >"$R/etc/ssh/sshd_config.d/zg.conf"
printf '[Journal]\nStorage=volatile\n' >"$R/etc/systemd/journald.conf.d/zg.conf"
grep -qx zfs "$R/etc/modules" 2>/dev/null || echo zfs >>"$R/etc/modules"
# The initramfs only has to mount an ext4 root on virtio.
printf 'MODULES=list\nCOMPRESS=zstd\n' >"$R/etc/initramfs-tools/conf.d/zg"
printf '%s\n' virtio_pci virtio_blk virtio_net ext4 crc32c_generic >"$R/etc/initramfs-tools/modules"
in_root update-initramfs -u -k "$KVER"
cp "$R/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
cp "$R/boot/initrd.img-$KVER" "$WORK/initrd.img"
{ echo "kernel $KVER"
  echo "openzfs $(in_root dpkg-query -W -f '${Version}' zfsutils-linux)"
  echo "python $(in_root python3 -c 'import platform; print(platform.python_version())')"
  echo "debian $(cat "$R/etc/debian_version")"; } >"$WORK/versions"

# What the guest does not need once the module is built: compilers, headers, sources, docs.
# The guest has no network, so it carries no apt sources either.
rm -rf "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/usr/share/locale/* \
       "$R"/usr/src/* "$R"/usr/lib/gcc "$R"/usr/libexec/gcc "$R"/var/lib/dkms/zfs/*/build \
       "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/etc/apt/sources.list.d/* "$R"/etc/apt/sources.list
EOS
chmod 755 "$WORK/customize"

say "debootstrap from $MIRROR, OpenZFS from $ZFS_SUITE (about 14 minutes on 2 cores)"
mmdebstrap --mode=root --variant=minbase --format=directory \
    --aptopt='APT::Install-Recommends "0"' --aptopt='Acquire::Retries "3"' \
    --skip=download/empty \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
    --setup-hook="sync-in $DEBS /var/cache/apt/archives/" \
    --include=systemd-sysv,udev,kmod,iproute2,openssh-server,initramfs-tools,zstd,procps,python3,ca-certificates,openssl,pbzip2,bzip2,linux-image-amd64,linux-headers-amd64 \
    --customize-hook="$WORK/customize \"\$1\" $WORK $ZFS_SUITE" \
    --customize-hook="sync-out /var/cache/apt/archives $DEBS" \
    bookworm "$WORK/rootfs" "$WORK/debian.sources"

used=$(du -sm --apparent-size "$WORK/rootfs" | cut -f1)
mkfs.ext4 -q -F -L zgroot -E root_owner=0:0 -d "$WORK/rootfs" "$WORK/root.img" "$((used + used / 4 + 1024))M"
rm -rf "$WORK/rootfs"
rm -rf "$OUT"
mkdir -p "$OUT"
mv "$WORK"/{root.img,vmlinuz,initrd.img,kver,versions,id_ed25519,id_ed25519.pub} "$OUT/"
rm -rf "$WORK"
say "done: $OUT ($(tr '\n' ' ' <"$OUT/versions"))"
