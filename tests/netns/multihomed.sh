#!/usr/bin/env bash
# A multi-homed server: one interface with two IPv4 and two IPv6 addresses, the server listening on
# the wildcards (0.0.0.0 and ::), and a client that talks to each address in turn.
#
#   rgmh-cli  eth0 203.0.113.3/24 2001:db8::3/64 ──veth── eth0 rgmh-srv (roadgate serve)
#                                                           203.0.113.2/24, 203.0.113.5/24
#                                                           2001:db8::2/64, 2001:db8::5/64
#
# Towards the client the routing table picks 203.0.113.2 and 2001:db8::2 as source addresses, so
# a server that guessed its local address from the routes would answer a client that asked on .5
# from .2. The test client (rg-testclient) fails on any datagram that does not come from the
# address it sent to, so every case checks that IKE replies and ESP leave from the address asked:
# UDP-encapsulated ESP (--force-encap) and raw ESP (protocol 50, --raw-esp), over IPv4 and IPv6
# (where the client also checks the echoed UDP's checksum). The server runs with --test-echo, so
# ESP is checked both ways. Needs root and iproute2; prints SKIP otherwise.
set -uo pipefail
name=multihomed
nss="rgmh-srv rgmh-cli"
subdir=/multihomed
source "$(dirname "$0")/common.bash"
make_namespaces
ip link add eth0 netns rgmh-srv type veth peer name eth0 netns rgmh-cli
ip -n rgmh-srv addr add 203.0.113.2/24 dev eth0
ip -n rgmh-srv addr add 203.0.113.5/24 dev eth0
ip -n rgmh-srv addr add 2001:db8::2/64 dev eth0 nodad
ip -n rgmh-srv addr add 2001:db8::5/64 dev eth0 nodad
ip -n rgmh-cli addr add 203.0.113.3/24 dev eth0
ip -n rgmh-cli addr add 2001:db8::3/64 dev eth0 nodad
for n in $nss; do ip -n "$n" link set eth0 up; done

psk="netns-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$psk" > "$out/psk"; chmod 600 "$out/psk"
log="$out/server.log"
rm -rf "$out/state"
ip netns exec rgmh-srv env RUST_LOG=info "$bin" serve --listen 0.0.0.0 --listen :: \
  --psk-file "$out/psk" --state "$out/state" --test-echo >"$log" 2>&1 &
srv=$!
for _ in $(seq 1 50); do grep -q "listening.*natt=\[::\]:4500" "$log" && break; sleep 0.1; done

# case NAME SERVER-ADDRESS CLIENT-ADDRESS EXPECTED-ENCAP [client options]
case_() {
  local name=$1 server=$2 local=$3 encap=$4; shift 4
  local r
  r=$(ip netns exec rgmh-cli "$client" --server "$server" --local "$local" --psk-file "$out/psk" \
    --count 5 --timeout-s 20 "$@")
  if [[ $r == "RESULT status=PASS"*"encap=$encap echo=5/5 replies_from=$server "* ]]; then
    ok "$name" "$r"
  else
    bad "$name" "$r"
  fi
}

grep -q "raw_esp=true" "$log" || bad raw-esp-socket "the server opened no raw ESP socket"
case_ v4-first-address-udp    203.0.113.2 203.0.113.3 yes --force-encap
case_ v4-second-address-udp   203.0.113.5 203.0.113.3 yes --force-encap
case_ v4-second-address-raw   203.0.113.5 203.0.113.3 no  --raw-esp
case_ v6-first-address-udp    2001:db8::2 2001:db8::3 yes --force-encap
case_ v6-second-address-udp   2001:db8::5 2001:db8::3 yes --force-encap
case_ v6-second-address-raw   2001:db8::5 2001:db8::3 no  --raw-esp --proposal ecp256
case_ v4-first-address-raw    203.0.113.2 203.0.113.3 no  --raw-esp

if grep -q "send failed" "$log"; then
  bad no-send-errors "$(grep -m1 'send failed' "$log")"
else
  ok no-send-errors "the server sent every datagram"
fi
kill -TERM "$srv"; wait "$srv" 2>/dev/null; srv=
grep -q "shutting down" "$log" && ok clean-shutdown "SIGTERM handled" || bad clean-shutdown "no shutdown line"
finish
