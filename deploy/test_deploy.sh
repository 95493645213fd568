#!/usr/bin/env bash
# Checks the files in deploy/ without changing the host: shellcheck on the scripts, the nftables
# rules and the sysctl file in a throwaway network namespace, the systemd unit with
# systemd-analyze (against a temporary root), and install.sh --dry-run.
# Prints PASS / FAIL / SKIP (with the reason) per check; exits 1 if any check failed.
# Needs root for the namespace checks (they SKIP otherwise). Takes a few seconds.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

pass=0 fail=0 skip=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1${2:+: $2}"; fail=$((fail + 1)); }
skip() { echo "SKIP $1: $2"; skip=$((skip + 1)); }

ns="" tmp=$(mktemp -d)
cleanup() {
  if [ -n "$ns" ]; then ip netns del "$ns" 2>/dev/null; fi
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
