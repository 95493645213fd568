#!/usr/bin/env bash
# Manual bench (not in CI): TCP throughput through the reference L2TP/IPsec server and through
# roadgate, with the same client VM and the same command, side by side.
#
# 1. The harness's anchor VM (strongSwan + xl2tpd + pppd, `vm.sh anchor-server start`, 192.0.2.2):
#    `vm.sh client --server 192.0.2.2 --iperf --iperf-reverse` (iperf3 to the anchor's PPP
#    address, both ways).
# 2. `roadgate serve` (target/release/roadgate, or $ROADGATE_BIN) in netns l2tpv-host with a fresh
#    state folder, user testuser/testpass123 and the harness's PSK, and `iperf3 -s -B 10.77.0.1`
#    there (the server's PPP address, on its TUN device); the same client command with
#    --server 192.0.2.1.
#
# The VMs run under QEMU's software emulation: the figures are the emulator's, and what matters
# is the comparison. Needs root and the harness (prints SKIP otherwise); takes a few minutes.
# IPERF_TIME sets each iperf3 run's length in seconds (default 10).
set -uo pipefail
name=iperf_vs_anchor
subdir=/iperf_vs_anchor
source "$(dirname "$0")/common.sh"

itime=${IPERF_TIME:-10}
command -v iperf3 >/dev/null || { echo "FAIL: iperf3 missing (tests/install-deps.sh installs it)"; exit 1; }
iperf_pid="$out/iperf3.pid"
cleanup() {
  [ -n "${srv:-}" ] && kill "$srv" 2>/dev/null
  [ -f "$iperf_pid" ] && kill "$(cat "$iperf_pid")" 2>/dev/null
  "$vm" anchor-server stop >/dev/null 2>&1
  "$vm" net down >/dev/null 2>&1
}
trap cleanup EXIT

# The RESULT line's value of field $2 (or "-").
field() { grep -o " $2=[^ ]*" <<<"$1" | head -1 | cut -d= -f2 | grep . || echo -; }

client() { # tag server-ip
  "$vm" client --server "$2" --iperf --iperf-reverse --iperf-time "$itime" \
    >"$out/client-$1.out" 2>"$out/client-$1.err"
  grep '^RESULT' "$out/client-$1.out" | tail -1
}

# ---- 1. the reference server ------------------------------------------------------------------
echo "starting the anchor server VM (strongSwan + xl2tpd + pppd)..."
"$vm" anchor-server start >"$out/anchor.log" 2>&1 || { echo "FAIL: anchor-server start (see $out/anchor.log)"; exit 1; }
anchor=$(client anchor 192.0.2.2)
echo "anchor:   $anchor"
"$vm" anchor-server stop >>"$out/anchor.log" 2>&1

# ---- 2. roadgate --------------------------------------------------------------------------------
rm -rf "$out/state"
echo testpass123 | "$bin" user --state "$out/state" add testuser >/dev/null || { echo "FAIL: user add"; exit 1; }
printf 'harness-psk-123\n' >"$out/psk"; chmod 600 "$out/psk"
ip netns exec l2tpv-host env RUST_LOG=info "$bin" serve --listen 192.0.2.1 --psk-file "$out/psk" \
  --state "$out/state" >"$out/server.log" 2>&1 &
srv=$!
# iperf3 binds the server's PPP address, which exists once the TUN device is up.
for _ in $(seq 50); do
  ip -n l2tpv-host -4 addr show 2>/dev/null | grep -q ' 10\.77\.0\.1/' && break
  sleep 0.2
done
ip netns exec l2tpv-host iperf3 -s -B 10.77.0.1 -D --pidfile "$iperf_pid" >/dev/null 2>&1 \
  || { echo "FAIL: iperf3 -s -B 10.77.0.1 in l2tpv-host (server log: $out/server.log)"; exit 1; }
roadgate=$(client roadgate 192.0.2.1)
echo "roadgate: $roadgate"
kill -TERM "$srv" 2>/dev/null; wait "$srv" 2>/dev/null; srv=

# ---- figures ------------------------------------------------------------------------------------
{
  printf '%-40s %16s %16s %8s\n' "iperf3 TCP through L2TP/IPsec (${itime} s)" "client->server" "server->client" "status"
  for who in anchor roadgate; do
    r=${!who}
    case $who in
      anchor) label="anchor: strongSwan + xl2tpd + pppd" ;;
      *) label="roadgate serve" ;;
    esac
    printf '%-40s %11s Mbit/s %11s Mbit/s %8s\n' "$label" "$(field "$r" tunnel_mbps)" \
      "$(field "$r" tunnel_rev_mbps)" "$(field "$r" status)"
  done
  echo "(QEMU software emulation on both sides of the client: compare the rows, not the numbers)"
} | tee "$out/results.txt"
[[ $anchor == *"status=PASS"* && $roadgate == *"status=PASS"* ]]
