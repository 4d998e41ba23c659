#!/usr/bin/env bash
# vagrant/ for real, offline: packs a libvirt box from the VM lab's Debian
# 12 image (tests/vm/build-image.sh), starts libvirtd by hand inside a
# network namespace and a private mount namespace made for this run (its
# own /etc/libvirt, /run, /var/lib/libvirt: nothing on the machine is
# changed), and there runs `vagrant box add` of the local file,
# `TANDEM_OFFLINE_BOX=1 vagrant up` (lb1, lb2, web1, web2, the .deb built
# from this tree), the kill-the-primary check with a client on the lab
# network, and `vagrant destroy -f`. Reports the gap.
#
# Usage (root): bash tests/vm/vagrant-offline.sh
# Needs: vagrant, vagrant-libvirt, libvirt-daemon-system (bookworm-backports),
# qemu-system-x86 (bookworm-backports), dnsmasq-base, iptables: see tests/vm/README.md.
set -euo pipefail
VM_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$VM_DIR/../.." && pwd)
VIP=192.168.56.100
UP_TIMEOUT=${TANDEM_VAGRANT_UP_TIMEOUT:-900}

# log, die, client_report, client_outages (the lab's other helpers are unused here).
# shellcheck source=tests/vm/lib.sh
. "$VM_DIR/lib.sh"
export LAB_T0=${LAB_T0:-$EPOCHREALTIME}

# --- inside the namespaces ----------------------------------------------------------
inner() {
    # Private copies of everything libvirt writes; the host's stay untouched.
    mount -t tmpfs -o mode=755 tmpfs /run
    mkdir -p "$WORK/etc-libvirt" "$WORK/var-lib-libvirt" "$WORK/var-cache-libvirt" "$LOGS/libvirt"
    cp -a /etc/libvirt/. "$WORK/etc-libvirt/"
    mount --bind "$WORK/etc-libvirt" /etc/libvirt
    mount --bind "$WORK/var-lib-libvirt" /var/lib/libvirt
    mount --bind "$WORK/var-cache-libvirt" /var/cache/libvirt
    mount --bind "$LOGS/libvirt" /var/log/libvirt
    cat >>/etc/libvirt/qemu.conf <<'EOF'
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
remember_owner = 0
EOF
    echo 'firewall_backend = "iptables"' >>/etc/libvirt/network.conf
    libvirtd --daemon --pid-file /run/libvirtd.pid
    local i
    for i in $(seq 60); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.5; done
    [ -S /run/libvirt/libvirt-sock ] || die "libvirtd did not start (see $LOGS/libvirt)"
    : "$i"
    log "libvirtd $(libvirtd --version | awk '{print $NF}') running in the namespace"
    virsh -q pool-define-as tandem-pool dir --target "$WORK/pool" >/dev/null
    virsh -q pool-build tandem-pool >/dev/null
    virsh -q pool-start tandem-pool >/dev/null

    export VAGRANT_HOME=$WORK/vagrant.d VAGRANT_DOTFILE_PATH=$WORK/dot VAGRANT_CHECKPOINT_DISABLE=1 \
        VAGRANT_DEFAULT_PROVIDER=libvirt TANDEM_OFFLINE_BOX=1 TANDEM_LIBVIRT_POOL=tandem-pool \
        TANDEM_CONSOLE_DIR=$LOGS TANDEM_DEB=$DEB
    cd "$ROOT/vagrant"
    local t0=$SECONDS
    vagrant box add --name tandem-offline "$WORK/tandem-offline.box" >"$LOGS/vagrant-box-add.log" 2>&1 ||
        { cat "$LOGS/vagrant-box-add.log" >&2; die "vagrant box add failed"; }
    log "vagrant box add tandem-offline ($((SECONDS - t0)) s)"

    t0=$SECONDS
    log "vagrant up (lb1, lb2, web1, web2; software emulation: a few minutes)"
    if ! timeout "$UP_TIMEOUT" vagrant up --provider=libvirt >"$LOGS/vagrant-up.log" 2>&1; then
        tail -40 "$LOGS/vagrant-up.log" >&2
        die "vagrant up failed (log: $LOGS/vagrant-up.log)"
    fi
    log "vagrant up done in $((SECONDS - t0)) s"
    UP_S=$((SECONDS - t0))

    local s1 s2
    s1=$(vagrant ssh lb1 -c 'sudo tandem status' 2>/dev/null)
    s2=$(vagrant ssh lb2 -c 'sudo tandem status' 2>/dev/null)
    printf -- '--- lb1: sudo tandem status\n%s\n--- lb2: sudo tandem status\n%s\n' "$s1" "$s2" >&2
    state() { awk '$1 == "web-vip" { print $3 }' <<<"$1"; }
    # Startup order decides who is master first; lb1 (priority 150) holds back
    # for preempt_delay (30 s) if lb2 came first: wait for lb1.
    for i in $(seq 12); do
        [ "$(state "$s1")" = master ] && [ "$(state "$s2")" = backup ] && break
        sleep 5
        s1=$(vagrant ssh lb1 -c 'sudo tandem status' 2>/dev/null)
        s2=$(vagrant ssh lb2 -c 'sudo tandem status' 2>/dev/null)
    done
    if [ "$(state "$s1")" != master ] || [ "$(state "$s2")" != backup ]; then
        die "want lb1 master and lb2 backup, got lb1 $(state "$s1"), lb2 $(state "$s2")"
    fi
    local body
    body=$(curl -s -m 5 "http://$VIP/") || die "no answer through the VIP"
    log "OK: lb1 master, lb2 backup; curl http://$VIP/ (from the lab network): $body"

    # README step 4: kill the primary the way a crash does, with a client running.
    local clog=$LOGS/client-vagrant-sigkill.log ev gap failed total n before noconn inflight cpid cpid2
    # Two loops 15 ms apart, each a new connection every 30 ms (as scenario.sh).
    bash "$VM_DIR/client.sh" "http://$VIP/" "$clog.1" 60 30 &
    cpid=$!
    sleep 0.015
    bash "$VM_DIR/client.sh" "http://$VIP/" "$clog.2" 60 30 &
    cpid2=$!
    sleep 2
    log "vagrant ssh lb1 -c 'sudo systemctl kill -s KILL tandem'"
    ev=$EPOCHREALTIME
    vagrant ssh lb1 -c 'sudo systemctl kill -s KILL tandem' 2>/dev/null
    sleep 6
    kill "$cpid" "$cpid2" 2>/dev/null || true
    wait "$cpid" "$cpid2" 2>/dev/null || true
    sort -n "$clog.1" "$clog.2" >"$clog"
    rm -f "$clog.1" "$clog.2"
    s2=$(vagrant ssh lb2 -c 'sudo tandem status' 2>/dev/null)
    printf -- '--- lb2 after the kill: sudo tandem status\n%s\n' "$s2" >&2
    [ "$(state "$s2")" = master ] || die "lb2 is $(state "$s2") after the kill, not master"
    vagrant ssh lb2 -c 'ip -br addr' 2>/dev/null | grep -q "$VIP/" || die "lb2 does not hold $VIP"
    if vagrant ssh lb1 -c 'ip -br addr' 2>/dev/null | grep -q "$VIP/"; then die "the killed lb1 still holds $VIP"; fi
    read -r gap failed total n before noconn inflight < <(client_report "$clog" "$ev")
    client_outages "$clog" "$ev" >&2
    log "RESULT vagrant kill-the-primary: gap $gap ms, $failed failed attempts of $n ($total failed in all: $noconn could not connect, $inflight lost in flight; $before before the kill); lb2 master, lb1 holds no VIP"
    echo "vagrant offline: up ${UP_S} s; SIGKILL of the primary: gap ${gap} ms, ${failed} failed of ${n}" >"$LOGS/result.txt"

    t0=$SECONDS
    vagrant destroy -f >"$LOGS/vagrant-destroy.log" 2>&1 || { tail -20 "$LOGS/vagrant-destroy.log" >&2; die "vagrant destroy failed"; }
    log "vagrant destroy -f ($((SECONDS - t0)) s)"
    vagrant box remove -f tandem-offline >/dev/null 2>&1 || true
    kill "$(cat /run/libvirtd.pid)" 2>/dev/null || true
}

if [ "${1:-}" = --inner ]; then
    inner
    exit 0
fi

# --- outside: build, pack, namespaces, teardown ---------------------------------------
[ "$(id -u)" = 0 ] || die "needs root (libvirtd, network namespace)"
for tool in vagrant libvirtd virsh qemu-system-x86_64 qemu-img dnsmasq iptables curl; do
    command -v "$tool" >/dev/null || die "$tool is missing: see tests/vm/README.md"
done
vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt || die "vagrant-libvirt is missing (apt install vagrant-libvirt)"
T0=$SECONDS
LOGS=${TANDEM_VM_LOGS:-$ROOT/target/vm-logs/vagrant-$(date +%Y%m%d-%H%M%S)-$$}
mkdir -p "$LOGS"
IMAGE=$(bash "$VM_DIR/build-image.sh")
(cd "$ROOT" && bash packaging/build-deb.sh) >"$LOGS/build-deb.log" 2>&1 || { tail -20 "$LOGS/build-deb.log" >&2; die "build-deb.sh failed"; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
DEB=$ROOT/target/debian/tandem_${version}-1_amd64.deb
[ -f "$DEB" ] || die "$DEB was not built"

NS=tvg-$$-$RANDOM
WORK=$(mktemp -d /tmp/tvg.XXXXXX)
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    if ip netns list | grep -qw "$NS"; then
        # Everything in the namespace was started by this run: libvirtd,
        # dnsmasq, the VMs' qemu processes, the client.
        for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
        sleep 1
        for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$NS"
    fi
    rm -rf "$WORK"
    [ "$rc" = 0 ] || log "FAILED (exit $rc): logs in $LOGS"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# The box: the lab image as box.img, the kernel and initrd for direct boot,
# and the key user vagrant accepts (created at boot by tandem.vagrant=1).
box=$WORK/box
mkdir -p "$box"
cp "$IMAGE/base.qcow2" "$box/box.img"
cp "$IMAGE/vmlinuz" "$IMAGE/initrd.img" "$IMAGE/id_ed25519" "$box/"
vsize=$(qemu-img info --output=json "$box/box.img" | sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p' | head -1)
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' $(((vsize + (1 << 30) - 1) >> 30)) >"$box/metadata.json"
cat >"$box/Vagrantfile" <<'EOF'
# Box packed by tandem's tests/vm/vagrant-offline.sh from the VM lab image.
Vagrant.configure("2") do |config|
  config.ssh.username = "vagrant"
  config.ssh.private_key_path = File.join(__dir__, "id_ed25519")
  config.ssh.insert_key = false
  config.vm.provider :libvirt do |lv|
    lv.kernel = File.join(__dir__, "vmlinuz")
    lv.initrd = File.join(__dir__, "initrd.img")
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 mitigations=off tandem.vagrant=1"
  end
end
EOF
tar -C "$box" -cf "$WORK/tandem-offline.box" metadata.json Vagrantfile box.img vmlinuz initrd.img id_ed25519
rm -rf "$box"
log "box packed from $IMAGE ($(du -h "$WORK/tandem-offline.box" | cut -f1))"

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
export WORK LOGS DEB
ip netns exec "$NS" unshare -m --propagation private bash "$VM_DIR/vagrant-offline.sh" --inner
log "PASS in $((SECONDS - T0)) s: logs in $LOGS"
