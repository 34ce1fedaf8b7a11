#!/usr/bin/env bash
# Builds the Debian 12 image the VM acceptance test boots, once, into a cache directory:
#   <cache>/rootfs.ext4 (raw ext4, no partition table), <cache>/vmlinuz, <cache>/initrd.img
# Needs root (debootstrap) and Debian's debootstrap and e2fsprogs. The packages are those a
# cloud image has that the instance bootstrap relies on; python3-cffi-backend must be explicit,
# or cloud-init fails to configure inside debootstrap.
set -euo pipefail

cache=${1:?usage: build-image.sh CACHE_DIR [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}
packages=systemd-sysv,dbus,linux-image-amd64,cloud-init,python3-venv,git,cron,ca-certificates,ifupdown,isc-dhcp-client,python3-cffi-backend,openssl,udev,procps

if [ -f "$cache/rootfs.ext4" ] && [ -f "$cache/vmlinuz" ] && [ -f "$cache/initrd.img" ]; then
  exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror"

# Boot straight from /dev/vda (the whole disk is the filesystem), console on the serial port.
echo "/dev/vda / ext4 defaults 0 1" > "$rootfs/etc/fstab"
echo "jod-vm" > "$rootfs/etc/hostname"
# ifupdown reads the DHCP stanza cloud-init writes into interfaces.d (net.ifnames=0: eth0).
printf 'source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n' > "$rootfs/etc/network/interfaces"
# Only the NoCloud seed: no waiting on cloud metadata services that can't be reached.
echo "datasource_list: [ NoCloud, None ]" > "$rootfs/etc/cloud/cloud.cfg.d/90-datasource.cfg"
chroot "$rootfs" systemctl enable cron >/dev/null 2>&1 || true
rm -rf "$rootfs/var/cache/apt/archives/"*.deb

cp "$(readlink -f "$rootfs/vmlinuz")" "$work/vmlinuz"
cp "$(readlink -f "$rootfs/initrd.img")" "$work/initrd.img"
mke2fs -q -t ext4 -d "$rootfs" -L rootfs "$work/rootfs.ext4" 6G
mv "$work/vmlinuz" "$work/initrd.img" "$work/rootfs.ext4" "$cache/"
