#!/usr/bin/env bash
# The real-socket bench: roadgate serve with its data-plane workers, a load generator in its own
# network namespace, figures printed (not judged). Needs root, /dev/net/tun, iproute2, iperf3 (for
# the shared checks), python3 and openssl.
#
#   rg-sb-c1 203.0.113.3 (rg-client --blast-to) ── 203.0.113.2 rg-sb-srv 192.0.2.1 ── 192.0.2.10 rg-sb-lan (rg-flood udp)
#                                                  (roadgate serve; 198.51.100.0/24 blackholed)
#
# Client to network: rg-client connects (ESP in UDP), then seals rounds of 4096 packets of 1400
# bytes to 198.51.100.1 and sends each round with sendmmsg, for SOCKET_BENCH_SECONDS (default 5);
# the server decrypts them and writes them to its TUN device, where the kernel drops them (a
# blackhole route): the server's ip_to_tun counter says how many it forwarded.
# Network to client: rg-flood sends 1400-byte UDP datagrams with sendmmsg from the LAN host to the
# client's tunnel address; the server reads them from its TUN device, seals them and sends them to
# the client (which keeps up with what it can): ip_from_tun says how many.
# Printed for each direction: packets/s and Gbit/s of inner IP over the run, the server's CPU time
# (all its threads) and packets per second of server CPU (per server core), and openssl speed for
# the negotiated cipher and MAC on one core in the same run. SOCKET_BENCH_WORKERS sets
# [dataplane] workers (default 0: one per core). The machine's cores are shared by the generator,
# the client and the server: the per-core figure is the one to compare.
set -uo pipefail
# shellcheck disable=SC2034 # read by common.bash
name=socket_bench
# shellcheck disable=SC2034 # read by common.bash
subdir=/socket_bench
srv_ns=rg-sb-srv; c1=rg-sb-c1; lan=rg-sb-lan
# shellcheck disable=SC2034 # read by common.bash
nss="$srv_ns $c1 $lan"
# shellcheck source=tests/netns/common.bash disable=SC1091
. "$(dirname "$0")/../netns/common.bash"
# shellcheck disable=SC2154 # set by common.bash
{ : "$out" "$bin" "$top"; }
need_tunnel_tools
# shellcheck disable=SC2154 # set by need_tunnel_tools
: "$rgclient"
command -v openssl >/dev/null || skip "openssl missing"
flood=${ROADGATE_FLOOD:-$top/target/release/rg-flood}
seconds=${SOCKET_BENCH_SECONDS:-5}
workers=${SOCKET_BENCH_WORKERS:-0}
make_namespaces

ip link add wan0 netns $c1 type veth peer name wan0 netns $srv_ns
ip -n $srv_ns addr add 203.0.113.2/24 dev wan0; ip -n $srv_ns link set wan0 up
ip -n $c1 addr add 203.0.113.3/24 dev wan0; ip -n $c1 link set wan0 up
ip link add lan0 netns $srv_ns type veth peer name lan0 netns $lan
ip -n $srv_ns addr add 192.0.2.1/24 dev lan0; ip -n $srv_ns link set lan0 up
ip -n $lan addr add 192.0.2.10/24 dev lan0; ip -n $lan link set lan0 up
ip -n $lan route add default via 192.0.2.1
ip -n $srv_ns route add blackhole 198.51.100.0/24
ip netns exec $srv_ns sysctl -qw net.ipv4.ip_forward=1

rnd() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
printf 'sb-%s\n' "$(rnd)" >"$out/psk"; printf 'alice-%s\n' "$(rnd)" >"$out/pw-alice"
chmod 600 "$out/psk" "$out/pw-alice"
printf '[dataplane]\nworkers = %s\n' "$workers" >"$out/roadgate.toml"
log="$out/server.log"
ip netns exec $srv_ns env RUST_LOG=info "$bin" serve --config "$out/roadgate.toml" --state "$out/state" \
  --listen 203.0.113.2 --psk-file "$out/psk" >"$out/server.out" 2>"$log" &
srv=$!
wait_for "$log" "listening" "$srv" || { echo "FAIL setup: the server did not start ($log)"; exit 1; }
"$bin" user --state "$out/state" add alice <"$out/pw-alice" >/dev/null || { echo "FAIL setup: user add"; exit 1; }

tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$srv/stat"; }
counter() { "$bin" status --state "$out/state" 2>/dev/null | awk -v k="$1:" '$1 == k {print $2}'; }
# report NAME PACKETS WALL_SECONDS CPU_TICKS
report() {
  python3 - "$@" "$tck" <<'PY'
import sys
name, n, wall, ticks, tck = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cpu = ticks / tck
gbit = lambda pps: pps * 1400 * 8 / 1e9
pps = n / wall if wall > 0 else 0
per_core = n / cpu if cpu > 0 else 0
print(f"  {name}: {n} packets in {wall:.2f} s = {pps:,.0f} packets/s, {gbit(pps):.2f} Gbit/s; "
      f"server CPU {cpu:.2f} s -> {per_core:,.0f} packets/s per server core ({gbit(per_core):.2f} Gbit/s)")
PY
}

echo "socket bench: roadgate serve with [dataplane] workers = $workers ($(nproc) cores), ${seconds} s a direction, 1400-byte packets"

# ---- client to network --------------------------------------------------------------------------
ip netns exec $c1 "$rgclient" --server 203.0.113.2 --local 203.0.113.3 --psk-file "$out/psk" \
  --user alice --password-file "$out/pw-alice" --force-encap --no-tun \
  --blast-to 198.51.100.1 --blast-seconds "$seconds" >"$out/blast.log" 2>&1 &
bpid=$!
pids+=("$bpid")
wait_for "$out/blast.log" '^PPP up' "$bpid" 300 || { echo "FAIL setup: the client is not up ($out/blast.log)"; exit 1; }
esp=$("$bin" sessions --state "$out/state" --json 2>/dev/null \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["sessions"][0]["esp"])' 2>/dev/null)
n0=$(counter ip_to_tun); c0=$(cpu); t0=$(date +%s.%N)
wait_for "$out/blast.log" '^BLAST' "$bpid" $(( (seconds + 30) * 10 )) || { echo "FAIL: no BLAST line ($out/blast.log)"; exit 1; }
n1=$(counter ip_to_tun); c1t=$(cpu); t1=$(date +%s.%N)
wait "$bpid" 2>/dev/null
echo "  ESP negotiated: ${esp:-unknown}; generator: $(grep '^BLAST' "$out/blast.log")"
report "client -> network (ESP in, TUN out)" $((n1 - n0)) "$(python3 -c "print($t1 - $t0)")" $((c1t - c0))

# ---- network to client --------------------------------------------------------------------------
ip netns exec $c1 "$rgclient" --server 203.0.113.2 --local 203.0.113.3 --psk-file "$out/psk" \
  --user alice --password-file "$out/pw-alice" --force-encap --no-tun --hold $((seconds + 20)) >"$out/sink.log" 2>&1 &
spid=$!
pids+=("$spid")
wait_for "$out/sink.log" '^PPP up' "$spid" 300 || { echo "FAIL setup: the client is not up ($out/sink.log)"; exit 1; }
addr=$(sed -n 's/^PPP up.* ip=\([0-9.]*\).*/\1/p' "$out/sink.log" | head -1)
n0=$(counter ip_from_tun); c0=$(cpu); t0=$(date +%s.%N)
ip netns exec $lan "$flood" udp --server "$addr" --local 192.0.2.10 --seconds "$seconds" >"$out/udp.log" 2>&1
n1=$(counter ip_from_tun); c1t=$(cpu); t1=$(date +%s.%N)
echo "  generator: $(cat "$out/udp.log")"
report "network -> client (TUN in, ESP out)" $((n1 - n0)) "$(python3 -c "print($t1 - $t0)")" $((c1t - c0))
kill "$spid" 2>/dev/null

# ---- the crypto limit on one core, same run -------------------------------------------------------
rate() { openssl speed -mr -seconds 2 -bytes 1024 "$@" 2>/dev/null | awk -F: '/^\+F:/ {v=$NF} END {print v}'; }
case "$esp" in
  AES-GCM*-128*) cipher=aes-128-gcm ;;
  AES-GCM*) cipher=aes-256-gcm ;;
  AES-CBC-128*) cipher=aes-128-cbc ;;
  AES-CBC-192*) cipher=aes-192-cbc ;;
  *) cipher=aes-256-cbc ;;
esac
case "$esp" in
  *SHA1*) mac=sha1 ;;
  *SHA2-256*) mac=sha256 ;;
  *SHA2-384*) mac=sha384 ;;
  *SHA2-512*) mac=sha512 ;;
  *) mac= ;;
esac
enc=$(rate -evp "$cipher"); dec=$(rate -evp "$cipher" -decrypt); hmac=
[ -n "$mac" ] && hmac=$(rate -hmac "$mac")
# Cipher and MAC together, as each ESP packet needs both: 1 / (1/cipher + 1/mac), in Gbit/s.
python3 - "$cipher" "$mac" "$enc" "$dec" "${hmac:-0}" <<'PY'
import sys
cipher, mac, enc, dec, h = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
both = lambda c: 8 / (1 / c + (1 / h if h else 0)) / 1e9 if c else 0
print(f"  crypto limit on one core (openssl speed -evp {cipher}" + (f" and -hmac {mac}" if mac else "")
      + f", 1024-byte blocks, same run): decryption side {both(dec):.2f} Gbit/s, encryption side {both(enc):.2f} Gbit/s")
PY
grep -E '^(udp_rcvbuf_drops|data_to_control_dropped|dataplane_workers|esp_replayed|esp_auth_failed):' \
  <("$bin" status --state "$out/state" 2>/dev/null) | sed 's/^/  /'
