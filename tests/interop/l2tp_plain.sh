#!/usr/bin/env bash
# Real-peer check of the L2TP LNS and pppd-lite (issue: L2TPv2 LNS + PPP), without IPsec.
#
# The stock Debian xl2tpd 1.3 + pppd 2.4 client in a VM (../shared/harness/vm.sh --no-ipsec)
# opens an L2TP tunnel and an incoming call to `roadgate serve` in the harness's host namespace,
# brings up PPP and must get an address from the server's pool. The server runs its test-only
# plain-L2TP switch (in production cleartext L2TP is dropped and logged) with a local user in its
# SQLite database. Cases:
#   mschapv2   MS-CHAPv2 (what Windows uses): l2tp=up ppp=up auth=ok and an address in the pool
#   pap        PAP, checked against the same NT-hash record
#   static-ip  a user with a static address gets exactly that address
#   wrong-pw   a wrong password: auth must fail and the server must log the refusal
#   cleartext  the production default (no plain switch): the tunnel must not come up, and the
#              server must log that it dropped L2TP without IPsec
#
# Checked: the RESULT fields l2tp=, ppp=, auth=, ip= and, for sessions that come up, ping= (the
# client pings the server's PPP address through the TUN data plane), and the server log.
#
# Needs root and the harness; prints SKIP with the reason otherwise. Exit 0 = every case passed.
set -uo pipefail
name=l2tp_plain
subdir=/l2tp
source "$(dirname "$0")/common.sh"

state="$out/state"
rm -rf "$state"
echo testpass123 | "$bin" user --state "$state" add testuser >/dev/null || { echo "FAIL: user add"; exit 1; }
echo otherpass99 | "$bin" user --state "$state" add fixed --static-ip 10.77.0.200 >/dev/null || { echo "FAIL: user add"; exit 1; }
echo "any-psk-unused" > "$out/psk"; chmod 600 "$out/psk"

pass=0; fail=0
# run_case NAME EXPECT SERVER-FLAGS -- CLIENT-ARGS...; EXPECT is up | auth-fail | no-tunnel
run_case() {
  local name=$1 expect=$2 flags=$3; shift 4
  local log="$out/server-$name.log"
  # shellcheck disable=SC2086
  ip netns exec l2tpv-host env RUST_LOG=info,roadgate=debug "$bin" serve --listen 192.0.2.1 --psk-file "$out/psk" \
    --state "$state" --no-raw-esp --pool 10.77.0.10-10.77.0.99 --dns 192.0.2.53 $flags >"$log" 2>&1 &
  srv=$!
  sleep 1
  local result
  result=$("$vm" client --server 192.0.2.1 --no-ipsec --ppp-timeout 20 "$@" 2>"$out/client-$name.err" | grep '^RESULT' | tail -1)
  kill -TERM "$srv" 2>/dev/null; wait "$srv" 2>/dev/null; srv=
  echo "$name: $result" | tee -a "$out/results.txt"
  local ok=1 why=
  case $expect in
    up)
      [[ $result == *" l2tp=up"* ]] || { ok=0; why+=" l2tp"; }
      [[ $result == *" ppp=up"* ]] || { ok=0; why+=" ppp"; }
      [[ $result == *" auth=ok"* ]] || { ok=0; why+=" auth"; }
      [[ $result =~ \ ip=10\.77\.0\.([0-9]+) ]] || { ok=0; why+=" ip"; }
      # vm.sh may read ppp0 before pppd has set its peer address (peer=global): its own race,
      # with no ping to judge.
      [[ $result == *" ping=ok"* || $result == *" peer=global "* ]] || { ok=0; why+=" ping"; }
      grep -q "roadgate_core::session: session up" "$log" || { ok=0; why+=" server-log"; } ;;
    auth-fail)
      [[ $result == *" l2tp=up"* ]] || { ok=0; why+=" l2tp"; }
      [[ $result != *" auth=ok"* ]] || { ok=0; why+=" auth-accepted"; }
      grep -q "authentication refused" "$log" || { ok=0; why+=" server-log"; } ;;
    no-tunnel)
      [[ $result != *" l2tp=up"* ]] || { ok=0; why+=" tunnel-up"; }
      grep -q "L2TP without IPsec dropped" "$log" || { ok=0; why+=" server-log"; } ;;
  esac
  if [ -n "${want_ip:-}" ] && [[ $result != *" ip=$want_ip "* && $result != *" ip=$want_ip" ]]; then ok=0; why+=" static-ip"; fi
  if [ $ok = 1 ]; then
    echo "PASS $name"; pass=$((pass+1))
  else
    echo "FAIL $name:$why (server log: $log)"; fail=$((fail+1))
  fi
}

run_case mschapv2 up --plain-l2tp -- --ppp-auth mschapv2
run_case pap up --plain-l2tp -- --ppp-auth pap
want_ip=10.77.0.200 run_case static-ip up --plain-l2tp -- --ppp-auth mschapv2 --user fixed --pass otherpass99
run_case wrong-pw auth-fail --plain-l2tp -- --ppp-auth mschapv2 --pass wrong-password
run_case cleartext no-tunnel "" -- --ppp-auth mschapv2 --ppp-timeout 8

echo "interop l2tp_plain: $pass passed, $fail failed"
[ $fail = 0 ]
