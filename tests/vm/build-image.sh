#!/usr/bin/env bash
# Builds the Debian 12 base image of the VM lab from Debian's packages
# (debootstrap: no box or cloud image is downloaded) and caches it by a
# content key: the sha256 of this script, which is the whole recipe
# (package list, guest files). A changed recipe builds a new image.
#
#   bash tests/vm/build-image.sh            # prints the image directory
#
# The directory holds base.qcow2 (ext4 on the whole disk, no partition
# table, no boot loader), vmlinuz and initrd.img for qemu's direct kernel
# boot, and id_ed25519, the key root (and, for Vagrant, user vagrant)
# accepts over ssh. One image serves every VM: the guest reads its
# identity from the kernel command line at each boot (tandem.name=,
# tandem.lab=ADDR/24, tandem.labmac=MAC, tandem.extra=ADDR/24,...).
#
# Environment: TANDEM_VM_CACHE (default /var/cache/tandem-vm),
# TANDEM_VM_MIRROR (default: the Debian mirror this machine's apt uses).
# Needs root, debootstrap, qemu-utils, e2fsprogs, openssh-client.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${TANDEM_VM_CACHE:-/var/cache/tandem-vm}
suite=bookworm
packages=linux-image-amd64,systemd,systemd-sysv,udev,dbus,openssh-server,iproute2,kmod,procps,sudo,adduser,keepalived,python3,socat,curl

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"
for tool in debootstrap qemu-img mkfs.ext4 ssh-keygen flock sha256sum; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt install debootstrap qemu-utils e2fsprogs openssh-client util-linux)"
done

key=$(sha256sum <"$here/build-image.sh" | cut -c1-16)
out=$cache/$key
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 900 9 || die "another build holds $cache/.lock"

if [ -f "$out/READY" ]; then
    log "cached: $out (recipe key $key)"
    echo "$out"
    exit 0
fi

mirror=${TANDEM_VM_MIRROR:-}
if [ -z "$mirror" ]; then
    # The mirror this machine's apt already uses for bookworm (deb822 or one-line format).
    mirror=$(awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ && u ~ /debian$/ { print u; exit }' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    [ -n "$mirror" ] || die "no bookworm mirror in the apt sources: set TANDEM_VM_MIRROR"
fi

work=$(mktemp -d "$cache/build.XXXXXX")
cleanup() {
    local rc=$?
    for m in dev/pts dev proc sys; do
        mountpoint -q "$work/rootfs/$m" 2>/dev/null && umount -l "$work/rootfs/$m"
    done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT INT TERM

root=$work/rootfs
t0=$SECONDS
log "debootstrap $suite from $mirror (recipe key $key)"
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
log "debootstrap done in $((SECONDS - t0)) s"

# --- guest configuration ------------------------------------------------------
cat >"$root/etc/fstab" <<'EOF'
/dev/vda / ext4 defaults,noatime,errors=remount-ro 0 1
EOF
echo tandem-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
: >"$root/etc/resolv.conf"
# Empty machine-id: each VM makes its own at first boot.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"

# Management NIC (qemu user-mode networking or libvirt's management network): DHCP.
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/90-dhcp.network" <<'EOF'
[Match]
Name=eth* en*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
UseDNS=no
UseDomains=no
EOF

# Identity from the kernel command line, every boot, before networkd.
cat >"$root/usr/local/sbin/tandem-vm-identity" <<'EOF'
#!/bin/sh
# tandem.name=NAME tandem.lab=ADDR/PLEN tandem.labmac=MAC [tandem.extra=ADDR/PLEN,...]
# [tandem.vagrant=1]: hostname, static address on the lab NIC (matched by MAC),
# and for Vagrant boxes a user "vagrant" with the image's ssh key and sudo.
set -eu
name= lab= labmac= extra= vagrant=
for arg in $(cat /proc/cmdline); do
    case $arg in
        tandem.name=*) name=${arg#*=} ;;
        tandem.lab=*) lab=${arg#*=} ;;
        tandem.labmac=*) labmac=${arg#*=} ;;
        tandem.extra=*) extra=${arg#*=} ;;
        tandem.vagrant=*) vagrant=${arg#*=} ;;
    esac
done
if [ -n "$name" ]; then
    echo "$name" >/etc/hostname
    hostname "$name"
    printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$name" >/etc/hosts
fi
if [ -n "$lab" ] && [ -n "$labmac" ]; then
    mkdir -p /run/systemd/network
    {
        printf '[Match]\nMACAddress=%s\n\n[Network]\nLinkLocalAddressing=no\nIPv6AcceptRA=no\nAddress=%s\n' "$labmac" "$lab"
        for a in $(echo "$extra" | tr ',' ' '); do printf 'Address=%s\n' "$a"; done
    } >/run/systemd/network/10-lab.network
fi
if [ "$vagrant" = 1 ] && ! getent passwd vagrant >/dev/null; then
    useradd -m -s /bin/bash vagrant
    install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh
    install -m 600 -o vagrant -g vagrant /root/.ssh/authorized_keys /home/vagrant/.ssh/authorized_keys
    echo 'vagrant ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/vagrant
    chmod 440 /etc/sudoers.d/vagrant
fi
EOF
chmod 755 "$root/usr/local/sbin/tandem-vm-identity"
cat >"$root/etc/systemd/system/tandem-vm-identity.service" <<'EOF'
[Unit]
Description=VM lab identity from the kernel command line
DefaultDependencies=no
After=local-fs.target
Before=systemd-networkd.service network-pre.target ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/tandem-vm-identity

[Install]
WantedBy=sysinit.target
EOF

# network-online: do not wait two minutes for a NIC that never gets an address.
mkdir -p "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
cat >"$root/etc/systemd/system/systemd-networkd-wait-online.service.d/timeout.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --timeout=30
EOF

# Logs in memory only (the serial console is captured on the host).
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' >"$root/etc/systemd/journald.conf.d/lab.conf"

# ssh: key only, the image's own key.
ssh-keygen -q -t ed25519 -N '' -C tandem-vm -f "$work/id_ed25519"
install -d -m 700 "$root/root/.ssh"
install -m 600 "$work/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
cat >"$root/etc/ssh/sshd_config.d/lab.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF

chroot "$root" systemctl enable systemd-networkd.service tandem-vm-identity.service ssh.service >/dev/null 2>&1
chroot "$root" systemctl disable keepalived.service apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer dpkg-db-backup.timer >/dev/null 2>&1 || true

# Small: no documentation, no package lists, no hardware the lab lacks.
kver=$(basename "$(ls -d "$root"/lib/modules/*)")
for d in drivers/gpu drivers/media drivers/net/wireless drivers/infiniband drivers/staging \
         drivers/bluetooth drivers/isdn drivers/iio drivers/hid drivers/input/touchscreen sound net/wireless \
         net/bluetooth net/mac80211; do
    rm -rf "$root/lib/modules/$kver/kernel/$d"
done
chroot "$root" depmod "$kver"
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/*.log
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +

# --- the image ------------------------------------------------------------------
cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd.img"
used=$(du -sm "$root" | cut -f1)
size=$((used + used / 3 + 256))
log "rootfs $used MiB; ext4 of $size MiB"
truncate -s "${size}M" "$work/base.raw"
mkfs.ext4 -q -L tandem-vm -d "$root" "$work/base.raw"
qemu-img convert -c -O qcow2 "$work/base.raw" "$work/base.qcow2"
rm -f "$work/base.raw"

mkdir -p "$out"
mv "$work/base.qcow2" "$work/vmlinuz" "$work/initrd.img" "$work/id_ed25519" "$work/id_ed25519.pub" "$out/"
echo "$kver" >"$out/kernel-version"
echo "$packages" >"$out/packages"
date -u +%FT%TZ >"$out/READY"
# Images of older recipes are dead weight.
for old in "$cache"/*/; do
    old=${old%/}
    [ "$old" = "$out" ] || [ ! -f "$old/READY" ] || rm -rf "$old"
done
log "built $out in $((SECONDS - t0)) s: $(du -h "$out/base.qcow2" | cut -f1) qcow2"
echo "$out"
