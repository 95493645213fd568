#!/usr/bin/env bash
# Handshake floods while a tunnel runs at full speed, across network namespaces.
#
#   rg-fl-c1 203.0.113.3 (rg-client, iperf3 through the tunnel) ─┐
#   rg-fl-c2 203.0.113.6 (a new client during the attack)        ├─ 203.0.113.2 rg-fl-srv ── 192.0.2.1 ─ 192.0.2.10 rg-fl-lan (iperf3 -s)
#   rg-fl-a1 203.0.113.4 (bad-KE loop: MM1 MODP-4096, MM3 1-byte KE)│     (roadgate serve)
#   rg-fl-a2 203.0.113.5 (spoofed MM1 from 198.51.100.0/24)       ─┘
#
# In one run: iperf3 from c1 to the LAN host through the tunnel, first quiet (the baseline), then
# while a1 loops the bad-KE attack as fast as it goes and a2 floods spoofed Main Mode message 1s;
# meanwhile c2 connects. Printed: both throughputs and their ratio, c2's connect time, the
# server's memory before and after, the log lines the attack added, the server's flood counters.
# Each throughput is the better of two 5-second iperf3 runs (the machine has two cores, shared with
# the attackers, the client and iperf3). Checked: c2 up within 5 s, memory growth under 128 MiB
# (the half-open table's bound: 8192 entries of about 5.6 KiB; +67 MiB measured), fewer than 200
# log lines, and throughput under attack at least FLOOD_MIN_KEPT percent of the baseline (default
# 50: a regression floor; before the handshake work moved off the forwarding thread the bad-KE
# loop alone left 18%). Issue 14's target of 80% is printed as met or not met, not enforced:
# measured here between 76% and 93% at the default rate. The spoofed flood runs at
# FLOOD_SPOOF_RATE datagrams per second (default 20000; 0: as fast as the attacker's core goes,
# about 130000 here, where the attacker's process takes one of the machine's two cores and the
# tunnel keeps 51-63%: see docs/ipsec.md). Logs: target/netns/flood/. Needs root, /dev/net/tun,
# iproute2, iperf3, python3.
set -uo pipefail
# shellcheck disable=SC2034 # read by common.bash
name=flood
# shellcheck disable=SC2034 # read by common.bash
subdir=/flood
srv_ns=rg-fl-srv; c1=rg-fl-c1; c2=rg-fl-c2; a1=rg-fl-a1; a2=rg-fl-a2; lan=rg-fl-lan
# shellcheck disable=SC2034 # read by common.bash
nss="$srv_ns $c1 $c2 $a1 $a2 $lan"
# shellcheck source=tests/netns/common.bash disable=SC1091
. "$(dirname "$0")/common.bash"
# shellcheck disable=SC2154 # set by common.bash
{ : "$out" "$bin" "$top"; }
need_tunnel_tools
# shellcheck disable=SC2154 # set by need_tunnel_tools
: "$rgclient"
flood=${ROADGATE_FLOOD:-$top/target/release/rg-flood}
min_kept=${FLOOD_MIN_KEPT:-50}
target_kept=80
spoof_rate=${FLOOD_SPOOF_RATE:-20000}
make_namespaces

# ---- topology ----------------------------------------------------------------------------------
ip -n $srv_ns link add br-wan type bridge; ip -n $srv_ns link set br-wan up
ip -n $srv_ns addr add 203.0.113.2/24 dev br-wan
i=0
for host in "$c1:3" "$c2:6" "$a1:4" "$a2:5"; do
  ns=${host%%:*}; last=${host##*:}
  ip link add wan0 netns "$ns" type veth peer name "p$i" netns $srv_ns
  ip -n $srv_ns link set "p$i" master br-wan up
  ip -n "$ns" addr add "203.0.113.$last/24" dev wan0; ip -n "$ns" link set wan0 up
  i=$((i+1))
done
ip link add lan0 netns $srv_ns type veth peer name lan0 netns $lan
ip -n $srv_ns addr add 192.0.2.1/24 dev lan0; ip -n $srv_ns link set lan0 up
ip -n $lan addr add 192.0.2.10/24 dev lan0; ip -n $lan link set lan0 up
ip -n $lan route add default via 192.0.2.1
ip netns exec $srv_ns sysctl -qw net.ipv4.ip_forward=1
# The spoofed sources are routed back to a2 (which drops what it gets), and accepted.
ip -n $srv_ns route add 198.51.100.0/24 via 203.0.113.5
for k in all default br-wan; do ip netns exec $srv_ns sysctl -qw "net.ipv4.conf.$k.rp_filter=0"; done

# ---- server, user, baseline tunnel ------------------------------------------------------------
rnd() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
printf 'fl-%s\n' "$(rnd)" >"$out/psk"; printf 'alice-%s\n' "$(rnd)" >"$out/pw-alice"
chmod 600 "$out/psk" "$out/pw-alice"
log="$out/server.log"
# FLOOD_WORKERS: the server's data-plane workers (default: one per core).
printf '[dataplane]\nworkers = %s\n' "${FLOOD_WORKERS:-0}" >"$out/roadgate.toml"
ip netns exec $srv_ns env RUST_LOG=info "$bin" serve --config "$out/roadgate.toml" --state "$out/state" \
  --listen 203.0.113.2 --psk-file "$out/psk" >"$out/server.out" 2>"$log" &
srv=$!
wait_for "$log" "listening" "$srv" || { echo "FAIL setup: the server did not start ($log)"; exit 1; }
"$bin" user --state "$out/state" add alice <"$out/pw-alice" >/dev/null || { echo "FAIL setup: user add"; exit 1; }
ip netns exec $lan iperf3 -s -D -I "$out/iperf.pid" --logfile "$out/iperf-server.log" || { echo "FAIL setup: iperf3 -s"; exit 1; }

start_client() { # NS LOCAL LOGNAME
  ip netns exec "$1" "$rgclient" --server 203.0.113.2 --local "$2" --psk-file "$out/psk" \
    --user alice --password-file "$out/pw-alice" --route 192.0.2.0/24 >"$out/$3.log" 2>&1 &
  cpid=$!
  pids+=("$cpid")
}
start_client $c1 203.0.113.3 c1
wait_for "$out/c1.log" '^PPP up' "$cpid" 300 || { echo "FAIL setup: c1 not up ($out/c1.log)"; exit 1; }

rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$srv/status"; }

base=$(best $c1 baseline)
rss0=$(rss); lines0=$(wc -l <"$log")
echo "baseline through the tunnel: $base Mbit/s; server RSS ${rss0} KiB"

# ---- the attack --------------------------------------------------------------------------------
ip netns exec $a1 "$flood" badke --server 203.0.113.2 --local 203.0.113.4 --seconds 20 >"$out/a1.log" 2>&1 &
pids+=("$!"); pa1=$!
rate_arg=()
[ "$spoof_rate" != 0 ] && rate_arg=(--rate "$spoof_rate")
ip netns exec $a2 "$flood" spoof --server 203.0.113.2 --sources 198.51.100.0/24 --seconds 20 "${rate_arg[@]}" >"$out/a2.log" 2>&1 &
pids+=("$!"); pa2=$!
sleep 2
under=$(best $c1 attack)
t0=$(date +%s.%N)
start_client $c2 203.0.113.6 c2
if wait_for "$out/c2.log" '^PPP up' "$cpid" 100; then
  t_up=$(python3 -c "import sys; print(round($(date +%s.%N) - $t0, 2))")
else
  t_up=none
fi
wait "$pa1" "$pa2" 2>/dev/null
rss1=$(rss); lines1=$(wc -l <"$log")
"$bin" status --state "$out/state" >"$out/status.txt" 2>&1
kept=$(python3 -c "b=float('$base'); u=float('$under'); print(round(100*u/b) if b > 0 else 0)")
added_lines=$((lines1 - lines0))
growth=$(( (rss1 - rss0) / 1024 ))
echo "under attack: $under Mbit/s = ${kept}% of the baseline of the same run ($base Mbit/s)"
echo "attackers: $(cat "$out/a1.log") / $(cat "$out/a2.log") (spoofed rate asked: $spoof_rate/s, 0: all it can)"
echo "new client during the attack: up after ${t_up} s"
echo "server RSS ${rss0} KiB -> ${rss1} KiB (+${growth} MiB); log lines added during the attack: $added_lines"
grep -E 'ike_(half_open|early|invalid_ke|dh_keys|jobs|malformed)|udp_rcvbuf_drops' "$out/status.txt" | sed 's/^/  /'

if [ "$kept" -ge "$target_kept" ]; then
  echo "issue 14's target: at least ${target_kept}% kept under attack: met (${kept}%)"
else
  echo "issue 14's target: at least ${target_kept}% kept under attack: NOT met (${kept}%)"
fi
if [ "$kept" -ge "$min_kept" ]; then
  ok throughput "${kept}% of the baseline kept under attack (regression floor ${min_kept}%)"
else
  bad throughput "only ${kept}% of the baseline kept under attack (regression floor ${min_kept}%)"
fi
if [ "$t_up" != none ] && python3 -c "import sys; sys.exit(0 if $t_up <= 5 else 1)"; then
  ok connect "a new client connected within 5 s during the attack (${t_up} s)"
else
  bad connect "the new client did not connect within 5 s during the attack ($out/c2.log)"
fi
if [ "$growth" -lt 128 ]; then ok memory "server memory grew by ${growth} MiB"; else bad memory "server memory grew by ${growth} MiB"; fi
if [ "$added_lines" -lt 200 ]; then ok log "$added_lines log lines for the whole attack"; else bad log "$added_lines log lines during the attack"; fi
finish
