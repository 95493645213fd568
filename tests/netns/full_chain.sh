#!/usr/bin/env bash
# The whole chain across network namespaces: rg-client (IKEv1 + ESP + L2TP LAC + PPP + a TUN device)
# against `roadgate serve` with its TUN data plane, with the kernel's ping and TCP going through
# the tunnel to a host on the server's LAN.
#
#   rg-fc-c1 198.51.100.2 ─┐
#                          ├─ rg-fc-nat 198.51.100.1 ── NAT ── 203.0.113.1 ─┐
#   rg-fc-c2 198.51.100.3 ─┘                                               ├─ 203.0.113.2 rg-fc-srv ── 192.0.2.1 ─ 192.0.2.10 rg-fc-lan
#                                          rg-fc-c3 203.0.113.3 (no NAT) ──┘   (roadgate serve, TUN rg0 10.77.0.1, ip_forward)
#
# Cases: a. c3 without NAT (raw ESP): ping the LAN host and 10.77.0.1, TCP both ways with checksums;
# b. c1 and c2 behind one NAT at once, different addresses, both reach the LAN; c. c1 killed with
# kill -9 comes back at once (INITIAL-CONTACT clears its old SAs on the server); d. phase-2 and
# phase-1 rekeys under a ping flood (c1 behind NAT and c3 direct at once) with at most a few
# losses; e. a wrong PSK (stage=ike) and a wrong password (stage=auth, 691) with the server's words
# for each; f. TCP MSS clamping both ways; g. the server shutting down: the client says DOWN and
# exits 3. Logs: target/netns/full_chain/. Needs root, /dev/net/tun, iproute2, nft, python3.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${ROADGATE_NETNS_OUT:-$top/target/netns}/full_chain
skip() { echo "SKIP netns/full_chain: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
command -v ip >/dev/null || skip "iproute2 missing"
command -v nft >/dev/null || skip "nft missing (apt-get install nftables)"
command -v ping >/dev/null || skip "ping missing (apt-get install iputils-ping)"
command -v python3 >/dev/null || skip "python3 missing"

bin=${ROADGATE_BIN:-$top/target/release/roadgate}
client=${ROADGATE_CLIENT:-$top/target/release/rg-client}
if [ ! -x "$bin" ] || [ ! -x "$client" ]; then
  (cd "$top" && cargo build --release -p roadgate -p roadgate-tests --bins) || { echo "FAIL: build"; exit 1; }
fi
rm -rf "$out"; mkdir -p "$out"

srv=rg-fc-srv; nat=rg-fc-nat; lan=rg-fc-lan; c1=rg-fc-c1; c2=rg-fc-c2; c3=rg-fc-c3
nss="$srv $nat $lan $c1 $c2 $c3"
pids=()
srv_pid=
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  [ -n "$srv_pid" ] && kill -9 "$srv_pid" 2>/dev/null
  wait 2>/dev/null
  for n in $nss; do ip netns del "$n" 2>/dev/null; done
}
trap cleanup EXIT
cleanup
pids=()

# ---- topology ----------------------------------------------------------------------------------
for n in $nss; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n $srv link add br-wan type bridge; ip -n $srv link set br-wan up
ip -n $srv addr add 203.0.113.2/24 dev br-wan
ip link add wan0 netns $nat type veth peer name p-nat netns $srv
ip link add wan0 netns $c3 type veth peer name p-c3 netns $srv
for p in p-nat p-c3; do ip -n $srv link set "$p" master br-wan up; done
ip -n $nat addr add 203.0.113.1/24 dev wan0; ip -n $nat link set wan0 up
ip -n $c3 addr add 203.0.113.3/24 dev wan0; ip -n $c3 link set wan0 up
# The server's LAN: the host's default route goes back through the server.
ip link add lan0 netns $srv type veth peer name lan0 netns $lan
ip -n $srv addr add 192.0.2.1/24 dev lan0; ip -n $srv link set lan0 up
ip -n $lan addr add 192.0.2.10/24 dev lan0; ip -n $lan link set lan0 up
ip -n $lan route add default via 192.0.2.1
ip netns exec $srv sysctl -qw net.ipv4.ip_forward=1
# Clients behind the NAT.
ip -n $nat link add br-lan type bridge; ip -n $nat link set br-lan up
ip -n $nat addr add 198.51.100.1/24 dev br-lan
i=2
for c in $c1 $c2; do
  ip link add lan0 netns "$c" type veth peer name "p-$c" netns $nat
  ip -n $nat link set "p-$c" master br-lan up
  ip -n "$c" addr add "198.51.100.$i/24" dev lan0; ip -n "$c" link set lan0 up
  ip -n "$c" route add default via 198.51.100.1
  i=$((i+1))
done
ip netns exec $nat sysctl -qw net.ipv4.ip_forward=1
ip netns exec $nat nft -f - <<'NFT'
table ip nat {
  chain post { type nat hook postrouting priority srcnat; oifname "wan0" masquerade; }
}
NFT

# ---- server and users --------------------------------------------------------------------------
rnd() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
printf 'fc-%s\n' "$(rnd)" >"$out/psk"; printf 'wrong-%s\n' "$(rnd)" >"$out/psk-wrong"
printf 'alice-%s\n' "$(rnd)" >"$out/pw-alice"; printf 'bob-%s\n' "$(rnd)" >"$out/pw-bob"
printf 'not-bobs-%s\n' "$(rnd)" >"$out/pw-wrong"
chmod 600 "$out"/psk* "$out"/pw-*
log="$out/server.log"
ip netns exec $srv env RUST_LOG=info "$bin" serve --state "$out/state" --listen 203.0.113.2 \
  --psk-file "$out/psk" --dns 192.0.2.53 >"$out/server.out" 2>"$log" &
srv_pid=$!
for _ in $(seq 100); do
  grep -q "vpnuser / " "$out/server.out" 2>/dev/null && grep -q "listening" "$log" 2>/dev/null && break
  kill -0 "$srv_pid" 2>/dev/null || break
  sleep 0.1
done
sed -n 's/^.*vpnuser \/ \([^ ]*\)$/\1/p' "$out/server.out" | head -1 >"$out/pw-vpnuser"
chmod 600 "$out/pw-vpnuser"
[ -s "$out/pw-vpnuser" ] || { echo "FAIL setup: the server printed no first-user password ($out/server.out, $log)"; exit 1; }
for u in alice bob; do
  "$bin" user --state "$out/state" add "$u" <"$out/pw-$u" >/dev/null || { echo "FAIL setup: user add $u"; exit 1; }
done

pass=0; fail=0; skipped=0
ok()  { echo "PASS $1: $2"; pass=$((pass+1)); }
bad() { echo "FAIL $1: $2 (logs: $out)"; fail=$((fail+1)); }
skp() { echo "SKIP $1: $2"; skipped=$((skipped+1)); }

# ---- 0. roadgate doctor against the running server ------------------------------------------
# The start's checks come from the server (ports bound), the others are made now: forwarding is on
# in the server's namespace, no NAT rule is there (a warning), the public name is the listen
# address and the built-in server certificate names it. Exit 0: nothing is a problem.
ip netns exec $srv "$bin" doctor --state "$out/state" --listen 203.0.113.2 >"$out/doctor.txt" 2>&1
drc=$?
doc_ok=1
for want in "the server is running" "ok: *UDP 203.0.113.2:500 (IKE) and 4500" \
    "ok: *IPv4 forwarding is on" "clients are shown 203.0.113.2 (the listen address)" \
    "ok: *the server certificate names 203.0.113.2"; do
  grep -q -- "$want" "$out/doctor.txt" || { doc_ok=0; echo "  doctor: missing \"$want\""; }
done
grep -q "^problem" "$out/doctor.txt" && doc_ok=0
if [ $doc_ok = 1 ] && [ $drc = 0 ]; then
  ok doctor "roadgate doctor: $(grep -c . "$out/doctor.txt") lines, no problem; the start logged its checks: $(grep -c 'check: ' "$log")"
else
  bad doctor "roadgate doctor (exit $drc): $(tr '\n' '|' <"$out/doctor.txt")"
fi

# start_client NS LOCAL USER LOGNAME [rg-client options...]: starts rg-client in NS, sets $cpid.
start_client() {
  local ns=$1 local_ip=$2 user=$3 name=$4; shift 4
  ip netns exec "$ns" "$client" --server 203.0.113.2 --local "$local_ip" --psk-file "$out/psk" \
    --user "$user" --password-file "$out/pw-$user" --route 192.0.2.0/24 "$@" >"$out/$name.log" 2>&1 &
  cpid=$!
  pids+=("$cpid")
}
# wait_up LOGNAME PID [SECONDS]: until the client's PPP is up (0), or it exits / time runs out (1).
wait_up() {
  local f="$out/$1.log" pid=$2 t=${3:-30} i=0
  while [ "$i" -lt $((t*10)) ]; do
    grep -q '^PPP up' "$f" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1; i=$((i+1))
  done
  return 1
}
# stop_client PID: SIGTERM, then its exit code.
stop_client() {
  kill -TERM "$1" 2>/dev/null
  local rc=0
  wait "$1" || rc=$?
  return $rc
}
field() { sed -n "s/^$2 .*$3=\([^ ]*\).*/\1/p" "$out/$1.log" | head -1; }
# ping_ok NS DST COUNT NAME: ping, keep the output, succeed when nothing was lost.
ping_ok() {
  ip netns exec "$1" ping -n -c "$3" -i 0.2 -W 2 "$2" >"$out/$4.ping" 2>&1 &&
    grep -q " 0% packet loss" "$out/$4.ping"
}
loss_of() { sed -n 's/.*received, \([0-9.]*%\) packet loss.*/\1/p' "$out/$1.ping"; }
rtt_of() { sed -n 's/^rtt .* = [0-9.]*\/\([0-9.]*\)\/.*/\1/p' "$out/$1.ping"; }

# The LAN host sends $out/blob (4 MiB, sha256 $want) over TCP to the client in namespace $1, port
# $2; $3 names the logs. True when every byte arrived.
tcp_down() {
  ip netns exec $lan python3 "$here/fc_tcp.py" serve-send "$2" "$out/blob" >"$out/$3-srv.txt" 2>&1 &
  local lp=$!; pids+=("$lp")
  for _ in $(seq 50); do grep -q listening "$out/$3-srv.txt" && break; sleep 0.1; done
  ip netns exec "$1" timeout 60 python3 "$here/fc_tcp.py" recv 192.0.2.10 "$2" >"$out/$3.txt" 2>&1
  wait "$lp" 2>/dev/null
  grep -q "bytes=4194304 sha256=$want" "$out/$3.txt"
}

# ---- a. c3 without NAT: ping and TCP -----------------------------------------------------------
start_client $c3 203.0.113.3 vpnuser c3 --tun rgc0
c3pid=$cpid
if wait_up c3 "$c3pid"; then
  up_ms=$(field c3 "PPP up" ms); ip3=$(field c3 "PPP up" ip); encap=$(field c3 "IKE up" encap)
  msg="first user vpnuser up in ${up_ms} ms, ip=$ip3 encap=$encap"
  good=1
  [ "$encap" = no ] || { good=0; msg="$msg; expected raw ESP without NAT"; }
  if ping_ok $c3 192.0.2.10 10 a-lan; then msg="$msg; ping LAN 10/10 rtt $(rtt_of a-lan) ms"
  else good=0; msg="$msg; ping LAN lost $(loss_of a-lan)"; fi
  if ping_ok $c3 10.77.0.1 5 a-gw; then msg="$msg; ping 10.77.0.1 5/5"
  else good=0; msg="$msg; ping 10.77.0.1 lost $(loss_of a-gw)"; fi
  head -c $((4*1024*1024)) /dev/urandom >"$out/blob"
  want=$(sha256sum "$out/blob" | cut -d' ' -f1)
  # Down: the LAN host sends 4 MiB to c3.
  if tcp_down $c3 5001 a-down; then
    msg="$msg; TCP LAN->client 4 MiB sha256 ok at $(sed -n 's/.*mbit=\([0-9.]*\).*/\1/p' "$out/a-down.txt") Mbit/s"
  else good=0; msg="$msg; TCP LAN->client: $(tr '\n' ' ' <"$out/a-down.txt")"; fi
  # Up: c3 sends 4 MiB to the LAN host.
  ip netns exec $lan python3 "$here/fc_tcp.py" serve-recv 5002 >"$out/a-up.txt" 2>&1 &
  lp=$!; pids+=("$lp")
  for _ in $(seq 50); do grep -q listening "$out/a-up.txt" && break; sleep 0.1; done
  ip netns exec $c3 timeout 60 python3 "$here/fc_tcp.py" send 192.0.2.10 5002 "$out/blob" >"$out/a-up-cli.txt" 2>&1
  wait "$lp" 2>/dev/null
  if grep -q "bytes=4194304 sha256=$want" "$out/a-up.txt"; then
    msg="$msg; TCP client->LAN 4 MiB sha256 ok at $(sed -n 's/.*mbit=\([0-9.]*\).*/\1/p' "$out/a-up.txt") Mbit/s"
  else good=0; msg="$msg; TCP client->LAN: $(tr '\n' ' ' <"$out/a-up.txt")"; fi
  rm -f "$out/blob"
  rc=0; stop_client "$c3pid" || rc=$?
  if [ "$rc" = 0 ] && grep -q '^CLOSED' "$out/c3.log" && grep -q '^RESULT status=PASS' "$out/c3.log"; then
    msg="$msg; clean stop"
  else good=0; msg="$msg; stop: exit $rc, $(tail -1 "$out/c3.log")"; fi
  [ $good = 1 ] && ok a-direct "$msg" || bad a-direct "$msg"
else
  bad a-direct "not up: $(tail -2 "$out/c3.log" | tr '\n' ' ')"
  kill -9 "$c3pid" 2>/dev/null
fi

# ---- b. two clients behind one NAT -------------------------------------------------------------
start_client $c1 198.51.100.2 alice c1 --tun rgc0
c1pid=$cpid
start_client $c2 198.51.100.3 bob c2 --tun rgc0
c2pid=$cpid
if wait_up c1 "$c1pid" && wait_up c2 "$c2pid"; then
  ip1=$(field c1 "PPP up" ip); ip2=$(field c2 "PPP up" ip)
  msg="c1 ip=$ip1 in $(field c1 "PPP up" ms) ms, c2 ip=$ip2 in $(field c2 "PPP up" ms) ms, encap=$(field c1 "IKE up" encap)/$(field c2 "IKE up" encap)"
  good=1
  [ "$ip1" != "$ip2" ] || { good=0; msg="$msg; same address"; }
  ping_ok $c1 192.0.2.10 10 b-c1 & p1=$!
  ping_ok $c2 192.0.2.10 10 b-c2 & p2=$!
  wait $p1 || { good=0; msg="$msg; c1 ping lost $(loss_of b-c1)"; }
  wait $p2 || { good=0; msg="$msg; c2 ping lost $(loss_of b-c2)"; }
  [ $good = 1 ] && msg="$msg; both pinged the LAN host 10/10 at once"
  grep -q "client_behind_nat=true" "$log" || { good=0; msg="$msg; server did not see a NAT"; }
  # TCP through the NAT (ESP in UDP): the LAN host sends 4 MiB to c1 while c2 is up. The server
  # sends the runs of datagrams to c1 with GSO: its counters show more datagrams than sends.
  head -c $((4*1024*1024)) /dev/urandom >"$out/blob"
  want=$(sha256sum "$out/blob" | cut -d' ' -f1)
  good_tcp=0; tcp_down $c1 5003 b-down && good_tcp=1
  rm -f "$out/blob"
  if [ $good_tcp = 1 ]; then
    msg="$msg; TCP LAN->c1 (ESP in UDP) 4 MiB sha256 ok at $(sed -n 's/.*mbit=\([0-9.]*\).*/\1/p' "$out/b-down.txt") Mbit/s"
  else good=0; msg="$msg; TCP LAN->c1: $(tr '\n' ' ' <"$out/b-down.txt")"; fi
  batching=$(ip netns exec $srv "$bin" status --state "$out/state" --json | python3 -c '
import json, sys
c = dict(json.load(sys.stdin)["counters"])
tx, txc, rx, rxc = c["io_tx_datagrams"], c["io_tx_calls"], c["io_rx_datagrams"], c["io_rx_calls"]
print("ok" if tx > txc > 0 and rx >= rxc > 0 else "bad",
      f"sent {tx} datagrams in {txc} sends ({tx / max(txc, 1):.1f} each), received {rx} in {rxc} recvmmsg ({rx / max(rxc, 1):.1f} each)")
' 2>&1)
  msg="$msg; batching: ${batching#* }"
  [[ $batching == ok* ]] || good=0
  [ $good = 1 ] && ok b-two-behind-nat "$msg" || bad b-two-behind-nat "$msg"
else
  bad b-two-behind-nat "not up: c1: $(tail -1 "$out/c1.log"); c2: $(tail -1 "$out/c2.log")"
fi
stop_client "$c2pid"

# ---- c. c1 killed with kill -9, back at once ---------------------------------------------------
ic_before=$(grep -c "INITIAL-CONTACT: dropping the peer's older SAs" "$log")
if kill -0 "$c1pid" 2>/dev/null; then
  kill -9 "$c1pid"; wait "$c1pid" 2>/dev/null
  start_client $c1 198.51.100.2 alice c1-again --tun rgc0
  c1pid=$cpid
  if wait_up c1-again "$c1pid"; then
    msg="back up in $(field c1-again "PPP up" ms) ms, ip=$(field c1-again "PPP up" ip)"
    good=1
    ic_after=$(grep -c "INITIAL-CONTACT: dropping the peer's older SAs" "$log")
    if [ "$ic_after" -gt "$ic_before" ]; then msg="$msg; server: $(grep "INITIAL-CONTACT: dropping" "$log" | tail -1 | grep -o 'isakmp_sas=[0-9]* ipsec_sas=[0-9]*')"
    else good=0; msg="$msg; no INITIAL-CONTACT line in the server log"; fi
    if ping_ok $c1 192.0.2.10 5 c-c1; then msg="$msg; ping 5/5"
    else good=0; msg="$msg; ping lost $(loss_of c-c1)"; fi
    [ $good = 1 ] && ok c-kill-and-reconnect "$msg" || bad c-kill-and-reconnect "$msg"
  else
    bad c-kill-and-reconnect "not up again: $(tail -2 "$out/c1-again.log" | tr '\n' ' ')"
  fi
  stop_client "$c1pid"
else
  bad c-kill-and-reconnect "c1 was not running"
fi

# ---- d. rekeys under a ping flood --------------------------------------------------------------
# ESP lifetime 20 s (rekeyed at 16 s, 32 s), IKE 40 s (rekeyed at 32 s): a 40 s flood crosses two
# phase-2 rekeys and one phase-1 rekey, on c1 (behind NAT) and c3 (raw ESP) at once.
rk_before=$(grep -c "IPsec SA established.*rekey=true" "$log")
start_client $c1 198.51.100.2 alice d-c1 --tun rgc0 --lifetime-esp 20 --lifetime-ike 40
d1=$cpid
start_client $c3 203.0.113.3 vpnuser d-c3 --tun rgc0 --lifetime-esp 20 --lifetime-ike 40
d3=$cpid
if wait_up d-c1 "$d1" && wait_up d-c3 "$d3"; then
  ip netns exec $c1 ping -n -q -i 0.02 -w 40 -W 1 192.0.2.10 >"$out/d-c1.ping" 2>&1 & f1=$!
  ip netns exec $c3 ping -n -q -i 0.02 -w 40 -W 1 192.0.2.10 >"$out/d-c3.ping" 2>&1 & f3=$!
  wait $f1; wait $f3
  msg=""; good=1
  for n in c1 c3; do
    sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$out/d-$n.ping")
    got=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$out/d-$n.ping")
    lost=$(( ${sent:-0} - ${got:-0} ))
    r1=$(grep -c '^REKEY phase=1' "$out/d-$n.log"); r2=$(grep -c '^REKEY phase=2' "$out/d-$n.log")
    msg="$msg $n: ${got:-0}/${sent:-0} pings answered (lost $lost), rekeys phase2=$r2 phase1=$r1;"
    [ "${sent:-0}" -gt 1000 ] && [ "$lost" -le 5 ] && [ "$r2" -ge 2 ] && [ "$r1" -ge 1 ] || good=0
    kill -0 "$(eval echo \$d${n#c})" 2>/dev/null || { good=0; msg="$msg $n exited;"; }
  done
  rk_after=$(grep -c "IPsec SA established.*rekey=true" "$log")
  msg="$msg server logged $((rk_after - rk_before)) phase-2 rekeys (rekey=true)"
  [ $((rk_after - rk_before)) -ge 4 ] || good=0
  [ $good = 1 ] && ok d-rekey-under-traffic "$msg" || bad d-rekey-under-traffic "$msg"
else
  bad d-rekey-under-traffic "not up: c1: $(tail -1 "$out/d-c1.log"); c3: $(tail -1 "$out/d-c3.log")"
fi
stop_client "$d1"; stop_client "$d3"

# ---- e. wrong PSK, wrong password ---------------------------------------------------------------
ip netns exec $c2 "$client" --server 203.0.113.2 --local 198.51.100.3 --psk-file "$out/psk-wrong" \
  --user bob --password-file "$out/pw-bob" --connect-timeout 20 >"$out/e-psk.log" 2>&1
rc=$?
r=$(grep '^RESULT' "$out/e-psk.log")
if [ $rc = 1 ] && [[ $r == "RESULT status=FAIL stage=ike"* ]] && grep -q "pre-shared key most likely differs" "$log"; then
  ok e-wrong-psk "client: $r; server: $(grep -m1 -o 'authentication failed in Main Mode[^:]*: the client.s pre-shared key most likely differs from the server.s' "$log")"
else
  bad e-wrong-psk "exit $rc; $r"
fi
ip netns exec $c2 "$client" --server 203.0.113.2 --local 198.51.100.3 --psk-file "$out/psk" \
  --user bob --password-file "$out/pw-wrong" --connect-timeout 20 >"$out/e-pw.log" 2>&1
rc=$?
r=$(grep '^RESULT' "$out/e-pw.log")
srv_line=$(grep "authentication refused" "$log" | grep "bob" | tail -1)
if [ $rc = 1 ] && [[ $r == "RESULT status=FAIL stage=auth"*"691"* ]] && [ -n "$srv_line" ]; then
  ok e-wrong-password "client: $r; server: $(echo "$srv_line" | grep -o 'authentication refused.*')"
else
  bad e-wrong-password "exit $rc; $r; server: ${srv_line:-no 'authentication refused' line for bob}"
fi

# ---- f. TCP MSS clamping -----------------------------------------------------------------------
# The SYN is captured where it leaves and where it arrives. f1: the client's TUN has MTU 1500, so
# its SYN offers MSS 1460, and the LAN host must see it lowered; f2: the LAN host (MTU 1500)
# offers 1460, and the client must see it lowered. The PPP MTU is 1400: 1360 at most fits.
# syn_capture NS IF PORT NAME: capture the first SYN to PORT on IF in NS into NAME.pcap.txt.
syn_capture() {
  ip netns exec "$1" timeout 15 tcpdump -n -l -v -c 1 -i "$2" \
    "tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0 and dst port $3" >"$out/$4.pcap.txt" 2>&1 &
  pids+=($!)
}
mss_in() { grep -o 'mss [0-9]*' "$out/$1.pcap.txt" | head -1 | cut -d' ' -f2; }
# syn_through FROM_NS TO_NS TO_IP PORT: one small TCP connection.
syn_through() {
  ip netns exec "$2" python3 "$here/fc_tcp.py" serve-recv "$4" >"$out/f-$4.txt" 2>&1 & local lp=$!
  pids+=("$lp")
  for _ in $(seq 50); do grep -q listening "$out/f-$4.txt" && break; sleep 0.1; done
  echo hello | ip netns exec "$1" timeout 20 python3 "$here/fc_tcp.py" send "$3" "$4" /dev/stdin >/dev/null 2>&1
  wait "$lp" 2>/dev/null
}
if ! command -v tcpdump >/dev/null; then
  skp f-mss "tcpdump missing (tests/install-deps.sh installs it)"
else
  start_client $c3 203.0.113.3 vpnuser f-c3 --tun rgc0 --tun-mtu 1500
  fpid=$cpid
  if wait_up f-c3 "$fpid"; then
    ip3=$(field f-c3 "PPP up" ip)
    syn_capture $c3 rgc0 5003 f1-sent; syn_capture $lan lan0 5003 f1-got
    syn_capture $lan lan0 5004 f2-sent; syn_capture $c3 rgc0 5004 f2-got
    sleep 1
    syn_through $c3 $lan 192.0.2.10 5003
    syn_through $lan $c3 "$ip3" 5004
    sleep 0.5
    s1=$(mss_in f1-sent); g1=$(mss_in f1-got); s2=$(mss_in f2-sent); g2=$(mss_in f2-got)
    msg="client->LAN SYN: mss ${s1:-none} sent, ${g1:-none} arrived; LAN->client SYN: mss ${s2:-none} sent, ${g2:-none} arrived"
    if [ "${s1:-0}" = 1460 ] && [ "${s2:-0}" = 1460 ] && [ "${g1:-9999}" -le 1360 ] && [ "${g2:-9999}" -le 1360 ]; then
      ok f-mss "$msg"
    else
      bad f-mss "$msg"
    fi
  else
    bad f-mss "not up: $(tail -1 "$out/f-c3.log")"
  fi
  stop_client "$fpid"
fi

# ---- g. the server shuts down: the client is told ----------------------------------------------
start_client $c3 203.0.113.3 vpnuser g-c3 --tun rgc0
gpid=$cpid
if wait_up g-c3 "$gpid"; then
  kill -TERM "$srv_pid"; wait "$srv_pid" 2>/dev/null; srv_pid=
  rc=0; for _ in $(seq 100); do kill -0 "$gpid" 2>/dev/null || break; sleep 0.1; done
  wait "$gpid" || rc=$?
  d=$(grep '^DOWN' "$out/g-c3.log")
  if [ $rc = 3 ] && [ -n "$d" ]; then ok g-server-teardown "client: $d, exit 3"
  else bad g-server-teardown "exit $rc; $(tail -2 "$out/g-c3.log" | tr '\n' ' ')"; fi
else
  bad g-server-teardown "not up: $(tail -1 "$out/g-c3.log")"
  kill -TERM "$srv_pid"; wait "$srv_pid" 2>/dev/null; srv_pid=
fi
grep -q "shutting down" "$log" || bad clean-shutdown "no shutdown line in the server log"

echo "netns full_chain: $pass passed, $fail failed, $skipped skipped"
[ $fail = 0 ]
