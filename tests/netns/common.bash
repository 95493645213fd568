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
