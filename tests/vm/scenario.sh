#!/usr/bin/env bash
# The tandem pair in real VMs, offline: lb1 and lb2 (tandem from the .deb
# built from this tree, installed with dpkg -i, configured from the
# package's active-passive examples by vagrant/provision-lb.sh, started by
# systemd) and one backend VM "web" holding both backend addresses of the
# examples (192.168.56.21 and .22, one HTTP server on :8080, configured by
# vagrant/provision-web.sh), on a private bridge in a network namespace
# this script makes. The namespace side of the bridge (192.168.56.50) is
# the client. While the client opens a new connection every ~15 ms:
#
#   1. systemctl kill -s KILL tandem on the master  (gap, failures, no VIP left
#      on the killed node, restart by systemd, rejoin: one preemption after
#      preempt_delay and nothing else)
#   2. systemctl stop tandem on the master          (zero failed connections)
#   3. apt install of a higher version on the backup while it runs (conffile
#      kept, upgrade in place only after tandem check passes, the VIP never lost),
#      then on the master (in place: the backup stays backup, a 32 MiB download
#      through the VIP completes, systemd's MainPID follows the new process)
#   4. hard power-off of the master VM (qemu killed) (gap)
# then the same VMs with keepalived (advert_int 0.1, same VRID/VIP; tandem
# without [[vrrp]] as the proxy on :80): SIGKILL, graceful stop, power-off.
#
# Usage (root): bash tests/vm/scenario.sh [--no-keepalived] [--runs N]
#   --runs N repeats scenarios 1 and 2 N times (power-off: once per daemon).
# Logs (serial consoles, client logs, results.txt) stay in
# $TANDEM_VM_LOGS (default target/vm-logs/<date>-<pid>).
set -euo pipefail
VM_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$VM_DIR/../.." && pwd)
cd "$ROOT"
# shellcheck source=tests/vm/lib.sh
. "$VM_DIR/lib.sh"

keepalived=1 runs=1
while [ $# -gt 0 ]; do
    case $1 in
        --no-keepalived) keepalived=0 ;;
        --runs) runs=$2; shift ;;
        *) echo "usage: $0 [--no-keepalived] [--runs N]" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "the VM lab needs root (network namespace, taps)" >&2; exit 1; }
for tool in qemu-system-x86_64 qemu-img curl ssh; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: see tests/vm/README.md" >&2; exit 1; }
done

LOGS=${TANDEM_VM_LOGS:-$ROOT/target/vm-logs/$(date +%Y%m%d-%H%M%S)-$$}
mkdir -p "$LOGS"
RESULTS=()
RAW=()
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    [ "$rc" = 0 ] || log "FAILED (exit $rc): logs in $LOGS"
    lab_teardown
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

VIP=$LAB_NET.100
ADVERT_MS=100
# Goal for an unplanned failover: 3 x advert + skew (priority 100) + 0.1 s.
GOAL_MS=$((3 * ADVERT_MS + (256 - 100) * ADVERT_MS / 256 + 100))

# --- helpers ------------------------------------------------------------------
tandem_state() { vm_ssh "$1" tandem status 2>/dev/null | awk '$1 == "web-vip" { print $3 }' || true; }
has_vip() { vm_ssh "$1" ip -4 -o addr show 2>/dev/null | grep -q " $VIP/"; }
other() { if [ "$1" = lb1 ]; then echo lb2; else echo lb1; fi; }

# wait_until TIMEOUT DESCRIPTION COMMAND...: polls every 0.5 s (each poll is
# an ssh session: under emulation that costs the guest CPU time).
wait_until() {
    local timeout=$1 what=$2 t0=$EPOCHREALTIME
    shift 2
    until "$@"; do
        if awk -v a="$t0" -v b="$EPOCHREALTIME" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
            die "timed out after ${timeout}s waiting for: $what"
        fi
        sleep 0.5
    done
}
is_state() { [ "$(tandem_state "$1")" = "$2" ]; }
no_vip() { ! has_vip "$1"; }
since_ms() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

# The master of the tandem pair (exactly one master and one backup).
tandem_pair() {
    local s1 s2
    s1=$(tandem_state lb1) s2=$(tandem_state lb2)
    if [ "$s1" = master ] && [ "$s2" = backup ]; then echo lb1
    elif [ "$s2" = master ] && [ "$s1" = backup ]; then echo lb2
    else return 1; fi
}
pair_settled() { tandem_pair >/dev/null; }

# VRRP state changes in a node's journal (this boot), one per line.
transitions() {
    vm_ssh "$1" "journalctl -u tandem -o short-precise --no-pager | grep 'vrrp state change' || true" |
        sed -E 's/^([A-Za-z]+ +[0-9]+ [0-9:.]+) .*from=([a-z]+) to=([a-z]+) reason=(.*) priority=.*/\1 \2 -> \3 (\4)/'
}
declare -A MARK=()
mark_transitions() { MARK[lb1]=$(transitions lb1 | wc -l); MARK[lb2]=$(transitions lb2 | wc -l); }
new_transitions() { transitions "$1" | tail -n +"$((MARK[$1] + 1))"; }

# keepalived's proxy: the same tandem binary as an L4 proxy only (no
# [[vrrp]]), the example's pool, listening on 0.0.0.0:80: both setups then
# have the same data plane and differ in the VRRP side only.
start_fwd() {
    vm_ssh "$1" "cat > /root/l4-proxy.toml" <<EOF
[global]
admin_socket = "/run/tandem-l4.sock"

[[pool]]
name = "web"
algorithm = "least_connections"
health = { check = "http", path = "/", expect_status = [200], interval = "1s", timeout = "500ms", rise = 2, fall = 2 }
backends = [
  { name = "web1", address = "$LAB_NET.21:8080" },
  { name = "web2", address = "$LAB_NET.22:8080" },
]

[[listener]]
name = "web"
bind = "0.0.0.0:80"
pool = "web"
EOF
    vm_ssh "$1" "systemctl reset-failed fwd80 2>/dev/null; systemctl is-active -q fwd80 || systemd-run -q --unit=fwd80 /usr/sbin/tandem run -c /root/l4-proxy.toml"
}

# Planned events must fail no connection. TANDEM_VM_INFLIGHT_OK=1 tolerates
# requests lost in flight (connected before the VIP moved, answer lost) and
# only fails on new connections that could not be made.
zero_failures() {
    [ "$PHASE_FAILED" != 0 ] || { log "OK: zero failed connections"; return 0; }
    if [ "$PHASE_NOCONN" = 0 ] && [ "${TANDEM_VM_INFLIGHT_OK:-0}" = 1 ]; then
        log "WARNING: $1: $PHASE_INFLIGHT request(s) lost in flight (connected before the VIP moved); tolerated (TANDEM_VM_INFLIGHT_OK=1)"
        return 0
    fi
    die "$1: $PHASE_FAILED failed connections ($PHASE_NOCONN could not connect, $PHASE_INFLIGHT lost in flight); want 0"
}

result() { # daemon scenario gap failed attempts notes
    RESULTS+=("$(printf '%-10s %-22s %7s %7s %9s  %s' "$1" "$2" "$3" "$4" "$5" "$6")")
    local base=${2% #*}
    RAW+=("$1|${base#"${base%%[! ]*}"}|$3|$4")
    log "RESULT $1 / $2: gap ${3} ms, ${4} failed of ${5}; $6"
}

report_phase() { # daemon scenario client-log event-epoch notes
    local gap failed total n before noconn inflight
    echo "$4" >"$3.event"
    read -r gap failed total n before noconn inflight < <(client_report "$3" "$4")
    client_outages "$3" "$4" >&2
    [ "$before" = 0 ] || log "WARNING: $before failed connections BEFORE the event (baseline)"
    [ "$total" = "$failed" ] || log "NOTE: $((total - failed)) more failed connections after the first outage"
    [ "$gap" != -1 ] || die "$1 $2: the client never recovered"
    local goal=
    case $2 in
        SIGKILL* | power-off*) if [ "$gap" -le "$GOAL_MS" ]; then goal="within goal; "; else goal="ABOVE GOAL ${GOAL_MS} ms; "; fi ;;
    esac
    local more=
    [ "$total" = "$failed" ] || more="; $total failed in all"
    [ "$total" = 0 ] || more="$more ($noconn could not connect, $inflight lost in flight)"
    result "$1" "$2" "$gap" "$failed" "$n" "$goal$5$more"
    PHASE_FAILED=$total PHASE_NOCONN=$noconn PHASE_INFLIGHT=$inflight
}

# --- build: image, packages -----------------------------------------------------
t_build=$SECONDS
IMAGE=$(bash "$VM_DIR/build-image.sh")
log "image $IMAGE ($((SECONDS - t_build)) s)"
t_deb=$SECONDS
bash packaging/build-deb.sh >"$LOGS/build-deb.log" 2>&1 || { tail -20 "$LOGS/build-deb.log" >&2; die "build-deb.sh failed"; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb1=target/debian/tandem_${version}-1_amd64.deb
[ -f "$deb1" ] || die "$deb1 was not built"
lab_init
cp "$deb1" "$SHARE/tandem_old.deb"
# The upgrade: the same tree rebuilt with a higher Debian revision.
bash packaging/build-deb.sh --deb-version "${version}-1+vmlab1" >>"$LOGS/build-deb.log" 2>&1 ||
    { tail -20 "$LOGS/build-deb.log" >&2; die "build-deb.sh --deb-version failed"; }
mv "target/debian/tandem_${version}-1+vmlab1_amd64.deb" "$SHARE/tandem_new.deb"
cp vagrant/provision-lb.sh vagrant/provision-web.sh "$SHARE/"
log "packages ${version}-1 and ${version}-1+vmlab1 ($((SECONDS - t_deb)) s)"

# --- the lab ----------------------------------------------------------------------
lab_accel
vm_define web "$LAB_NET.21" 2221 "$LAB_NET.22/24"
vm_define lb1 "$LAB_NET.11" 2211
vm_define lb2 "$LAB_NET.12" 2212
t_boot=$SECONDS
for vm in web lb1 lb2; do vm_start "$vm"; done
for vm in web lb1 lb2; do vm_wait_ssh "$vm"; done
log "three VMs up in $((SECONDS - t_boot)) s"

vm_ssh web 'sh /mnt/share/provision-web.sh web1' >"$LOGS/provision-web.log" 2>&1 ||
    { cat "$LOGS/provision-web.log" >&2; die "provision-web.sh failed"; }
for lb in lb1 lb2; do
    vm_ssh "$lb" "cp /mnt/share/tandem_old.deb /tmp/tandem.deb && TANDEM_INSTALL=dpkg sh /mnt/share/provision-lb.sh $lb active-passive $LAB_NET" \
        >"$LOGS/provision-$lb.log" 2>&1 &
    eval "prov_$lb=\$!"
done
# shellcheck disable=SC2154 # set by the eval above
wait "$prov_lb1" || { cat "$LOGS/provision-lb1.log" >&2; die "provision-lb.sh lb1 failed"; }
# shellcheck disable=SC2154
wait "$prov_lb2" || { cat "$LOGS/provision-lb2.log" >&2; die "provision-lb.sh lb2 failed"; }
log "tandem $(vm_ssh lb1 "dpkg-query -W -f '\${Version}' tandem") installed with dpkg -i and started by systemd on lb1 and lb2"

# Startup: whoever's timer expires first is master; the other one backs off
# (preempt_delay 30 s if it is lb1), so allow for that.
wait_until 90 "one master and one backup" pair_settled
for lb in lb1 lb2; do
    echo "--- $lb: tandem status"
    vm_ssh "$lb" tandem status
done >&2
master=$(tandem_pair)
body=$(in_ns curl -s -m 5 "http://$VIP/") || die "no HTTP answer through the VIP"
[ "$body" = "hello from web1" ] || die "unexpected answer through the VIP: $body"
log "OK: $master master, $(other "$master") backup; http://$VIP/ from the client: \"$body\""

# The shipped unit (CAP_SYS_NICE, sched_setscheduler allowed) lets the election
# thread, and only it, run SCHED_RR, so a busy data plane cannot delay adverts.
for lb in lb1 lb2; do
    threads=$(vm_ssh "$lb" 'ps -L -o cls=,comm= -p "$(systemctl show -p MainPID --value tandem)"')
    cls=$(echo "$threads" | awk '$2 == "tandem-vrrp" { print $1 }')
    [ "$cls" = RR ] || die "$lb: the election thread runs ${cls:-?} under the shipped unit, not SCHED_RR: $(vm_ssh "$lb" 'journalctl -u tandem -o cat | grep -i "election thread"')"
    rr=$(echo "$threads" | awk '$1 == "RR"' | wc -l)
    [ "$rr" = 1 ] || die "$lb: $rr threads at SCHED_RR, want only the election thread: $threads"
done
log "OK: under the shipped unit the election thread runs SCHED_RR on both nodes, every other thread at normal priority"

# --- tandem 1: SIGKILL the master ------------------------------------------------------
sigkill_tandem() {
    local run=$1 m b ev restart_ms vip_gone_ms clog notes
    m=$(tandem_pair) || die "pair not settled"
    b=$(other "$m")
    clog=$LOGS/client-tandem-sigkill-$run.log
    mark_transitions
    client_start "$clog" 200
    log "tandem SIGKILL #$run: systemctl kill -s KILL tandem on $m (master)"
    ev=$(now)
    vm_ssh "$m" systemctl kill -s KILL tandem
    sleep 1
    wait_until 20 "$b master" is_state "$b" master
    log "$b is master ($(since_ms "$ev") ms after the kill, as seen over ssh)"
    wait_until 15 "no VIP on the killed $m" no_vip "$m"
    vip_gone_ms=$(since_ms "$ev")
    log "$m holds no VIP ($vip_gone_ms ms after the kill: ExecStopPost tandem cleanup)"
    wait_until 30 "tandem restarted by systemd on $m" is_state "$m" backup
    restart_ms=$(since_ms "$ev")
    log "$m: tandem restarted by systemd, backup ($restart_ms ms after the kill)"
    if [ "$m" = lb1 ]; then
        # lb1 has the higher priority: it takes the VIP back after preempt_delay (30 s).
        wait_until 75 "$m preempts after preempt_delay" is_state "$m" master
        log "$m master again $(since_ms "$ev") ms after the kill (preempt_delay 30 s + restart)"
    else
        sleep 5
    fi
    sleep 2
    client_stop
    echo "--- state changes since the kill" >&2
    for n in "$m" "$b"; do new_transitions "$n" | sed "s/^/    $n: /" >&2; done
    # The killed node's journal: after the kill, initialize -> backup, then
    # (lb1 only) backup -> master once; the peer: backup -> master -> backup.
    local tm tb
    tm=$(new_transitions "$m" | grep -c . || true)
    tb=$(new_transitions "$b" | grep -c . || true)
    local want_m=1 want_b=1
    if [ "$m" = lb1 ]; then want_m=2 want_b=2; fi
    if [ "$tm" -gt "$want_m" ] || [ "$tb" -gt "$want_b" ]; then die "flap: $tm state changes on $m (want $want_m), $tb on $b (want $want_b)"; fi
    notes="VIP gone from killed node after ${vip_gone_ms} ms; restarted as backup after ${restart_ms} ms; no extra flap ($tm/$tb state changes)"
    report_phase tandem "SIGKILL #$run" "$clog" "$ev" "$notes"
    # The preemption is a planned handover: it should fail nothing.
    local pre
    pre=$(awk -v s="$ev" '$1 > s + 10 && $3 != "200"' "$clog" | wc -l)
    [ "$pre" = 0 ] || log "WARNING: $pre failed connections around the preemption"
    if [ "$m" = lb1 ]; then
        RESULTS+=("$(printf '%-10s %-22s %7s %7s %9s  %s' tandem "  preemption #$run" - "$pre" - "failed connections when lb1 took the VIP back after preempt_delay")")
    fi
}

# --- tandem 2: graceful stop of the master -----------------------------------------------
stop_tandem() {
    local run=$1 m b ev clog
    m=$(tandem_pair) || die "pair not settled"
    b=$(other "$m")
    clog=$LOGS/client-tandem-stop-$run.log
    client_start "$clog" 200
    log "tandem stop #$run: systemctl stop tandem on $m (master)"
    ev=$(now)
    vm_ssh "$m" systemctl stop tandem
    log "stop returned after $(since_ms "$ev") ms"
    wait_until 10 "$b master" is_state "$b" master
    no_vip "$m" || die "$m still holds the VIP after a graceful stop"
    sleep 1.5
    client_stop
    report_phase tandem "graceful stop #$run" "$clog" "$ev" "handover to $b"
    zero_failures "graceful stop"
    vm_ssh "$m" systemctl start tandem
    wait_until 30 "$m backup after start" is_state "$m" backup
    if [ "$m" = lb1 ]; then
        log "waiting for $m to preempt (preempt_delay 30 s)"
        wait_until 60 "$m master after preempt_delay" is_state "$m" master
    fi
    wait_until 10 "pair settled" pair_settled
}

# --- tandem 3: apt install of a higher version on the running backup ---------------------
upgrade_tandem() {
    local m b ev clog pid0 pid1 ver out
    m=$(tandem_pair) || die "pair not settled"
    b=$(other "$m")
    clog=$LOGS/client-tandem-upgrade.log
    mark_transitions
    vm_ssh "$b" 'echo "# kept across upgrades (vm lab)" >> /etc/tandem/tandem.toml; cp /mnt/share/tandem_new.deb /tmp/tandem_new.deb'
    pid0=$(vm_ssh "$b" systemctl show -p MainPID --value tandem)
    client_start "$clog" 200
    log "upgrade: apt install tandem_${version}-1+vmlab1 on $b (backup, running as pid $pid0)"
    ev=$(now)
    vm_ssh "$b" 'DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/tandem_new.deb </dev/null' >"$LOGS/upgrade-apt.log" 2>&1 ||
        { cat "$LOGS/upgrade-apt.log" >&2; die "apt install of the new package failed"; }
    wait_until 30 "$b backup after the upgrade" is_state "$b" backup
    sleep 2
    client_stop
    ver=$(vm_ssh "$b" "dpkg-query -W -f '\${Version}' tandem")
    pid1=$(vm_ssh "$b" systemctl show -p MainPID --value tandem)
    [ "$ver" = "${version}-1+vmlab1" ] || die "upgrade: version is $ver"
    vm_ssh "$b" "grep -q 'kept across upgrades' /etc/tandem/tandem.toml" || die "upgrade lost the edited conffile"
    if [ "$pid1" = "$pid0" ] || [ "$pid1" = 0 ]; then die "upgrade: tandem was not replaced (pid $pid0 -> $pid1)"; fi
    has_vip "$m" || die "upgrade: $m lost the VIP"
    [ -z "$(new_transitions "$m")" ] || die "upgrade: the master changed state: $(new_transitions "$m")"
    report_phase tandem "upgrade on backup" "$clog" "$ev" "$ver, conffile kept, pid $pid0 -> $pid1, $m kept the VIP"
    zero_failures "upgrade"

    # The gate: with a config tandem check rejects, the upgrade does not restart.
    vm_ssh "$b" 'cp /etc/tandem/tandem.toml /root/tandem.toml.good && echo "bogus_key = 1" >> /etc/tandem/tandem.toml'
    out=$(vm_ssh "$b" 'DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/tandem_new.deb </dev/null 2>&1') || die "dpkg -i with a bad config failed: $out"
    grep -q 'NOT restarting' <<<"$out" || die "no 'NOT restarting' from postinst: $out"
    [ "$(vm_ssh "$b" systemctl show -p MainPID --value tandem)" = "$pid1" ] || die "restarted with a config that fails tandem check"
    vm_ssh "$b" 'cp /root/tandem.toml.good /etc/tandem/tandem.toml && tandem check -c /etc/tandem/tandem.toml >/dev/null'
    log "OK: with a config that fails 'tandem check' the reinstall did not restart tandem (pid $pid1 kept)"
    RESULTS+=("$(printf '%-10s %-22s %7s %7s %9s  %s' tandem "  bad-config reinstall" - - - "postinst refused to restart; daemon kept running")")
}

# --- tandem 3b: apt install of a higher version on the running master ----------------------
# postinst runs `tandem upgrade`: the sockets and the VRRP role move to the
# new binary in place, so the backup must stay backup and a download that
# was running through the VIP must complete.
upgrade_master() {
    local m b ev clog pid0 pid1 ver big
    m=$(tandem_pair) || die "pair not settled"
    b=$(other "$m")
    clog=$LOGS/client-tandem-upgrade-master.log
    big=$LOGS/upgrade-master-download.txt
    mark_transitions
    vm_ssh "$m" 'cp /mnt/share/tandem_new.deb /tmp/tandem_new.deb'
    pid0=$(vm_ssh "$m" systemctl show -p MainPID --value tandem)
    client_start "$clog" 200
    # 32 MiB at 4 MiB/s: the download spans the upgrade.
    in_ns curl -s -o /dev/null -w '%{size_download} %{http_code}\n' --limit-rate 4M -m 60 \
        "http://$LAB_NET.100/big" >"$big" 2>&1 &
    local dl=$!
    sleep 2
    log "upgrade: apt install tandem_${version}-1+vmlab1 on $m (master, running as pid $pid0)"
    ev=$(now)
    vm_ssh "$m" 'DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/tandem_new.deb </dev/null' >"$LOGS/upgrade-master-apt.log" 2>&1 ||
        { cat "$LOGS/upgrade-master-apt.log" >&2; die "apt install on the master failed"; }
    grep -q 'upgraded: pid' "$LOGS/upgrade-master-apt.log" ||
        die "postinst did not upgrade in place: $(tail -5 "$LOGS/upgrade-master-apt.log")"
    wait "$dl" || true
    sleep 1
    client_stop
    ver=$(vm_ssh "$m" "dpkg-query -W -f '\${Version}' tandem")
    pid1=$(vm_ssh "$m" systemctl show -p MainPID --value tandem)
    [ "$ver" = "${version}-1+vmlab1" ] || die "master upgrade: version is $ver"
    if [ "$pid1" = "$pid0" ] || [ "$pid1" = 0 ]; then die "master upgrade: systemd's MainPID did not follow (pid $pid0 -> $pid1)"; fi
    vm_ssh "$m" systemctl is-active -q tandem || die "master upgrade: tandem.service is not active"
    is_state "$m" master || die "master upgrade: $m is $(tandem_state "$m")"
    has_vip "$m" || die "master upgrade: $m lost the VIP"
    is_state "$b" backup || die "master upgrade: $b is $(tandem_state "$b")"
    [ -z "$(new_transitions "$b")" ] || die "master upgrade: the backup changed state: $(new_transitions "$b")"
    [ "$(cat "$big")" = "$((32 << 20)) 200" ] || die "master upgrade: the download through the VIP broke: $(cat "$big")"
    report_phase tandem "upgrade on master" "$clog" "$ev" "in place, pid $pid0 -> $pid1, $b stayed backup, 32 MiB download completed"
    zero_failures "master upgrade"
}

# --- 4: hard power-off of the master VM ---------------------------------------------------
poweroff() { # daemon master-query-function
    local d=$1 m=$2 b ev clog
    b=$(other "$m")
    clog=$LOGS/client-$d-poweroff.log
    client_start "$clog" 200
    log "$d power-off: killing $m's qemu (pid ${VM_PID[$m]})"
    ev=$(now)
    vm_kill "$m"
    sleep 1
    if [ "$d" = tandem ]; then wait_until 20 "$b master" is_state "$b" master
    else wait_until 20 "$b holds the VIP" has_vip "$b"; fi
    sleep 2
    client_stop
    report_phase "$d" "power-off" "$clog" "$ev" "$b took over"
}

t_scen=$SECONDS
for run in $(seq "$runs"); do
    sigkill_tandem "$run"
    stop_tandem "$run"
done
upgrade_tandem
upgrade_master
poweroff tandem "$(tandem_pair)"
log "tandem scenarios done in $((SECONDS - t_scen)) s"

# --- keepalived in the same VMs --------------------------------------------------------------
if [ "$keepalived" = 1 ]; then
    # Bring the powered-off LB back (a fresh boot on its own disk).
    for lb in lb1 lb2; do
        if [ -z "${VM_PID[$lb]:-}" ]; then
            t_boot=$SECONDS
            vm_start "$lb"
            vm_wait_ssh "$lb"
            log "$lb rebooted in $((SECONDS - t_boot)) s"
        fi
    done
    for lb in lb2 lb1; do vm_ssh "$lb" 'systemctl stop tandem && systemctl disable -q tandem'; done
    for lb in lb1 lb2; do
        prio=100; [ "$lb" = lb1 ] && prio=150
        iface=$(vm_ssh "$lb" "ip -o -4 addr show | awk -v n='$LAB_NET.' 'index(\$4, n) == 1 { print \$2; exit }'")
        vm_ssh "$lb" "cat > /etc/keepalived/keepalived.conf" <<EOF
global_defs {
    router_id $lb
    vrrp_version 3
}
vrrp_instance web {
    state BACKUP
    interface $iface
    virtual_router_id 51
    priority $prio
    advert_int 0.1
    virtual_ipaddress {
        $VIP/24
    }
}
EOF
        start_fwd "$lb"
        vm_ssh "$lb" systemctl start keepalived
    done
    ka_restart() { # NODE: a clean start after a kill (the VIP keepalived left behind removed)
        vm_ssh "$1" "ip addr del $VIP/24 dev $iface 2>/dev/null; systemctl restart keepalived"
        start_fwd "$1"
        wait_until 30 "keepalived settled" ka_settled
        sleep 1
    }
    ka_master() { if has_vip lb1 && ! has_vip lb2; then echo lb1; elif has_vip lb2 && ! has_vip lb1; then echo lb2; else return 1; fi; }
    ka_settled() { ka_master >/dev/null; }
    wait_until 30 "keepalived: one node with the VIP" ka_settled
    body=$(in_ns curl -s -m 5 "http://$VIP/") || die "keepalived: no HTTP answer through the VIP"
    log "keepalived: $(ka_master) holds the VIP; http://$VIP/: \"$body\""

    for run in $(seq "$runs"); do
        # The load balancer's software crashes: keepalived and the proxy (tandem is both).
        m=$(ka_master) || die "keepalived pair not settled"; b=$(other "$m")
        clog=$LOGS/client-keepalived-sigkill-$run.log
        client_start "$clog" 120
        log "keepalived SIGKILL #$run: systemctl kill -s KILL keepalived fwd80 on $m"
        ev=$(now)
        vm_ssh "$m" systemctl kill -s KILL keepalived fwd80
        sleep 1
        wait_until 20 "$b holds the VIP" has_vip "$b"
        sleep 4
        client_stop
        left=no; has_vip "$m" && left=yes
        report_phase keepalived "SIGKILL #$run" "$clog" "$ev" "keepalived+proxy killed; killed node still holds the VIP: $left"
        ka_restart "$m"

        # keepalived alone killed: its VIP stays, and so does the proxy behind it.
        m=$(ka_master); b=$(other "$m")
        clog=$LOGS/client-keepalived-sigkill-only-$run.log
        client_start "$clog" 120
        log "keepalived SIGKILL (daemon only) #$run: systemctl kill -s KILL keepalived on $m"
        ev=$(now)
        vm_ssh "$m" systemctl kill -s KILL keepalived
        sleep 1
        wait_until 20 "$b holds the VIP" has_vip "$b"
        sleep 4
        client_stop
        left=no; has_vip "$m" && left=yes
        report_phase keepalived "  SIGKILL daemon only #$run" "$clog" "$ev" "proxy kept running; killed node still holds the VIP: $left$([ "$left" = no ] || echo ' (both nodes hold it)')"
        ka_restart "$m"

        m=$(ka_master); b=$(other "$m")
        clog=$LOGS/client-keepalived-stop-$run.log
        client_start "$clog" 120
        log "keepalived stop #$run: systemctl stop keepalived on $m"
        ev=$(now)
        vm_ssh "$m" systemctl stop keepalived
        wait_until 20 "$b holds the VIP" has_vip "$b"
        sleep 2
        client_stop
        report_phase keepalived "graceful stop #$run" "$clog" "$ev" "handover to $b"
        ka_restart "$m"
    done
    poweroff keepalived "$(ka_master)"
fi

# --- results ---------------------------------------------------------------------------------
summary() { # gaps and failures per daemon and scenario over the runs
    printf '%s\n' "${RAW[@]}" | awk -F'|' '
        { k = sprintf("%-10s %-24s", $1, $2); gaps[k] = gaps[k] " " $3; fails[k] = fails[k] " " $4 }
        END { for (k in gaps) printf "  %s gap ms:%s   failed:%s\n", k, gaps[k], fails[k] }' | sort
}
{
    echo
    echo "VM lab: tandem ${version} vs keepalived $(vm_ssh "$(other "${m:-lb1}")" "dpkg-query -W -f '\${Version}' keepalived" 2>/dev/null || echo '?'), advert 100 ms, $ACCEL, 1 vCPU ${VM_MEM} MiB per VM"
    echo "goal for SIGKILL / power-off: gap <= ${GOAL_MS} ms (3 x advert + skew + 0.1 s); graceful stop: 0 failed"
    echo "gap = first failed attempt -> first successful one after it (client: 2 loops, each a new connection every 30 ms, connect timeout 150 ms, request timeout 500 ms)"
    echo "keepalived runs with the same tandem binary as its proxy (L4 only, no [[vrrp]]), so the data plane is the same"
    echo
    printf '%-10s %-22s %7s %7s %9s  %s\n' daemon scenario gap_ms failed attempts notes
    printf '%s\n' "${RESULTS[@]}"
    echo
    echo "per scenario over the runs:"
    summary
    echo
    echo "total $((SECONDS)) s"
} | tee "$LOGS/results.txt"
log "PASS: logs in $LOGS"
