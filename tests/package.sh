#!/usr/bin/env bash
# Package tests: build the .deb, check its contents and control fields,
# lintian, systemd-analyze, then (as root in CI, or with
# TANDEM_HOST_INSTALL=1) install / upgrade / remove / purge it on this
# machine, and run the Vagrant scenario in the namespace lab from the
# package's own files.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "THE PACKAGE TESTS NEED ROOT (dpkg -i, setpriv); CI runs them as root." >&2
    exit 1
fi

bash packaging/build-deb.sh >/dev/null
version=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"name":"tandem","version":"\([^"]*\)".*/\1/p')
deb=target/debian/tandem_${version}-1_amd64.deb
[ -f "$deb" ] || fail "$deb was not built"
ok "built $deb"

# --- contents and control fields -------------------------------------------
files=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/sbin/tandem ./etc/tandem/tandem.toml ./usr/lib/systemd/system/tandem.service \
         ./usr/share/man/man8/tandem.8.gz ./usr/share/doc/tandem/README.md \
         ./usr/share/doc/tandem/changelog.Debian.gz ./usr/share/doc/tandem/copyright \
         ./usr/share/doc/tandem/openapi.yaml ./usr/share/doc/tandem/grafana-dashboard.json \
         ./usr/share/doc/tandem/examples/reference.toml \
         ./usr/share/doc/tandem/examples/active-passive-lb1.toml \
         ./usr/share/doc/tandem/examples/active-passive-lb2.toml \
         ./usr/share/doc/tandem/examples/active-active-lb1.toml \
         ./usr/share/doc/tandem/examples/active-active-lb2.toml \
         ./usr/share/doc/tandem/examples/l4-only.toml \
         ./usr/share/doc/tandem/examples/https.toml; do
    grep -qx -- "$f" <<<"$files" || fail "package lacks $f"
done
ok "file list"
[ "$(dpkg-deb -f "$deb" Package)" = tandem ] || fail "Package field"
[ "$(dpkg-deb -f "$deb" Section)" = net ] || fail "Section field"
depends=$(dpkg-deb -f "$deb" Depends)
grep -q 'libc6' <<<"$depends" || fail "Depends lacks the computed libc6: $depends"
grep -q 'adduser' <<<"$depends" || fail "Depends lacks adduser: $depends"
ctl=$(mktemp -d); trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$deb" "$ctl/DEBIAN"
grep -qx /etc/tandem/tandem.toml "$ctl/DEBIAN/conffiles" || fail "tandem.toml is not a conffile"
ok "control fields: Depends: $depends"

# --- lintian ---------------------------------------------------------------
if command -v lintian >/dev/null; then
    out=$(lintian --pedantic "$deb" 2>&1 | grep -v 'running with root privileges' || true)
    if grep -E '^(E|W):' <<<"$out"; then fail "lintian errors or warnings (see above)"; fi
    ok "lintian: no errors, no warnings (overrides in packaging/lintian-overrides)"
else
    fail "lintian is not installed (apt install lintian)"
fi

# --- the unit ----------------------------------------------------------------
root=$ctl/root
dpkg-deb -x "$deb" "$root"
unit=$root/usr/lib/systemd/system/tandem.service
score=$(systemd-analyze security --offline=yes "$unit" 2>&1 | sed -n 's/.*Overall exposure level for tandem.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure score"
awk -v s="$score" 'BEGIN { exit !(s < 3.0) }' || fail "exposure score $score is not below 3.0"
ok "systemd-analyze security: exposure $score"
for key in 'Type=notify' 'ExecStartPre=/usr/sbin/tandem check -c /etc/tandem/tandem.toml' \
           'ExecStopPost=/usr/sbin/tandem cleanup -c /etc/tandem/tandem.toml' 'User=tandem' \
           'AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE CAP_SYS_NICE' \
           'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE CAP_SYS_NICE' \
           'RestrictRealtime=no' 'SystemCallFilter=sched_setscheduler' \
           'NoNewPrivileges=yes' 'ProtectSystem=strict' 'Restart=on-failure'; do
    grep -qxF -- "$key" "$unit" || fail "unit lacks $key"
done
ok "unit settings"

# --- the Vagrant scenario in the lab, from the package's own files ---------
TANDEM_DEB_ROOT=$root cargo test --release --test package_lab
ok "lab scenario from the package (setpriv nobody + the unit's capabilities)"

# --- install, upgrade, remove, purge on this machine ------------------------
if [ -z "${CI:-}${TANDEM_HOST_INSTALL:-}" ]; then
    echo "NOT installing on this machine: set TANDEM_HOST_INSTALL=1 (CI sets CI=1) to run dpkg -i/-r/-P tests." >&2
    exit 1
fi
if dpkg -s tandem >/dev/null 2>&1; then dpkg -P tandem >/dev/null; fi
dpkg -i "$deb" >/dev/null
getent passwd tandem >/dev/null || fail "no tandem user after install"
getent group tandem >/dev/null || fail "no tandem group after install"
[ -x /usr/sbin/tandem ] || fail "binary not installed"
/usr/sbin/tandem check -c /etc/tandem/tandem.toml >/dev/null || fail "installed default config fails tandem check"
[ "$(stat -c '%U:%G %a' /etc/tandem)" = "root:tandem 750" ] || fail "/etc/tandem ownership: $(stat -c '%U:%G %a' /etc/tandem)"
[ -L /etc/systemd/system/multi-user.target.wants/tandem.service ] || fail "unit not enabled"
# An unknown key only warns (exit 0): any output at all is a failure.
if ! systemd-analyze verify /usr/lib/systemd/system/tandem.service >"$ctl/verify.err" 2>&1 \
   || [ -s "$ctl/verify.err" ]; then
    cat "$ctl/verify.err" >&2; fail "systemd-analyze verify is not clean"
fi
ok "installed: user, group, conffile, enabled unit, systemd-analyze verify clean"

# Upgrade with an edited conffile: the edit survives, nothing prompts.
echo "# edited by the operator" >> /etc/tandem/tandem.toml
bash packaging/build-deb.sh --deb-version "${version}-2" >/dev/null
dpkg -i "target/debian/tandem_${version}-2_amd64.deb" >/dev/null </dev/null
[ "$(dpkg-query -W -f '${Version}' tandem)" = "${version}-2" ] || fail "upgrade did not happen"
grep -q "edited by the operator" /etc/tandem/tandem.toml || fail "upgrade lost the edited conffile"
ok "upgrade to ${version}-2 kept the edited conffile"

dpkg -r tandem >/dev/null
[ ! -e /usr/sbin/tandem ] || fail "remove left the binary"
grep -q "edited by the operator" /etc/tandem/tandem.toml || fail "remove deleted the edited conffile"
getent passwd tandem >/dev/null || fail "remove deleted the user (only purge should)"
ok "remove: binary gone, edited conffile and user kept"

dpkg -P tandem >/dev/null
[ ! -e /etc/tandem ] || fail "purge left /etc/tandem: $(ls -la /etc/tandem)"
! getent passwd tandem >/dev/null || fail "purge left the tandem user"
! getent group tandem >/dev/null || fail "purge left the tandem group"
[ ! -e /etc/systemd/system/multi-user.target.wants/tandem.service ] || fail "purge left the enable symlink"
ok "purge: conffile, /etc/tandem, user, group and unit symlink gone"
echo "package tests passed"
