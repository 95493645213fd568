#!/usr/bin/env bash
# Checks the files in deploy/ without changing the host: shellcheck on the scripts; the nftables
# rules and the sysctl file in throwaway network namespaces (syntax, reload, include, and the
# forwarding rules at work between a client, the server and a LAN host); the systemd unit with
# systemd-analyze (against a temporary root); install.sh --dry-run.
# Prints PASS / FAIL / SKIP (with the reason) per check; exits 1 if any check failed.
# Needs root for the namespace checks (they SKIP otherwise). Takes a few seconds.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

pass=0 fail=0 skip=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1${2:+: $2}"; fail=$((fail + 1)); }
skip() { echo "SKIP $1: $2"; skip=$((skip + 1)); }

ns="" fwd_ns="" tmp=$(mktemp -d)
cleanup() {
  for n in $ns $fwd_ns; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- shellcheck ----------------------------------------------------------------------------------
if command -v shellcheck >/dev/null; then
  if out=$(shellcheck "$here/install.sh" "$here/test_deploy.sh" 2>&1); then
    ok "shellcheck install.sh test_deploy.sh"
  else
    bad "shellcheck" "$out"
  fi
else
  skip shellcheck "shellcheck not installed (apt-get install shellcheck)"
fi

# --- nftables and sysctl in a throwaway network namespace ----------------------------------------
if [ "$(id -u)" != 0 ]; then
  skip nftables "needs root (a network namespace)"
  skip sysctl "needs root (a network namespace)"
elif ! command -v ip >/dev/null; then
  skip nftables "iproute2 not installed"
  skip sysctl "iproute2 not installed"
elif ! ip netns add "rg-deploy-$$" 2>/dev/null; then
  skip nftables "cannot create a network namespace here"
  skip sysctl "cannot create a network namespace here"
else
  ns=rg-deploy-$$
  in_ns() { ip netns exec "$ns" "$@"; }
  if ! command -v nft >/dev/null; then
    skip nftables "nft not installed (apt-get install nftables)"
  else
    if out=$(in_ns nft -c -f "$here/nftables.conf" 2>&1); then
      ok "nft -c -f nftables.conf"
    else
      bad "nft -c -f nftables.conf" "$out"
    fi
    # Loaded twice, the table must hold its rules once (the file replaces its own table).
    if in_ns nft -f "$here/nftables.conf" && in_ns nft -f "$here/nftables.conf"; then
      n=$(in_ns nft list table inet roadgate | grep -c 'masquerade')
      if [ "$n" = 1 ]; then ok "nftables.conf loads twice without duplicate rules"; else bad "reload" "$n masquerade rules after two loads"; fi
    else
      bad "nft -f nftables.conf (in the namespace)"
    fi
    # Included from a main file that defines the same names and has its own tables.
    cat >"$tmp/main.nft" <<EOF
flush ruleset
define LAN_IF = "lan9"
define POOL = 192.0.2.0/24
table inet filter {
  chain input { type filter hook input priority filter; policy accept; iifname \$LAN_IF accept; }
}
include "$here/nftables.conf"
EOF
    if out=$(in_ns nft -c -f "$tmp/main.nft" 2>&1); then
      ok "nftables.conf as an include next to a main file defining LAN_IF and POOL"
    else
      bad "nftables.conf as an include" "$out"
    fi
  fi
  # Apply the sysctl file in the namespace, if every key in it is one of the namespace's own.
  keys=$(sed -n 's/^[[:space:]]*-\{0,1\}\([a-z][a-z0-9_.]*\)[[:space:]]*=.*/\1/p' "$here/sysctl.conf")
  if grep -qv '^net\.ipv[46]\.' <<<"$keys"; then
    skip sysctl "a key outside net.ipv4/net.ipv6 would change the host: $(grep -v '^net\.ipv[46]\.' <<<"$keys" | tr '\n' ' ')"
  elif out=$(in_ns sysctl -q -p "$here/sysctl.conf" 2>&1); then
    wrong=""
    while IFS= read -r line; do
      key=${line%%=*} want=${line#*=}
      key=${key//[[:space:]]/} want=${want//[[:space:]]/}
      got=$(in_ns sysctl -n "$key")
      [ "$got" = "$want" ] || wrong="$wrong $key=$got(want $want)"
    done < <(grep -E '^[[:space:]]*net\.' "$here/sysctl.conf")
    if [ -z "$wrong" ]; then ok "sysctl.conf applies (in the namespace) and reads back"; else bad sysctl "$wrong"; fi
  else
    bad "sysctl -p sysctl.conf (in the namespace)" "$out"
  fi
fi

# --- the forwarding rules at work -----------------------------------------------------------------
# A client (10.77.0.10, also holding a foreign 10.99.0.5) behind a veth named rg0, the server with
# the rules and the sysctl file, a LAN host (198.51.100.2) on its eth0 = WAN_IF = LAN_IF.
if [ -z "$ns" ] || ! command -v nft >/dev/null; then
  skip forwarding "needs root, iproute2 and nft (see above)"
elif ! command -v ping >/dev/null; then
  skip forwarding "ping not installed (apt-get install iputils-ping)"
else
  cl=rg-dcl-$$ srv=rg-dsrv-$$ lan=rg-dlan-$$
  fwd_ns="$cl $srv $lan"
  for n in $fwd_ns; do ip netns add "$n" && ip -n "$n" link set lo up; done
  ip link add rg0 netns "$srv" type veth peer name c0 netns "$cl"
  ip link add eth0 netns "$srv" type veth peer name l0 netns "$lan"
  ip -n "$srv" addr add 10.77.0.1/24 dev rg0 && ip -n "$srv" link set rg0 up
  ip -n "$srv" addr add 198.51.100.1/24 dev eth0 && ip -n "$srv" link set eth0 up
  ip -n "$srv" route add default via 198.51.100.2
  ip -n "$cl" addr add 10.77.0.10/24 dev c0 && ip -n "$cl" addr add 10.99.0.5/32 dev c0
  ip -n "$cl" link set c0 up && ip -n "$cl" route add default via 10.77.0.1
  ip -n "$lan" addr add 198.51.100.2/24 dev l0 && ip -n "$lan" link set l0 up
  ip -n "$lan" route add 10.77.0.0/24 via 198.51.100.1
  ip netns exec "$srv" sysctl -q -p "$here/sysctl.conf" && ip netns exec "$srv" nft -f "$here/nftables.conf"
  counter() { # packets counted by the rule of table inet roadgate that matches $1
    ip netns exec "$srv" nft list table inet roadgate | grep -F -- "$1" | sed -n 's/.*counter packets \([0-9]*\).*/\1/p' | head -1
  }
  png() { ip netns exec "$1" ping -c1 -W1 "$2" >/dev/null 2>&1; }
  if png "$cl" 198.51.100.2 && [ "$(counter masquerade)" = 1 ]; then
    ok "forwarding: a client reaches the LAN, masqueraded"
  else
    bad "forwarding: client to LAN" "ping failed or masquerade counter $(counter masquerade)"
  fi
  if ! png "$lan" 10.77.0.10 && [ "$(counter 'oifname "rg0" counter')" = 1 ]; then
    ok "forwarding: a new connection from the LAN to a client is dropped"
  else
    bad "forwarding: LAN to client" "not dropped by the rules"
  fi
  ip -n "$cl" route replace default via 10.77.0.1 src 10.99.0.5
  if ! png "$cl" 198.51.100.2 && [ "$(counter 'iifname "rg0" counter')" = 1 ]; then
    ok "forwarding: a client source outside the pool is dropped"
  else
    bad "forwarding: spoofed client source" "not dropped by the rules"
  fi
fi

# --- systemd unit --------------------------------------------------------------------------------
if ! command -v systemd-analyze >/dev/null; then
  skip systemd "systemd-analyze not installed"
else
  # A temporary root, so that the check needs neither the installed binary nor a running systemd.
  root=$tmp/root
  mkdir -p "$root/usr/local/bin" "$root/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
  printf '#!/bin/sh\n' >"$root/usr/local/bin/roadgate"
  chmod 755 "$root/usr/local/bin/roadgate"
  cp "$(type -P kill)" "$root/bin/kill" # ExecReload= names /bin/kill
  for d in /usr/lib/systemd/system /lib/systemd/system; do
    if [ -d "$d" ]; then cp -a "$d" "$root/usr/lib/systemd/"; break; fi
  done
  cp "$here/roadgate.service" "$root/etc/systemd/system/"
  if out=$(systemd-analyze verify --root="$root" roadgate.service 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify roadgate.service"
  else
    bad "systemd-analyze verify roadgate.service" "$out"
  fi
  if score=$(systemd-analyze security --offline=yes "$here/roadgate.service" 2>/dev/null | grep 'Overall exposure'); then
    echo "INFO ${score#→ }"
  fi
fi

# --- install.sh --dry-run --------------------------------------------------------------------------
paths="/usr/local/bin/roadgate /etc/roadgate /etc/systemd/system/roadgate.service /etc/sysctl.d/60-roadgate.conf /etc/nftables.d/roadgate.nft"
state() { for p in $paths; do stat -c '%n %i %Y %a' "$p" 2>/dev/null || echo "$p absent"; done; }
before=$(state)
if out=$("$here/install.sh" --dry-run --binary "$(type -P true)" --wan-if eth0 2>&1); then
  missing=""
  for p in /usr/local/bin/roadgate /etc/systemd/system/roadgate.service /etc/sysctl.d/60-roadgate.conf 'sysctl --quiet --system' roadgate.nft; do
    grep -qF -- "$p" <<<"$out" || missing="$missing $p"
  done
  if [ -z "$missing" ]; then ok "install.sh --dry-run"; else bad "install.sh --dry-run" "output lacks:$missing"; fi
else
  bad "install.sh --dry-run" "$out"
fi
if out=$("$here/install.sh" --dry-run --uninstall 2>&1); then
  ok "install.sh --dry-run --uninstall"
else
  bad "install.sh --dry-run --uninstall" "$out"
fi
if [ "$(state)" = "$before" ]; then ok "the dry runs changed nothing"; else bad "the dry runs changed installed files"; fi
"$here/install.sh" --no-such-option >/dev/null 2>&1
rc=$?
if [ "$rc" = 2 ]; then ok "install.sh refuses an unknown option (exit 2)"; else bad "install.sh --no-such-option" "exit $rc"; fi

echo "deploy: $pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
