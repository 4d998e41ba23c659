#!/bin/sh
# Installs the tandem .deb the way an operator does and configures this
# node from the package's own examples. Args: NODE MODE NET (e.g. lb1
# active-passive 192.168.56). The package is /tmp/tandem.deb; apt installs
# it (and any missing dependency), or dpkg -i with TANDEM_INSTALL=dpkg
# (the offline VM lab, whose image has the dependencies).
set -eu
node=$1 mode=$2 net=$3
export DEBIAN_FRONTEND=noninteractive
if [ "${TANDEM_INSTALL:-apt}" = dpkg ]; then
    dpkg -i /tmp/tandem.deb
else
    apt-get install -y /tmp/tandem.deb
fi
# The private network's interface name differs between providers and boxes:
# find the one holding our address and put it into the config.
iface=$(ip -o -4 addr show | awk -v net="$net." 'index($4, net) == 1 { print $2; exit }')
[ -n "$iface" ] || { echo "no interface on $net.0/24" >&2; exit 1; }
sed "s/^interface = \"eth1\"/interface = \"$iface\"/" \
    "/usr/share/doc/tandem/examples/$mode-$node.toml" > /etc/tandem/tandem.toml
tandem check -c /etc/tandem/tandem.toml
systemctl enable --now tandem
sleep 2
tandem status
