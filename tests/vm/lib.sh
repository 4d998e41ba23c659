# shellcheck shell=bash
# The VM lab's plumbing, sourced by tests/vm/scenario.sh.
#
# Network: a namespace made for this run holds a bridge (the lab's private
# L2, 192.168.56.0/24, no uplink, no NAT), one tap per VM, and the client
# address 192.168.56.50 ("the host side"). qemu runs inside that namespace,
# so its user-mode management network (restrict=on: no way out) forwards
# ssh from the namespace's own 127.0.0.1 only. The host's interfaces,
# routes and neighbours are never touched.
#
# Variables the caller sets before lab_init: IMAGE (build-image.sh's
# directory), LOGS (kept after the run). lab_init sets NS, WORK, SHARE.

LAB_NET=192.168.56
LAB_CLIENT=$LAB_NET.50
VM_MEM=${TANDEM_VM_MEM:-512}
BOOT_TIMEOUT=${TANDEM_VM_BOOT_TIMEOUT:-300}

declare -A VM_PID=() VM_PORT=() VM_IP=() VM_MAC=() VM_EXTRA=()
CLIENT_PIDS=()
ACCEL=

log() { printf '[%s %6.1fs] %s\n' "$(date +%T)" "$(lab_elapsed)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
lab_elapsed() { awk -v s="${LAB_T0:-$EPOCHREALTIME}" -v n="$EPOCHREALTIME" 'BEGIN { printf "%.1f", n - s }'; }
now() { printf '%s' "$EPOCHREALTIME"; }
in_ns() { ip netns exec "$NS" "$@"; }

lab_init() {
    LAB_T0=$EPOCHREALTIME
    NS=tvm-$$-$RANDOM
    WORK=$(mktemp -d /tmp/tvm.XXXXXX)
    SHARE=$WORK/share
    mkdir -p "$SHARE" "$LOGS"
    ip netns add "$NS"
    in_ns ip link set lo up
    in_ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    in_ns ip link add br0 type bridge mcast_snooping 0
    in_ns ip addr add "$LAB_CLIENT/24" dev br0
    in_ns ip link set br0 up
    log "lab namespace $NS: bridge br0 $LAB_NET.0/24, client $LAB_CLIENT; work dir $WORK; logs $LOGS"
}

lab_teardown() {
    local name pid
    for pid in "${CLIENT_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "${NS:-}" ] && [ -n "${WORK:-}" ]; then
        for name in "${!VM_PID[@]}"; do
            in_ns ssh -F "$WORK/ssh_config" -O exit "$name" >/dev/null 2>&1 || true
        done
    fi
    for name in "${!VM_PID[@]}"; do
        timeout 20 ip netns exec "$NS" ssh -F "$WORK/ssh_config" "$name" journalctl -b --no-pager \
            >"$LOGS/$name.journal.log" 2>&1 || true
        vm_kill "$name"
    done
    if [ -n "${NS:-}" ] && ip netns list | grep -qw "$NS"; then
        # Anything still running in the namespace was started by this run.
        for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$NS"
    fi
    [ -z "${WORK:-}" ] || rm -rf "$WORK"
}

# KVM when it really works (it boots Debian's kernel to its first panic),
# software emulation otherwise. The answer is cached next to the image.
lab_accel() {
    local probe
    probe=$IMAGE/accel-$(uname -r)
    if [ -n "${TANDEM_VM_ACCEL:-}" ]; then
        ACCEL=$TANDEM_VM_ACCEL
    elif [ -s "$probe" ]; then
        ACCEL=$(cat "$probe")
    else
        ACCEL=tcg
        if [ -w /dev/kvm ]; then
            local out=$WORK/kvm-probe.log
            timeout 30 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nodefaults -display none \
                -no-reboot -kernel "$IMAGE/vmlinuz" -append "console=ttyS0 panic=-1" \
                -serial "file:$out" >/dev/null 2>&1 || true
            if grep -q 'Kernel panic' "$out" 2>/dev/null; then ACCEL=kvm; fi
        fi
        echo "$ACCEL" >"$probe"
    fi
    log "accelerator: $ACCEL"
}

accel_args() {
    if [ "$ACCEL" = kvm ]; then echo "-accel kvm -cpu host"; else echo "-accel tcg,thread=multi -cpu max"; fi
}

# vm_define NAME LAB_ADDR SSH_PORT [EXTRA_ADDRS]
vm_define() {
    local name=$1 ip=$2 port=$3 extra=${4:-}
    VM_IP[$name]=$ip
    VM_PORT[$name]=$port
    VM_EXTRA[$name]=$extra
    VM_MAC[$name]=$(printf '52:54:00:56:00:%02x' "${ip##*.}")
    qemu-img create -q -f qcow2 -b "$IMAGE/base.qcow2" -F qcow2 "$WORK/$name.qcow2"
    in_ns ip tuntap add dev "tap-$name" mode tap
    in_ns ip link set "tap-$name" master br0 up
    cat >>"$WORK/ssh_config" <<EOF
Host $name
    HostName 127.0.0.1
    Port $port
    User root
    IdentityFile $IMAGE/id_ed25519
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
    ConnectTimeout 15
    ServerAliveInterval 5
    ServerAliveCountMax 6
    ControlMaster auto
    ControlPath $WORK/ssh-%n
    ControlPersist 120
EOF
}

# Boots (or re-boots after a power-off) a defined VM on its overlay.
vm_start() {
    local name=$1 extra_arg=
    [ -z "${VM_EXTRA[$name]}" ] || extra_arg=" tandem.extra=${VM_EXTRA[$name]}"
    # ip netns exec execs qemu: $! is qemu's pid.
    # shellcheck disable=SC2046 # accel_args is two words on purpose
    ip netns exec "$NS" qemu-system-x86_64 -name "$name" -nodefaults -no-user-config -display none \
        $(accel_args) -smp 1 -m "$VM_MEM" \
        -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 net.ifnames=0 mitigations=off tandem.name=$name tandem.lab=${VM_IP[$name]}/24 tandem.labmac=${VM_MAC[$name]}$extra_arg" \
        -drive "file=$WORK/$name.qcow2,if=virtio,format=qcow2,cache=unsafe" \
        -netdev "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:${VM_PORT[$name]}-:22" \
        -device virtio-net-pci,netdev=mgmt,addr=0x3 \
        -netdev "tap,id=lab,ifname=tap-$name,script=no,downscript=no" \
        -device "virtio-net-pci,netdev=lab,mac=${VM_MAC[$name]},addr=0x4" \
        -virtfs "local,path=$SHARE,mount_tag=share,security_model=none,readonly=on" \
        -device virtio-rng-pci \
        -serial "file:$LOGS/$name.console.log" \
        >>"$LOGS/$name.qemu.log" 2>&1 &
    VM_PID[$name]=$!
    disown "${VM_PID[$name]}"
    log "$name: qemu pid ${VM_PID[$name]}, lab ${VM_IP[$name]} (${VM_MAC[$name]}), ssh 127.0.0.1:${VM_PORT[$name]} in $NS"
}

# Hard power-off: the qemu process goes away, the guest gets no say.
vm_kill() {
    local name=$1 pid=${VM_PID[$1]:-} i
    [ -n "$pid" ] || return 0
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    : "$i"
    unset "VM_PID[$name]"
}

vm_ssh() { local name=$1; shift; in_ns ssh -F "$WORK/ssh_config" "$name" "$@"; }

vm_wait_ssh() {
    local name=$1 t0=$SECONDS
    while ! vm_ssh "$name" true 2>/dev/null; do
        kill -0 "${VM_PID[$name]}" 2>/dev/null || die "$name: qemu exited (see $LOGS/$name.qemu.log, $name.console.log)"
        [ $((SECONDS - t0)) -lt "$BOOT_TIMEOUT" ] || die "$name: no ssh after ${BOOT_TIMEOUT}s (see $LOGS/$name.console.log)"
        sleep 3
    done
    # multi-user.target reached (or degraded): the boot is over.
    local state
    while state=$(vm_ssh "$name" systemctl is-system-running 2>/dev/null); [ "$state" = starting ] || [ "$state" = initializing ]; do
        [ $((SECONDS - t0)) -lt "$BOOT_TIMEOUT" ] || die "$name: still $state after ${BOOT_TIMEOUT}s"
        sleep 2
    done
    vm_ssh "$name" 'mkdir -p /mnt/share && (mountpoint -q /mnt/share || mount -t 9p -o trans=virtio,version=9p2000.L,ro share /mnt/share)'
    log "$name: up in $((SECONDS - t0)) s (system $state)"
}

# --- client: two loops, each a new TCP connection every 30 ms ------------
# Two loops, started 15 ms apart, so that a request hanging in flight (up
# to its 0.5 s timeout) does not blind the measurement.
# client_start FILE [MAX_SECONDS]: one line per attempt in FILE after
# client_stop: START END CODE CONNECTED, sorted by START.
CLIENT_LOOPS=2
CLIENT_INTERVAL_MS=30
client_start() {
    local i max=${2:-240}
    CLIENT_FILE=$1 CLIENT_PID=()
    for i in $(seq "$CLIENT_LOOPS"); do
        ip netns exec "$NS" bash "$VM_DIR/client.sh" "http://$LAB_NET.100/" "$1.$i" "$max" "$CLIENT_INTERVAL_MS" &
        CLIENT_PIDS+=("$!")
        CLIENT_PID+=("$!")
        sleep 0.015
    done
    sleep 1.5
}

client_stop() {
    local pid
    for pid in "${CLIENT_PID[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${CLIENT_PID[@]}"; do wait "$pid" 2>/dev/null || true; done
    sort -n "$CLIENT_FILE".[0-9]* >"$CLIENT_FILE"
    rm -f "$CLIENT_FILE".[0-9]*
}

# client_report FILE EVENT_EPOCH -> "GAP_MS FAILED TOTAL_FAILED ATTEMPTS BEFORE NOCONNECT INFLIGHT".
# Attempts that ended after the event belong to it (one in flight at the
# event counts). GAP: start of the first failed attempt -> start of the
# first successful attempt that started after the event and after that
# failure and is followed by 3 more successes (recovered for good, not a
# request that slipped through); 0 when nothing failed, -1 when the client
# never recovered. FAILED: failed attempts started in that window;
# TOTAL_FAILED: failed attempts from the event to the end of the log;
# BEFORE: failed attempts before the event (the baseline: should be 0);
# NOCONNECT: failed attempts (after the event) whose TCP connection was
# never established (failed new connections); INFLIGHT: connected, but the
# request failed (lost in flight).
client_report() {
    awk -v ev="$2" '
        { s[NR] = $1; e[NR] = $2; c[NR] = $3; k[NR] = $4 }
        END {
            for (i = 1; i <= NR; i++) {
                if (e[i] < ev) { if (c[i] != "200") before++; continue }
                n++
                if (c[i] != "200") { total++; if (k[i] == "1") inflight++; else noconn++; if (!ff) ff = s[i] }
            }
            if (ff) for (i = 1; i <= NR; i++) {
                if (s[i] < ff || s[i] < ev || c[i] != "200") continue
                ok = 1
                for (j = i + 1; j <= i + 3 && j <= NR; j++) if (c[j] != "200") ok = 0
                if (ok) { fs = s[i]; break }
            }
            for (i = 1; i <= NR; i++) if (ff && e[i] >= ev && c[i] != "200" && s[i] >= ff && (!fs || s[i] < fs)) fail++
            gap = (ff && fs) ? (fs - ff) * 1000 : (ff ? -1 : 0)
            printf "%d %d %d %d %d %d %d\n", gap, fail, total, n, before, noconn, inflight
        }' "$1"
}

# The outages in a client log: one line per run of consecutive failures.
client_outages() {
    awk -v t0="$2" '
        $2 < t0 { next }
        $3 != "200" { if (!s) s = $1; c++; next }
        s { printf "    outage at +%.3fs: %d failed, until +%.3fs (%.0f ms)\n", s - t0, c, $1 - t0, ($1 - s) * 1000; s = 0; c = 0 }
        END { if (s) printf "    outage at +%.3fs: %d failed, never recovered\n", s - t0, c }' "$1"
}
