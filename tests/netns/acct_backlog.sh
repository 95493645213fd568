#!/usr/bin/env bash
# A tunnel at full speed while 50,000 accounting records wait for a RADIUS server that does not
# answer, across network namespaces.
#
#   rg-ab-c1 203.0.113.3 (rg-client, iperf3) ── 203.0.113.2 rg-ab-srv 192.0.2.1 ── 192.0.2.10 rg-ab-lan (iperf3 -s)
#                                                (roadgate serve; RADIUS accounting to 192.0.2.99,
#                                                 where nothing answers)
#
# Run 1: the server with an empty spool; c1 connects; iperf3 from c1 to the LAN host through the
# tunnel (the baseline: the better of two 5-second runs). The server stops. Then 50,000 copies of
# a record it spooled are added to its accounting spool (pending, due at once), and run 2 starts
# on the same state: the spool thread works through the backlog (every record due, RADIUS never
# answering) while c1 connects again and iperf3 runs again. Printed: both throughputs and their
# ratio, the spool's depth. Checked: the backlog is there and nothing of it is lost (at least
# 50,000 records still pending after run 2), and the throughput with the backlog is at least
# ACCT_MIN_KEPT percent of the baseline (default 80: a regression floor on a 2-core machine where
# the client, iperf3 and the server share the cores); issue 14's target of 90% is printed as met or
# not met. Logs: target/netns/acct_backlog/. Needs root, /dev/net/tun, iproute2, iperf3, python3.
set -uo pipefail
# shellcheck disable=SC2034 # read by common.bash
name=acct_backlog
# shellcheck disable=SC2034 # read by common.bash
subdir=/acct_backlog
srv_ns=rg-ab-srv; c1=rg-ab-c1; lan=rg-ab-lan
# shellcheck disable=SC2034 # read by common.bash
nss="$srv_ns $c1 $lan"
# shellcheck source=tests/netns/common.bash disable=SC1091
. "$(dirname "$0")/common.bash"
# shellcheck disable=SC2154 # set by common.bash
{ : "$out" "$bin" "$top"; }
need_tunnel_tools
# shellcheck disable=SC2154 # set by need_tunnel_tools
: "$rgclient"
min_kept=${ACCT_MIN_KEPT:-80}
target_kept=90
backlog=50000
make_namespaces

# ---- topology ----------------------------------------------------------------------------------
ip link add wan0 netns $c1 type veth peer name wan0 netns $srv_ns
ip -n $srv_ns addr add 203.0.113.2/24 dev wan0; ip -n $srv_ns link set wan0 up
ip -n $c1 addr add 203.0.113.3/24 dev wan0; ip -n $c1 link set wan0 up
ip link add lan0 netns $srv_ns type veth peer name lan0 netns $lan
ip -n $srv_ns addr add 192.0.2.1/24 dev lan0; ip -n $srv_ns link set lan0 up
ip -n $lan addr add 192.0.2.10/24 dev lan0; ip -n $lan link set lan0 up
ip -n $lan route add default via 192.0.2.1
ip netns exec $srv_ns sysctl -qw net.ipv4.ip_forward=1

# ---- configuration: RADIUS accounting to an address where nothing answers ----------------------
rnd() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
printf 'ab-%s\n' "$(rnd)" >"$out/psk"; printf 'alice-%s\n' "$(rnd)" >"$out/pw-alice"
printf 'rs-%s\n' "$(rnd)" >"$out/radius-secret"
chmod 600 "$out/psk" "$out/pw-alice" "$out/radius-secret"
cat >"$out/roadgate.toml" <<TOML
[server]
listen = ["203.0.113.2"]
state_dir = "$out/state"
[auth]
backends = ["local"]
[radius]
timeout_ms = 500
tries = 2
servers = [ { address = "192.0.2.99:1813", secret_file = "$out/radius-secret", role = "acct" } ]
TOML
log="$out/server.log"
start_server() {
  ip netns exec $srv_ns env RUST_LOG=info "$bin" serve --config "$out/roadgate.toml" \
    --psk-file "$out/psk" >>"$out/server.out" 2>>"$log" &
  srv=$!
  wait_for "$log" "listening" "$srv" || { echo "FAIL setup: the server did not start ($log)"; exit 1; }
}
stop_server() {
  kill "$srv" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$srv" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$srv" 2>/dev/null
  srv=
}
start_client() { # LOGNAME
  ip netns exec $c1 "$rgclient" --server 203.0.113.2 --local 203.0.113.3 --psk-file "$out/psk" \
    --user alice --password-file "$out/pw-alice" --route 192.0.2.0/24 >"$out/$1.log" 2>&1 &
  cpid=$!
  pids+=("$cpid")
  wait_for "$out/$1.log" '^PPP up' "$cpid" 300 || { echo "FAIL setup: c1 not up ($out/$1.log)"; exit 1; }
}
stop_client() {
  kill "$cpid" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
}
pending() {
  python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM pending").fetchone()[0])' \
    "$out/state/accounting.db" 2>/dev/null || echo 0
}

# ---- run 1: the baseline -----------------------------------------------------------------------
start_server
"$bin" user --state "$out/state" add alice <"$out/pw-alice" >/dev/null || { echo "FAIL setup: user add"; exit 1; }
ip netns exec $lan iperf3 -s -D -I "$out/iperf.pid" --logfile "$out/iperf-server.log" || { echo "FAIL setup: iperf3 -s"; exit 1; }
start_client c1-run1
base=$(best $c1 baseline)
echo "baseline through the tunnel (empty spool, RADIUS not answering): $base Mbit/s"
stop_client
stop_server
before=$(pending)
if [ "$before" -ge 1 ]; then
  ok spooled "run 1 left $before record(s) pending for the RADIUS server that never answered"
else
  bad spooled "run 1 left no pending record in $out/state/accounting.db"
fi

# ---- the backlog --------------------------------------------------------------------------------
python3 - "$out/state/accounting.db" "$backlog" <<'PY' || { echo "FAIL setup: backlog"; exit 1; }
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n = int(sys.argv[2])
(record,) = db.execute("SELECT record FROM pending ORDER BY id LIMIT 1").fetchone()
db.execute(
    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
    "INSERT INTO pending (record, next_try) SELECT ?, 0 FROM c",
    (n, record),
)
db.commit()
PY
queued=$(pending)
echo "spool before run 2: $queued records pending"

# ---- run 2: the same tunnel while the spool works through the backlog --------------------------
start_server
start_client c1-run2
"$bin" status --state "$out/state" >"$out/status-run2.txt" 2>&1
with=$(best $c1 backlog)
"$bin" status --state "$out/state" >>"$out/status-run2.txt" 2>&1
kept=$(python3 -c "b=float('$base'); u=float('$with'); print(round(100*u/b) if b > 0 else 0)")
echo "with $queued records pending: $with Mbit/s = ${kept}% of the baseline ($base Mbit/s)"
grep -iE 'spool|radius' "$out/status-run2.txt" | sort -u | sed 's/^/  /'
stop_client
stop_server
after=$(pending)
if [ "$after" -ge "$backlog" ]; then
  ok kept-records "$after records still pending after run 2 (of $queued): none lost while RADIUS did not answer"
else
  bad kept-records "only $after records pending after run 2 (of $queued)"
fi
if [ "$kept" -ge "$target_kept" ]; then
  echo "issue 14's target: at least ${target_kept}% kept with the backlog: met (${kept}%)"
else
  echo "issue 14's target: at least ${target_kept}% kept with the backlog: NOT met (${kept}%)"
fi
if [ "$kept" -ge "$min_kept" ]; then
  ok throughput "${kept}% of the baseline with $queued records pending (regression floor ${min_kept}%)"
else
  bad throughput "only ${kept}% of the baseline with $queued records pending (regression floor ${min_kept}%)"
fi
finish
