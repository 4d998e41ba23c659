#!/usr/bin/env bash
# Installs what the VM lab needs, from Debian's packages only (root):
# qemu-system-x86 from bookworm-backports (the machine's qemu-utils comes
# from there, and bookworm's qemu-system-x86 conflicts with it), debootstrap
# for the image, and for tests/vm/vagrant-offline.sh libvirt (backports),
# vagrant and vagrant-libvirt. bookworm-backports is added from the same
# mirror the machine's apt already uses for bookworm.
#   bash tests/vm/install-deps.sh [--no-vagrant]
set -euo pipefail
vagrant=1
[ "${1:-}" != --no-vagrant ] || vagrant=0
export DEBIAN_FRONTEND=noninteractive

if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$(awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ && u ~ /debian$/ { print u; exit }' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    [ -n "$mirror" ] || { echo "no bookworm mirror in the apt sources" >&2; exit 1; }
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" >/etc/apt/sources.list.d/bookworm-backports.sources
    apt-get update -qq
fi

bpo=(qemu-system-x86 qemu-system-common qemu-system-data qemu-utils)
std=(debootstrap e2fsprogs openssh-client curl iproute2 util-linux)
if [ "$vagrant" = 1 ]; then
    bpo+=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients)
    std+=(vagrant vagrant-libvirt dnsmasq-base iptables)
fi
apt-get install -y -qq --no-install-recommends -t bookworm-backports "${bpo[@]}" >/dev/null
apt-get install -y -qq --no-install-recommends "${std[@]}" >/dev/null
echo "VM lab dependencies installed: $(qemu-system-x86_64 --version | head -1)"
