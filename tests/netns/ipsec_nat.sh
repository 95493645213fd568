#!/usr/bin/env bash
# IPsec across network namespaces with a real NAT (nftables masquerade) between clients and server.
#
#   rg-c1 198.51.100.2 ─┐
#                       ├─ br (rg-nat) 198.51.100.1 ── NAT ── 203.0.113.1 ─┬─ 203.0.113.2 rg-srv (roadgate serve)
#   rg-c2 198.51.100.3 ─┘                                                  └─ 203.0.113.3 rg-c3 (no NAT)
#
# Cases: a client without NAT forcing UDP encapsulation; two clients behind the same NAT at once
# (both send from UDP 500/4500, so the NAT must remap one of them); a wrong PSK (refused, with the
# plain-words log line); a client killed with its SAs up that comes back (INITIAL-CONTACT drops the old
# SAs). The server runs with --test-echo, so every case checks ESP in both directions.
# Needs root, iproute2 and nft; prints SKIP otherwise.
set -uo pipefail
name=ipsec_nat
nss="rg-srv rg-nat rg-c1 rg-c2 rg-c3"
source "$(dirname "$0")/common.bash"
command -v nft >/dev/null || skip "nft missing (apt-get install nftables)"
make_namespaces
# WAN: a bridge in rg-nat's peer side is not needed; rg-srv and rg-c3 hang off a bridge in rg-srv.
ip -n rg-srv link add br-wan type bridge; ip -n rg-srv link set br-wan up
ip -n rg-srv addr add 203.0.113.2/24 dev br-wan
ip link add wan-nat netns rg-nat type veth peer name p-nat netns rg-srv
ip link add wan-c3 netns rg-c3 type veth peer name p-c3 netns rg-srv
for p in p-nat p-c3; do ip -n rg-srv link set "$p" master br-wan up; done
ip -n rg-nat addr add 203.0.113.1/24 dev wan-nat; ip -n rg-nat link set wan-nat up
ip -n rg-c3 addr add 203.0.113.3/24 dev wan-c3; ip -n rg-c3 link set wan-c3 up
# LAN behind the NAT.
ip -n rg-nat link add br-lan type bridge; ip -n rg-nat link set br-lan up
ip -n rg-nat addr add 198.51.100.1/24 dev br-lan
i=2
for c in rg-c1 rg-c2; do
  ip link add lan0 netns "$c" type veth peer name "p-$c" netns rg-nat
  ip -n rg-nat link set "p-$c" master br-lan up
  ip -n "$c" addr add "198.51.100.$i/24" dev lan0; ip -n "$c" link set lan0 up
  ip -n "$c" route add default via 198.51.100.1
  i=$((i+1))
done
ip netns exec rg-nat sysctl -qw net.ipv4.ip_forward=1
ip netns exec rg-nat nft -f - <<'NFT'
table ip nat {
  chain post { type nat hook postrouting priority srcnat; oifname "wan-nat" masquerade; }
}
NFT

psk="netns-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$psk" > "$out/psk"; printf 'wrong-%s\n' "$psk" > "$out/psk-wrong"; chmod 600 "$out"/psk*
log="$out/server.log"
ip netns exec rg-srv env RUST_LOG=info "$bin" serve --listen 203.0.113.2 --psk-file "$out/psk" \
  --state "$out/state" --test-echo >"$log" 2>&1 &
srv=$!
sleep 0.5

tc() { local ns=$1 local=$2; shift 2; ip netns exec "$ns" "$client" --server 203.0.113.2 --local "$local" "$@"; }

r=$(tc rg-c3 203.0.113.3 --psk-file "$out/psk" --force-encap --count 5)
[[ $r == "RESULT status=PASS"*"encap=yes echo=5/5"* ]] && ok direct-force-encap "$r" || bad direct-force-encap "$r"

tc rg-c1 198.51.100.2 --psk-file "$out/psk" --count 20 >"$out/c1.txt" & p1=$!
tc rg-c2 198.51.100.3 --psk-file "$out/psk" --count 20 --proposal ecp256 >"$out/c2.txt" & p2=$!
wait $p1; wait $p2
r1=$(cat "$out/c1.txt"); r2=$(cat "$out/c2.txt")
if [[ $r1 == "RESULT status=PASS"*"echo=20/20"* && $r2 == "RESULT status=PASS"*"echo=20/20"* ]]; then
  ok two-clients-one-nat "$r1 | $r2"
else
  bad two-clients-one-nat "$r1 | $r2"
fi
grep -q "client_behind_nat=true" "$log" && ok nat-detected "server saw the clients behind NAT" || bad nat-detected "no client_behind_nat=true"

r=$(tc rg-c1 198.51.100.2 --psk-file "$out/psk-wrong" --count 1 --timeout-s 8)
if [[ $r == "RESULT status=FAIL"* ]] && grep -q "pre-shared key most likely differs" "$log"; then
  ok wrong-psk "client: $r; server: $(grep -m1 -o 'authentication failed[^:]*' "$log")"
else
  bad wrong-psk "$r"
fi

# Kill a client with its SAs up, then let it come back: INITIAL-CONTACT must drop the old SAs.
before=$(grep -c "IPsec SA installed" "$log")
{ ip netns exec rg-c2 timeout -s KILL 3 "$client" --server 203.0.113.2 --local 198.51.100.3 \
  --psk-file "$out/psk" --count 1000000 --timeout-s 60 >/dev/null; } 2>/dev/null
[ "$(grep -c "IPsec SA installed" "$log")" -gt "$before" ] || bad reconnect-initial-contact "the killed client never got its SA"
r=$(tc rg-c2 198.51.100.3 --psk-file "$out/psk" --count 3)
if [[ $r == "RESULT status=PASS"* ]] && grep -q "INITIAL-CONTACT: dropping the peer's older SAs" "$log"; then
  ok reconnect-initial-contact "$r"
else
  bad reconnect-initial-contact "$r"
fi

kill -TERM "$srv"; wait "$srv" 2>/dev/null; srv=
grep -q "shutting down" "$log" && ok clean-shutdown "SIGTERM handled" || bad clean-shutdown "no shutdown line"
finish
