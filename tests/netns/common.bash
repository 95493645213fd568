# Shared set-up of the network-namespace tests, sourced after `name` (for SKIP and tally lines)
# and `nss` (the namespaces the test makes) are set; `subdir` (optional) names the test's own
# output folder under target/netns. Skips (exit 0) without root or iproute2; builds the server
# and the test client unless binaries are given; `make_namespaces` makes the namespaces afresh
# (lo up), and they are removed, and a server left in $srv killed, on exit. `ok` and `bad` count
# the cases (`bad` names $log), `finish` prints the tally and fails if any case did. (Named
# .bash so that tests/run.sh, which runs tests/netns/*.sh, does not run it on its own.)
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${ROADGATE_NETNS_OUT:-$top/target/netns}${subdir:-}
mkdir -p "$out"
skip() { echo "SKIP netns/$name: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root"
command -v ip >/dev/null || skip "iproute2 missing"

bin=${ROADGATE_BIN:-$top/target/release/roadgate}
client=${ROADGATE_TESTCLIENT:-$top/target/release/rg-testclient}
if [ ! -x "$bin" ] || [ ! -x "$client" ]; then
  (cd "$top" && cargo build --release -p roadgate -p roadgate-tests --bins) || { echo "FAIL: build"; exit 1; }
fi

cleanup() {
  [ -n "${srv:-}" ] && kill "$srv" 2>/dev/null
  for n in $nss; do ip netns del "$n" 2>/dev/null; done
}
trap cleanup EXIT
make_namespaces() {
  cleanup
  for n in $nss; do ip netns add "$n"; ip -n "$n" link set lo up; done
}

# wait_for FILE PATTERN PID [TENTHS]: until FILE has a line matching PATTERN (0), or PID has
# exited or TENTHS tenths of a second (default 150) have passed (1).
wait_for() {
  local i
  for ((i = 0; i < ${4:-150}; i++)); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  grep -q -- "$2" "$1" 2>/dev/null
}

pass=0; fail=0
ok()  { echo "PASS $1: $2"; pass=$((pass+1)); }
bad() { echo "FAIL $1: $2 (server log: $log)"; fail=$((fail+1)); }
finish() { echo "netns $name: $pass passed, $fail failed"; [ "$fail" = 0 ]; }

# ---- throughput tests (flood.sh, acct_backlog.sh) ----------------------------------------------
# need_tunnel_tools: skips without /dev/net/tun, iperf3 or python3; sets rgclient (the VPN client
# with a TUN device; built if missing); empties $out; kills the processes of `pids` and the iperf3
# server of $out/iperf.pid on exit, after the usual cleanup.
need_tunnel_tools() {
  [ -c /dev/net/tun ] || skip "no /dev/net/tun"
  command -v iperf3 >/dev/null || skip "iperf3 missing (apt-get install iperf3)"
  command -v python3 >/dev/null || skip "python3 missing"
  rgclient=${ROADGATE_CLIENT:-$top/target/release/rg-client}
  if [ ! -x "$rgclient" ] || [ ! -x "${ROADGATE_FLOOD:-$top/target/release/rg-flood}" ]; then
    (cd "$top" && cargo build --release -p roadgate-tests --bins) || { echo "FAIL: build"; exit 1; }
  fi
  rm -rf "$out"; mkdir -p "$out"
  pids=()
  trap cleanup_tunnel EXIT
}
cleanup_tunnel() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  [ -s "$out/iperf.pid" ] && kill "$(cat "$out/iperf.pid")" 2>/dev/null
  cleanup
}
# iperf NS NAME: 5 s of TCP from namespace NS to the LAN host 192.0.2.10 through the tunnel;
# prints Mbit/s (0 when iperf3 failed).
iperf() {
  ip netns exec "$1" iperf3 -c 192.0.2.10 -t 5 -J >"$out/iperf-$2.json" 2>&1
  python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e6, 1))' \
    "$out/iperf-$2.json" 2>/dev/null || echo 0
}
# best NS NAME: the better of two such runs (the machine's cores are shared with the client and
# iperf3).
best() {
  local a b
  a=$(iperf "$1" "$2-1"); b=$(iperf "$1" "$2-2")
  python3 -c "print(max(float('$a'), float('$b')))"
}
