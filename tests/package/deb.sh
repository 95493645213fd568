#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2034 # checks are single-quoted strings that `check` evals
# The Debian package end to end: `cargo deb -p roadgate` (from the release binary), installed with
# apt in a clean Debian 12 root (mmdebstrap, minbase; the tarball is cached in /var/tmp/roadgate-deb
# with the package's dependencies downloaded, so apt resolves them from Debian's archive but a rerun
# needs no network), its files, owners and modes checked, the server started as the unit starts it
# (ExecStart, user roadgate, the unit's three capabilities, in a network namespace rg-deb-srv), the
# first-start file checked, a full IKE + L2TP + PPP login from rg-client in rg-deb-cli with the key
# and user from that file, then an upgrade (an edited conffile and the state survive; the same
# login still works), a remove (state and configuration kept) and a purge (all gone, the user too).
# No systemd runs in the root: the maintainer scripts must cope. Needs root, mmdebstrap, cargo-deb
# (tests/install-deps.sh), iproute2. Logs: target/package/deb/. Prints PASS/FAIL per check and
# `deb-package: N passed, N failed`.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top" || exit 1
t0=$SECONDS
target=${CARGO_TARGET_DIR:-$top/target}
out=$target/package/deb
cache=/var/tmp/roadgate-deb
mirror=${ROADGATE_DEB_MIRROR:-http://deb.debian.org/debian}

pass=0; fail=0
ok()  { echo "PASS $1: $2"; pass=$((pass+1)); }
bad() { echo "FAIL $1: $2 (logs: $out)"; fail=$((fail+1)); }
# check NAME WHAT COMMAND...: PASS if COMMAND succeeds.
check() { local n=$1 w=$2; shift 2; if "$@"; then ok "$n" "$w"; else bad "$n" "$w"; fi; }
finish() {
  echo "deb-package: $pass passed, $fail failed ($((SECONDS - t0)) s)"
  [ "$fail" = 0 ]
}

# The package's unit is deploy/roadgate.service with the packaged binary's path: the same
# directives otherwise (comments aside), so the hardening cannot drift apart. (No root needed.)
directives() { grep -v '^#' "$1" | sed 's#^ExecStart=/usr/local/bin/#ExecStart=/usr/bin/#'; }
if diff <(directives deploy/roadgate.service) <(directives deploy/debian/roadgate.service) >/dev/null; then
  ok unit-in-step "deploy/debian/roadgate.service = deploy/roadgate.service but ExecStart=/usr/bin/roadgate"
else
  bad unit-in-step "deploy/debian/roadgate.service and deploy/roadgate.service differ: $(diff <(directives deploy/roadgate.service) <(directives deploy/debian/roadgate.service) | tr '\n' ' ')"
fi

skip() { echo "SKIP deb-package: $*"; finish; exit $?; }
[ "$(id -u)" = 0 ] || skip "the rest needs root (a chroot, network namespaces, dpkg inside)"
command -v mmdebstrap >/dev/null || skip "mmdebstrap missing (apt-get install mmdebstrap)"
command -v ip >/dev/null || skip "iproute2 missing"
cargo deb --version >/dev/null 2>&1 || skip "cargo-deb missing (cargo install cargo-deb --locked)"

rm -rf "$out"; mkdir -p "$out" "$cache"
srv=rg-deb-srv; cli=rg-deb-cli
root=""; srv_pid=""
cleanup() {
  [ -n "$srv_pid" ] && kill -9 "$srv_pid" 2>/dev/null
  wait 2>/dev/null
  ip netns del $srv 2>/dev/null; ip netns del $cli 2>/dev/null
  if [ -n "$root" ] && [ -d "$root" ]; then
    umount "$root/proc" 2>/dev/null
    if mountpoint -q "$root/proc"; then
      echo "cleanup: $root/proc is still mounted: $root left in place" >&2
    else
      rm -rf --one-file-system "$root"
    fi
  fi
}
trap cleanup EXIT

# ---- the packages ------------------------------------------------------------------------------
echo "building the release binaries and the packages ..."
cargo build --release --locked -p roadgate -p roadgate-tests --bins >"$out/build.log" 2>&1 ||
  { bad build "cargo build --release: $(tail -3 "$out/build.log" | tr '\n' ' ')"; finish; exit 1; }
rgclient=$target/release/rg-client
version=$(cargo pkgid -p roadgate | sed 's/.*[#@]//')
# The first package, and the same with a higher version for the upgrade.
deb1=$(cargo deb -p roadgate --no-build --output "$out/v1" 2>"$out/deb1.log" | tail -1)
deb2=$(cargo deb -p roadgate --no-build --deb-version "$version-1+1" --output "$out/v2" 2>"$out/deb2.log" | tail -1)
if [ -f "$deb1" ] && [ -f "$deb2" ]; then
  ok build "cargo deb -p roadgate --no-build: $(basename "$deb1"), and $(basename "$deb2") for the upgrade"
else
  bad build "cargo deb: $(tail -3 "$out/deb1.log" "$out/deb2.log" | tr '\n' ' ')"; finish; exit 1
fi
v1=$(dpkg-deb -f "$deb1" Version); v2=$(dpkg-deb -f "$deb2" Version)
dpkg-deb -c "$deb1" >"$out/contents.txt"; dpkg-deb -I "$deb1" >"$out/info.txt"
depends=$(dpkg-deb -f "$deb1" Depends)
echo "package $v1, Depends: $depends"
check conffiles "conffiles: /etc/roadgate/roadgate.toml and the PAM files" \
  eval '[ "$(dpkg-deb --ctrl-tarfile "$deb1" | tar -xO ./conffiles | sort | tr "\n" " ")" = "/etc/pam.d/roadgate /etc/pam.d/roadgate-system /etc/roadgate/roadgate.toml " ]'

# ---- a clean Debian 12 root (cached) -----------------------------------------------------------
# The dependencies by name (versions and alternatives dropped): downloaded into the root's apt
# cache, so that apt in the root resolves and installs them with no network.
deps=$(printf '%s\n' "$depends" | tr ',' '\n' | sed 's/[(|].*//; s/ //g' | grep . | sort -u | tr '\n' ' ')
key=$(printf '%s' "$deps" | sha256sum | cut -c1-12)
tarball=$cache/bookworm-minbase-$key.tar
if [ ! -f "$tarball" ]; then
  echo "making $tarball (mmdebstrap bookworm minbase; once) ..."
  if mmdebstrap --variant=minbase --format=tar --skip=cleanup/apt/lists,cleanup/apt/cache \
    --customize-hook="chroot \"\$1\" sh -c 'apt-get clean && apt-get install --download-only -y -q $deps'" \
    bookworm "$tarball.part" "$mirror" >"$out/mmdebstrap.log" 2>&1; then
    mv "$tarball.part" "$tarball"
  else
    rm -f "$tarball.part"
    bad chroot "mmdebstrap: $(tail -3 "$out/mmdebstrap.log" | tr '\n' ' ')"; finish; exit 1
  fi
fi
root=$(mktemp -d "$cache/root.XXXXXX")
tar -C "$root" -xf "$tarball"
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
mount -t proc proc "$root/proc"
mkdir -p "$root/dev/net"
[ -c "$root/dev/net/tun" ] || mknod -m 0666 "$root/dev/net/tun" c 10 200
for d in null:1:3 zero:1:5 random:1:8 urandom:1:9; do
  IFS=: read -r n ma mi <<<"$d"
  [ -c "$root/dev/$n" ] || mknod -m 0666 "$root/dev/$n" c "$ma" "$mi"
done
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
[ -d "$root/run/systemd/system" ] && bad no-systemd "the root has /run/systemd/system"

# ---- install -----------------------------------------------------------------------------------
cp "$deb1" "$deb2" "$root/tmp/"
# The dependencies first, from the root's apt cache (or the archive), then dpkg -i (apt-get refuses a
# local file with --no-download: "Pathname to install is not absolute").
# shellcheck disable=SC2086 # $deps is a list of package names
in_root apt-get install -y -q $deps </dev/null >"$out/deps.log" 2>&1 ||
  bad deps "apt-get install $deps: $(tail -3 "$out/deps.log" | tr '\n' ' ')"
if in_root dpkg -i "/tmp/$(basename "$deb1")" </dev/null >"$out/install.log" 2>&1; then
  ok install "dpkg -i $(basename "$deb1") in Debian 12 (no systemd running): $(grep -c '^Setting up' "$out/install.log") packages set up ($(grep '^Setting up' "$out/install.log" | sed 's/Setting up \([^ :]*\).*/\1/' | tr '\n' ' '))"
else
  bad install "dpkg -i: $(tail -5 "$out/install.log" | tr '\n' ' ')"; finish; exit 1
fi

# stat_is PATH "owner:group mode" (inside the root)
stat_is() { [ "$(in_root stat -c '%U:%G %a' "$1" 2>/dev/null)" = "$2" ]; }
unit=/lib/systemd/system/roadgate.service
check binary "/usr/bin/roadgate root:root 755, runs (its libraries are there)" \
  eval 'stat_is /usr/bin/roadgate "root:root 755" && in_root /usr/bin/roadgate --help >/dev/null'
check unit "$unit: ExecStart=/usr/bin/roadgate serve --config /etc/roadgate/roadgate.toml, User=roadgate, the hardening" \
  eval 'f=$root$unit; grep -qx "ExecStart=/usr/bin/roadgate serve --config /etc/roadgate/roadgate.toml" "$f" && grep -qx User=roadgate "$f" && grep -qx ProtectSystem=strict "$f" && grep -qx "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW" "$f"'
check unit-enabled "deb-systemd-helper enabled it (multi-user.target.wants link) without a running systemd" \
  test -L "$root/etc/systemd/system/multi-user.target.wants/roadgate.service"
check config "/etc/roadgate/roadgate.toml root:roadgate 640, state_dir = \"/var/lib/roadgate\"; /etc/roadgate root:roadgate 750" \
  eval 'stat_is /etc/roadgate/roadgate.toml "root:roadgate 640" && stat_is /etc/roadgate "root:roadgate 750" && grep -qx "state_dir = \"/var/lib/roadgate\"" "$root/etc/roadgate/roadgate.toml"'
check config-valid "roadgate check-config --config /etc/roadgate/roadgate.toml (as roadgate)" \
  in_root setpriv --reuid roadgate --regid roadgate --init-groups /usr/bin/roadgate check-config --config /etc/roadgate/roadgate.toml
check pam "/etc/pam.d/roadgate and roadgate-system, as in deploy/pam.d" \
  eval 'cmp -s deploy/pam.d/roadgate "$root/etc/pam.d/roadgate" && cmp -s deploy/pam.d/roadgate-system "$root/etc/pam.d/roadgate-system"'
check snippets-off "nftables.conf and sysctl.conf in /usr/share/roadgate, not switched on (no /etc/sysctl.d/60-roadgate.conf, no nftables.d file)" \
  eval '[ -f "$root/usr/share/roadgate/nftables.conf" ] && [ -f "$root/usr/share/roadgate/sysctl.conf" ] && [ ! -e "$root/etc/sysctl.d/60-roadgate.conf" ] && [ ! -e "$root/etc/nftables.d/roadgate.nft" ] && [ ! -e "$root/etc/roadgate/roadgate.nft" ]'
user_line=$(in_root getent passwd roadgate)
uid=$(cut -d: -f3 <<<"$user_line")
if [ -n "$uid" ] && [ "$uid" -lt 1000 ] && [ "$(cut -d: -f6,7 <<<"$user_line")" = /var/lib/roadgate:/usr/sbin/nologin ]; then
  ok user "system user roadgate: $user_line"
else
  bad user "getent passwd roadgate: '$user_line'"
fi
check state-dir "/var/lib/roadgate roadgate:roadgate 700" stat_is /var/lib/roadgate "roadgate:roadgate 700"
if in_root /var/lib/dpkg/info/roadgate.postinst configure "$v1" >"$out/postinst-again.log" 2>&1 &&
  [ "$(in_root getent passwd roadgate)" = "$user_line" ] && stat_is /var/lib/roadgate "roadgate:roadgate 700"; then
  ok postinst-again "postinst configure run again: exit 0, the same user, the same folder"
else
  bad postinst-again "$(tr '\n' ' ' <"$out/postinst-again.log")"
fi

# ---- start it as the unit does -----------------------------------------------------------------
ip netns del $srv 2>/dev/null; ip netns del $cli 2>/dev/null
ip netns add $srv; ip netns add $cli
ip -n $srv link set lo up; ip -n $cli link set lo up
ip link add wan0 netns $srv type veth peer name wan0 netns $cli
ip -n $srv addr add 203.0.113.2/24 dev wan0; ip -n $srv link set wan0 up
ip -n $cli addr add 203.0.113.3/24 dev wan0; ip -n $cli link set wan0 up
read -r -a exec_start <<<"$(sed -n 's/^ExecStart=//p' "$root$unit")"
caps=+net_admin,+net_bind_service,+net_raw
# start_server TAG: ExecStart as roadgate with the unit's capabilities, working folder and umask.
# Its standard output is a file that JOURNAL_STREAM names, as systemd does for the journal: the
# server must then print no secret there.
start_server() {
  local tag=$1 dev_ino
  : >"$out/server-$tag.out"
  dev_ino=$(stat -c '%d:%i' "$out/server-$tag.out")
  ip netns exec $srv chroot "$root" env -i PATH=/usr/sbin:/usr/bin JOURNAL_STREAM="$dev_ino" RUST_LOG=info \
    sh -c 'umask 0077; cd /var/lib/roadgate && exec "$@"' sh \
    setpriv --reuid roadgate --regid roadgate --init-groups --inh-caps "$caps" --ambient-caps "$caps" \
    "${exec_start[@]}" >"$out/server-$tag.out" 2>"$out/server-$tag.log" &
  srv_pid=$!
  local i
  for ((i = 0; i < 150; i++)); do
    grep -q 'listening' "$out/server-$tag.log" 2>/dev/null && return 0
    kill -0 "$srv_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
stop_server() {
  kill -TERM "$srv_pid" 2>/dev/null
  local i
  for ((i = 0; i < 100; i++)); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null; srv_pid=""
}
# login TAG: rg-client in rg-deb-cli logs in as vpnuser with the first-start file's key and password.
login() {
  timeout 60 ip netns exec $cli "$rgclient" --server 203.0.113.2 --local 203.0.113.3 \
    --psk-file "$out/psk" --user vpnuser --password-file "$out/pw-vpnuser" --no-tun \
    --exit-after-up --connect-timeout 30 >"$out/client-$1.log" 2>&1
  grep -q '^PPP up' "$out/client-$1.log"
}

if start_server first; then
  ok start "ExecStart as roadgate with $caps in netns $srv: listening ($(grep -m1 -o 'listening.*' "$out/server-first.log" | cut -c1-100))"
else
  bad start "the server did not start: $(tail -3 "$out/server-first.log" | tr '\n' ' ')"
fi
fs=/var/lib/roadgate/first-start.txt
check first-start-file "$fs roadgate:roadgate 600" stat_is $fs "roadgate:roadgate 600"
field() { sed -n "s/^$1: //p" "$root$fs"; }
psk=$(field psk); pw=$(field vpn_password); admin_pw=$(field web_password)
( umask 077; printf '%s\n' "$psk" >"$out/psk"; printf '%s\n' "$pw" >"$out/pw-vpnuser" )
if [ ${#psk} -ge 20 ] && [ "$(field vpn_user)" = vpnuser ] && [ ${#pw} -ge 16 ] &&
  [ "$(field web_admin)" = admin ] && [ ${#admin_pw} -ge 16 ] && [ "$(field web_url)" = https://127.0.0.1:8443/ ] &&
  [ "$psk" = "$(head -1 "$root/var/lib/roadgate/psk")" ]; then
  ok first-start-content "psk (the one in /var/lib/roadgate/psk), vpn_user vpnuser and its password, web_admin admin, its password, web_url $(field web_url)"
else
  bad first-start-content "$(sed 's/: .*/: .../' "$root$fs" 2>/dev/null | tr '\n' ' ')"
fi
named=$(grep -c 'first-start.txt' "$out/server-first.log")
if [ "$named" = 1 ]; then
  ok first-start-log "one log line names $fs: $(grep -m1 -o 'first start.*' "$out/server-first.log" | cut -c1-120)"
else
  bad first-start-log "$named log lines name first-start.txt"
fi
leaked=0
for s in "$psk" "$pw" "$admin_pw"; do
  [ -n "$s" ] && grep -qF -- "$s" "$out/server-first.out" "$out/server-first.log" && leaked=$((leaked + 1))
done
check no-secret-logged "no secret of the first-start file on stdout (a JOURNAL_STREAM) or in the log" test "$leaked" = 0
check listens "UDP 500 and 4500 on 0.0.0.0, the web UI on 127.0.0.1:8443" \
  eval 'ss=$(ip netns exec $srv ss -Hlnu; ip netns exec $srv ss -Hlnt); grep -q "0.0.0.0:500 " <<<"$ss" && grep -q "0.0.0.0:4500 " <<<"$ss" && grep -q "127.0.0.1:8443 " <<<"$ss"'
if login first; then
  ok login "rg-client: IKE + L2TP + PPP as vpnuser with the first-start key and password: $(grep -m1 '^PPP up' "$out/client-first.log")"
else
  bad login "rg-client: $(tail -2 "$out/client-first.log" | tr '\n' ' ')"
fi
stop_server

# ---- upgrade -----------------------------------------------------------------------------------
sed -i 's/^host_name = "roadgate"$/host_name = "rg-deb-edited"/' "$root/etc/roadgate/roadgate.toml"
sums() { (cd "$root/var/lib/roadgate" && sha256sum psk roadgate.db web.db first-start.txt); }
before=$(sums)
if in_root dpkg -i "/tmp/$(basename "$deb2")" </dev/null >"$out/upgrade.log" 2>&1 &&
  [ "$(in_root dpkg-query -W -f '${Version}' roadgate)" = "$v2" ]; then
  ok upgrade "dpkg -i $(basename "$deb2"): $v1 -> $v2, no conffile question"
else
  bad upgrade "$(tail -5 "$out/upgrade.log" | tr '\n' ' ')"
fi
check upgrade-conffile "the admin's edit of roadgate.toml survived (host_name = \"rg-deb-edited\")" \
  grep -qx 'host_name = "rg-deb-edited"' "$root/etc/roadgate/roadgate.toml"
check upgrade-state "psk, roadgate.db, web.db, first-start.txt unchanged; /var/lib/roadgate roadgate:roadgate 700" \
  eval '[ "$(sums)" = "$before" ] && stat_is /var/lib/roadgate "roadgate:roadgate 700"'
check upgrade-user "the same user roadgate" test "$(in_root getent passwd roadgate)" = "$user_line"
if start_server upgraded && login upgraded; then
  ok upgrade-login "after the upgrade the server starts (no new first-start) and vpnuser logs in with the same key and password"
else
  bad upgrade-login "server: $(tail -2 "$out/server-upgraded.log" | tr '\n' ' '); client: $(tail -2 "$out/client-upgraded.log" 2>/dev/null | tr '\n' ' ')"
fi
check upgrade-no-first-start "the second start made nothing (no first-start log line)" \
  eval '! grep -q first-start.txt "$out/server-upgraded.log"'
stop_server

# ---- remove, purge -----------------------------------------------------------------------------
if in_root apt-get remove -y -q roadgate </dev/null >"$out/remove.log" 2>&1; then
  ok remove "apt-get remove roadgate"
else
  bad remove "$(tail -5 "$out/remove.log" | tr '\n' ' ')"
fi
check remove-files "binary and unit gone" \
  eval '[ ! -e "$root/usr/bin/roadgate" ] && [ ! -e "$root$unit" ]'
check remove-keeps "state (psk, roadgate.db) and the edited configuration kept, user roadgate kept, status rc" \
  eval '[ -s "$root/var/lib/roadgate/psk" ] && [ -s "$root/var/lib/roadgate/roadgate.db" ] && grep -qx "host_name = \"rg-deb-edited\"" "$root/etc/roadgate/roadgate.toml" && in_root getent passwd roadgate >/dev/null && [ "$(in_root dpkg-query -W -f "\${db:Status-Abbrev}" roadgate)" = "rc " ]'
if in_root apt-get purge -y -q roadgate </dev/null >"$out/purge.log" 2>&1; then
  ok purge "apt-get purge roadgate"
else
  bad purge "$(tail -5 "$out/purge.log" | tr '\n' ' ')"
fi
check purge-gone "/var/lib/roadgate, /etc/roadgate, /etc/pam.d/roadgate*, the wants link gone; user and group roadgate gone; dpkg knows no roadgate" \
  eval '[ ! -e "$root/var/lib/roadgate" ] && [ ! -e "$root/etc/roadgate" ] && [ ! -e "$root/etc/pam.d/roadgate" ] && [ ! -e "$root/etc/pam.d/roadgate-system" ] && [ ! -e "$root/etc/systemd/system/multi-user.target.wants/roadgate.service" ] && ! in_root getent passwd roadgate >/dev/null && ! in_root getent group roadgate >/dev/null && ! in_root dpkg-query -W roadgate >/dev/null 2>&1'

finish
