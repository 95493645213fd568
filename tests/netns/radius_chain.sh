#!/usr/bin/env bash
# AAA through the whole chain with real parts: rg-client (IKEv1 + ESP + L2TP + PPP + a TUN device)
# against `roadgate serve`, which authenticates against two real FreeRADIUS 3 servers (Debian's
# freeradius, started from a generated configuration in target/netns/radius_chain), sends them
# accounting, and takes Disconnect and CoA requests from radclient; PAM with a real system user.
#
#   rg-ra-c1 203.0.113.3 ─┐
#                         ├─ 203.0.113.2 rg-ra-srv ── 192.0.2.1 ─ 192.0.2.10 rg-ra-lan
#   rg-ra-c2 203.0.113.4 ─┘   (roadgate serve, TUN rg0 10.77.0.1; FreeRADIUS A and B on its 127.0.0.1)
#
# Cases: pap (Framed-IP-Address and MS-Primary-DNS-Server honoured; the ping's exact octets in the
# Stop), chap (Class echoed in Start and Stop), framed-pool (the address from the pool Framed-Pool
# names), mschapv2 (accept, and a wrong password gives 691), interim (Interim-Updates at
# Acct-Interim-Interval), session-timeout (Session-Timeout from RADIUS ends the session with that
# cause), disconnect and coa (radclient: Disconnect-Request → ACK and
# Admin-Reset; CoA-Request with Session-Timeout → CoA-ACK and the session ends; an unknown session
# → NAK 503), failover (A killed: B answers), outage (both FreeRADIUS down for a while, roadgate
# killed with -9 meanwhile, both restarted: every Start has exactly one Stop, none twice), pam (a
# system user made by the test, PAP through PAM, wrong password refused).
# Needs root, /dev/net/tun, iproute2, python3, freeradius and freeradius-utils (radclient).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${ROADGATE_NETNS_OUT:-$top/target/netns}/radius_chain
skip() { echo "SKIP netns/radius_chain: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
command -v ip >/dev/null || skip "iproute2 missing"
command -v ping >/dev/null || skip "ping missing (apt-get install iputils-ping)"
command -v python3 >/dev/null || skip "python3 missing"
fr=$(command -v freeradius || true)
[ -n "$fr" ] || skip "freeradius missing (apt-get install freeradius)"
command -v radclient >/dev/null || skip "radclient missing (apt-get install freeradius-utils)"

bin=${ROADGATE_BIN:-$top/target/release/roadgate}
client=${ROADGATE_CLIENT:-$top/target/release/rg-client}
frconf=${ROADGATE_FRCONF:-$top/target/release/rg-freeradius}
if [ ! -x "$bin" ] || [ ! -x "$client" ] || [ ! -x "$frconf" ]; then
  (cd "$top" && cargo build --release -p roadgate -p roadgate-tests --bins) || { echo "FAIL: build"; exit 1; }
fi
rm -rf "$out"; mkdir -p "$out"; chmod 700 "$out"

srv=rg-ra-srv; lan=rg-ra-lan; c1=rg-ra-c1; c2=rg-ra-c2
nss="$srv $lan $c1 $c2"
pids=()
srv_pid=
fra_pid=
frb_pid=
pamuser=rgpam$$
pamservice=roadgate-nstest-$$
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in "$srv_pid" "$fra_pid" "$frb_pid"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  for n in $nss; do ip netns del "$n" 2>/dev/null; done
  userdel "$pamuser" 2>/dev/null
  rm -f "/etc/pam.d/$pamservice"
}
trap cleanup EXIT
cleanup
pids=()

pass=0; fail=0
log="$out/server.log"
ok()  { echo "PASS $1: $2"; pass=$((pass+1)); }
bad() { echo "FAIL $1: $2 (logs: $out)"; fail=$((fail+1)); }

# ---- topology ----------------------------------------------------------------------------------
for n in $nss; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n $srv link add br-wan type bridge; ip -n $srv link set br-wan up
ip -n $srv addr add 203.0.113.2/24 dev br-wan
i=3
for c in $c1 $c2; do
  ip link add wan0 netns "$c" type veth peer name "p-$c" netns $srv
  ip -n $srv link set "p-$c" master br-wan up
  ip -n "$c" addr add "203.0.113.$i/24" dev wan0; ip -n "$c" link set wan0 up
  i=$((i+1))
done
ip link add lan0 netns $srv type veth peer name lan0 netns $lan
ip -n $srv addr add 192.0.2.1/24 dev lan0; ip -n $srv link set lan0 up
ip -n $lan addr add 192.0.2.10/24 dev lan0; ip -n $lan link set lan0 up
ip -n $lan route add default via 192.0.2.1
ip netns exec $srv sysctl -qw net.ipv4.ip_forward=1

# ---- FreeRADIUS A and B ------------------------------------------------------------------------
rnd() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
printf 'rs-%s\n' "$(rnd)" >"$out/radius-secret"
printf 'da-%s\n' "$(rnd)" >"$out/dynauth-secret"
printf 'ra-%s\n' "$(rnd)" >"$out/psk"
chmod 600 "$out"/*secret "$out/psk"
cat >"$out/users" <<'USERS'
rpap	Cleartext-Password := "pap-secret-1"
	Framed-IP-Address = 10.77.0.50,
	MS-Primary-DNS-Server = 192.0.2.99

rchap	Cleartext-Password := "chap-secret-2"
	Class = "bill-42"

rms	Cleartext-Password := "ms-secret-3"
	Acct-Interim-Interval = 2

rshort	Cleartext-Password := "short-secret-4"
	Session-Timeout = 6

rcoa	Cleartext-Password := "coa-secret-5"

rpool	Cleartext-Password := "pool-secret-6"
	Framed-Pool = "guests"
USERS
# $1 name, $2 auth port, $3 acct port; starts FreeRADIUS in the server's namespace.
start_fr() {
  local dir="$out/fr-$1"
  mkdir -p "$dir"
  if [ ! -f "$dir/radiusd.conf" ]; then
    "$frconf" --dir "$dir" --auth-port "$2" --acct-port "$3" --secret-file "$out/radius-secret" \
      --users "$out/users" >"$dir/conf.out" 2>&1 || { echo "FAIL setup: FreeRADIUS $1 config: $(cat "$dir/conf.out")"; exit 1; }
  fi
  ip netns exec $srv "$fr" -X -d "$dir" >>"$dir/out.log" 2>&1 &
  local p=$!
  for _ in $(seq 100); do grep -q "Ready to process requests" "$dir/out.log" 2>/dev/null && break; sleep 0.1; done
  grep -q "Ready to process requests" "$dir/out.log" || { echo "FAIL setup: FreeRADIUS $1 did not start: $(tail -5 "$dir/out.log")"; exit 1; }
  eval "fr${1}_pid=$p"
}
start_fr a 18120 18130
start_fr b 18121 18131
# Every detail record of both servers as one line each: "Status Session-Id key=value...".
records() {
  python3 - "$out/fr-a/acct/detail" "$out/fr-b/acct/detail" <<'PY'
import sys, os
for path in sys.argv[1:]:
    if not os.path.exists(path):
        continue
    rec = {}
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line.strip():
            if rec:
                print(rec.get("Acct-Status-Type", "?"), rec.get("Acct-Session-Id", "?"),
                      " ".join(f"{k}={v}" for k, v in rec.items()))
            rec = {}
            continue
        if line.startswith(("\t", " ")) and "=" in line:
            k, v = line.strip().split(" = ", 1)
            rec[k] = v.strip('"')
    if rec:
        print(rec.get("Acct-Status-Type", "?"), rec.get("Acct-Session-Id", "?"),
              " ".join(f"{k}={v}" for k, v in rec.items()))
PY
}
# The value of attribute $2 in the record line $1.
attr() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -1; }

# ---- PAM: a system user and a service file -----------------------------------------------------
useradd -M -s /usr/sbin/nologin "$pamuser" || { echo "FAIL setup: useradd"; exit 1; }
printf 'pam-pw-%s\n' "$(rnd)" >"$out/pw-pam"; chmod 600 "$out/pw-pam"
echo "$pamuser:$(cat "$out/pw-pam")" | chpasswd
cat >"/etc/pam.d/$pamservice" <<'PAM'
auth    required pam_unix.so
account required pam_unix.so
PAM

# ---- roadgate ----------------------------------------------------------------------------------
cat >"$out/roadgate.toml" <<TOML
[server]
state_dir = "$out/state"
listen = ["203.0.113.2"]
[ppp]
local_address = "10.77.0.1"
pool = ["10.77.0.10-10.77.0.99"]
pools = { guests = ["10.78.0.10-10.78.0.20"] }
dns = ["192.0.2.53"]
auth = ["mschapv2", "chap", "pap"]
[auth]
# PAM first: it knows the system user; for anyone else it says "unknown user" and RADIUS decides.
backends = ["pam", "radius"]
pam_service = "$pamservice"
[radius]
timeout_ms = 700
tries = 2
dead_time_s = 300
nas_identifier = "roadgate-netns"
servers = [
  { address = "127.0.0.1:18120", secret_file = "$out/radius-secret", role = "auth" },
  { address = "127.0.0.1:18121", secret_file = "$out/radius-secret", role = "auth" },
  { address = "127.0.0.1:18130", secret_file = "$out/radius-secret", role = "acct" },
  { address = "127.0.0.1:18131", secret_file = "$out/radius-secret", role = "acct" },
]
[accounting]
interim_interval = "1h"
# Acct-Interim-Interval 2 from the users file: allowed below RFC 2869's 60 s for the test.
min_interim_interval = "1s"
[dynauth]
listen = "127.0.0.1"
port = 3799
clients = [ { address = "127.0.0.1", secret_file = "$out/dynauth-secret" } ]
TOML
start_server() {
  ip netns exec $srv env RUST_LOG=info "$bin" serve --config "$out/roadgate.toml" \
    --psk-file "$out/psk" >>"$out/server.out" 2>>"$log" &
  srv_pid=$!
  for _ in $(seq 100); do
    grep -q "listening" "$log" 2>/dev/null && break
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
}
"$bin" check-config --config "$out/roadgate.toml" --psk-file "$out/psk" >"$out/check-config.txt" 2>&1 \
  || { echo "FAIL setup: check-config: $(cat "$out/check-config.txt")"; exit 1; }
start_server
kill -0 "$srv_pid" 2>/dev/null || { echo "FAIL setup: server did not start: $(tail -5 "$log")"; exit 1; }
# roadgate doctor probes each RADIUS server with Status-Server (RFC 5997): both FreeRADIUS
# instances answer on their authentication and accounting ports, and sign their answers.
ip netns exec $srv "$bin" doctor --config "$out/roadgate.toml" --psk-file "$out/psk" >"$out/doctor.txt" 2>&1
doctor_auth=$(grep -c "RADIUS 127.0.0.1:1812[01]: answers" "$out/doctor.txt")
doctor_acct=$(grep -c "RADIUS 127.0.0.1:1813[01]: answers" "$out/doctor.txt")

# $1 namespace, $2 local address, $3 user, $4 password file, $5 log name, then rg-client flags.
start_client() {
  local ns=$1 addr=$2 user=$3 pw=$4 name=$5; shift 5
  ip netns exec "$ns" "$client" --server 203.0.113.2 --local "$addr" --psk-file "$out/psk" \
    --user "$user" --password-file "$pw" --route 192.0.2.0/24 --tun rgc0 "$@" >"$out/$name.log" 2>&1 &
  cpid=$!; pids+=("$cpid")
}
wait_up() {
  for _ in $(seq 150); do
    grep -q '^PPP up' "$out/$1.log" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
field() { sed -n "s/^$2 .*\\b$3=\\([^ ]*\\).*/\\1/p" "$out/$1.log" | head -1; }
stop_client() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
pw() { printf '%s\n' "$2" >"$out/pw-$1"; chmod 600 "$out/pw-$1"; echo "$out/pw-$1"; }
# Waits up to $2 s for a detail record matching the extended regex $1; prints it.
wait_record() {
  local r
  for _ in $(seq $(($2 * 10))); do
    r=$(records | grep -E "$1" | tail -1)
    [ -n "$r" ] && { echo "$r"; return 0; }
    sleep 0.1
  done
  return 1
}

# ---- pap: Framed-IP-Address, DNS, exact octets -------------------------------------------------
start_client $c1 203.0.113.3 rpap "$(pw rpap pap-secret-1)" pap --pap
p=$cpid
if wait_up pap $p; then
  ip=$(field pap "PPP up" ip); dns=$(field pap "PPP up" dns)
  msg="ip=$ip dns=$dns"; good=1
  [ "$ip" = 10.77.0.50 ] || { good=0; msg="$msg (want Framed-IP-Address 10.77.0.50)"; }
  [[ $dns == 192.0.2.99* ]] || { good=0; msg="$msg (want MS-Primary-DNS-Server 192.0.2.99)"; }
  # 10 echo requests of 100 data bytes: 10 IP packets of 128 bytes each way.
  ip netns exec $c1 ping -c 10 -i 0.2 -s 100 -W 2 192.0.2.10 >"$out/pap.ping" 2>&1 || { good=0; msg="$msg; ping failed"; }
  start=$(wait_record "^Start .*User-Name=rpap" 10) || { good=0; msg="$msg; no Start"; }
  stop_client $p
  if stop=$(wait_record "^Stop .*User-Name=rpap" 10); then
    sid=$(attr "$stop" Acct-Session-Id)
    in=$(attr "$stop" Acct-Input-Octets); outo=$(attr "$stop" Acct-Output-Octets)
    inp=$(attr "$stop" Acct-Input-Packets); cause=$(attr "$stop" Acct-Terminate-Cause)
    msg="$msg; Stop $sid in=$in/$inp out=$outo cause=$cause framed=$(attr "$stop" Framed-IP-Address)"
    [ "$in" = 1280 ] && [ "$outo" = 1280 ] && [ "$inp" = 10 ] || { good=0; msg="$msg (want 1280 octets, 10 packets each way)"; }
    [ "$cause" = User-Request ] || { good=0; msg="$msg (want User-Request)"; }
    [ "$(attr "$start" Acct-Session-Id)" = "$sid" ] || { good=0; msg="$msg (Start has another session id)"; }
  else good=0; msg="$msg; no Stop"; fi
  [ $good = 1 ] && ok pap "$msg" || bad pap "$msg"
else bad pap "not up: $(tail -2 "$out/pap.log" | tr '\n' ' ')"; fi

# ---- chap: Class echoed ------------------------------------------------------------------------
start_client $c1 203.0.113.3 rchap "$(pw rchap chap-secret-2)" chap --chap
p=$cpid
if wait_up chap $p; then
  stop_client $p
  if stop=$(wait_record "^Stop .*User-Name=rchap" 10) && start=$(wait_record "^Start .*User-Name=rchap" 1); then
    # FreeRADIUS writes Class as hex: "bill-42" = 0x62696c6c2d3432.
    if [ "$(attr "$start" Class)" = 0x62696c6c2d3432 ] && [ "$(attr "$stop" Class)" = 0x62696c6c2d3432 ]; then
      ok chap "CHAP-MD5 through RADIUS; Class bill-42 in Start and Stop"
    else bad chap "Class: Start $(attr "$start" Class), Stop $(attr "$stop" Class)"; fi
  else bad chap "no Start/Stop for rchap"; fi
else bad chap "not up: $(tail -2 "$out/chap.log" | tr '\n' ' ')"; fi

# ---- framed-pool: the address from the named pool, routed like the main one ---------------------
start_client $c1 203.0.113.3 rpool "$(pw rpool pool-secret-6)" pool --pap
p=$cpid
if wait_up pool $p; then
  ip=$(field pool "PPP up" ip)
  if [ "$ip" = 10.78.0.10 ] && ip netns exec $c1 ping -c 3 -i 0.2 -W 2 192.0.2.10 >"$out/pool.ping" 2>&1; then
    ok framed-pool "Framed-Pool guests: ip=$ip, the LAN host answers through it"
  else bad framed-pool "ip=$ip (want 10.78.0.10 from ppp.pools.guests); ping: $(tail -1 "$out/pool.ping" 2>/dev/null)"; fi
  stop_client $p
else bad framed-pool "not up: $(tail -2 "$out/pool.log" | tr '\n' ' ')"; fi

# ---- mschapv2 and interim; a wrong password -----------------------------------------------------
start_client $c1 203.0.113.3 rms "$(pw rms ms-secret-3)" ms
p=$cpid
if wait_up ms $p; then
  sleep 5
  n=$(records | grep -cE "^Interim-Update .*User-Name=rms")
  stop_client $p
  [ "$n" -ge 1 ] && ok mschapv2-interim "MS-CHAPv2 through RADIUS (MS-CHAP2-Success checked by the client); $n Interim-Updates in 5 s at Acct-Interim-Interval 2" \
    || bad mschapv2-interim "no Interim-Update in 5 s"
else bad mschapv2-interim "not up: $(tail -2 "$out/ms.log" | tr '\n' ' ')"; fi
start_client $c1 203.0.113.3 rms "$(pw rms-wrong not-the-password)" ms-wrong
p=$cpid; wait $p; rc=$?
r=$(grep '^RESULT' "$out/ms-wrong.log")
[ $rc = 1 ] && [[ $r == *"stage=auth"*"E=691"*"M=Authentication rejected"* ]] && ok mschapv2-wrong "FreeRADIUS's MS-CHAP-Error text reached the client: $r" || bad mschapv2-wrong "exit $rc: $r"

# ---- roadgate doctor: Status-Server to every RADIUS server --------------------------------------
# FreeRADIUS 3.2.1 answers Status-Server unsigned, but signs its login answers (the generated
# clients.conf says require_message_authenticator = yes): after the logins above the running
# server says so in its checks (roadgate status, the dashboard, roadgate doctor).
ip netns exec $srv "$bin" status --config "$out/roadgate.toml" >"$out/status-checks.txt" 2>&1
if [ "$doctor_auth" = 2 ] && [ "$doctor_acct" = 2 ] && grep -q "check: RADIUS 127.0.0.1:18120: answers" "$log" &&
  grep -q "ok: *RADIUS 127.0.0.1:18120: signs its login answers" "$out/status-checks.txt"; then
  ok doctor-radius "doctor: 4 of 4 answer Status-Server ($(grep -m1 'RADIUS 127.0.0.1:18120' "$out/doctor.txt" | cut -c1-90)...); the start logged the same; after the logins: $(grep -m1 'signs its login' "$out/status-checks.txt" | sed 's/^ *//')"
else bad doctor-radius "auth answering: $doctor_auth of 2, acct answering: $doctor_acct of 2: $(grep RADIUS "$out/doctor.txt" "$out/status-checks.txt" | tr '\n' '|')"; fi

# ---- session-timeout from RADIUS ---------------------------------------------------------------
start_client $c1 203.0.113.3 rshort "$(pw rshort short-secret-4)" short
p=$cpid
if wait_up short $p; then
  t0=$(date +%s); wait $p; t1=$(date +%s)
  if stop=$(wait_record "^Stop .*User-Name=rshort" 10); then
    cause=$(attr "$stop" Acct-Terminate-Cause)
    [ "$cause" = Session-Timeout ] && [ $((t1 - t0)) -le 12 ] && ok session-timeout "ended after $((t1 - t0)) s (Session-Timeout 6), cause $cause" \
      || bad session-timeout "after $((t1 - t0)) s, cause $cause"
  else bad session-timeout "no Stop"; fi
else bad session-timeout "not up"; fi

# ---- radclient: Disconnect, CoA, unknown session ------------------------------------------------
dyn() { ip netns exec $srv radclient -x -r 1 -t 3 127.0.0.1:3799 "$1" "$(cat "$out/dynauth-secret")" 2>&1; }
start_client $c1 203.0.113.3 rcoa "$(pw rcoa coa-secret-5)" coa
p=$cpid
if wait_up coa $p; then
  a=$(printf 'User-Name = "nobody-here"\n' | dyn disconnect)
  if [[ $a == *Disconnect-NAK* ]] && [[ $a == *Session-Context-Not-Found* || $a == *503* ]]; then
    ok dynauth-unknown "Disconnect-Request for an unknown user: NAK 503"
  else bad dynauth-unknown "$(tr '\n' ' ' <<<"$a")"; fi
  # RFC 5176 §6.3 and §3.5: a replay with an old Event-Timestamp gets no answer; a request for
  # another NAS (NAS-Identifier) gets NAK 403; the session stays up through both.
  a=$(printf 'User-Name = "rcoa"\nEvent-Timestamp = 1000000000\n' | dyn disconnect)
  b=$(printf 'User-Name = "rcoa"\nNAS-Identifier = "another-nas"\n' | dyn disconnect)
  if [[ $a == *"No reply"* ]] && [[ $a != *Disconnect-ACK* ]] && [[ $b == *Disconnect-NAK* ]] &&
    [[ $b == *NAS-Identification-Mismatch* || $b == *403* ]] && kill -0 $p 2>/dev/null; then
    ok dynauth-replay "an Event-Timestamp of 2001 is dropped unanswered; NAS-Identifier another-nas gets NAK 403; rcoa stays up"
  else bad dynauth-replay "old timestamp: $(tr '\n' ' ' <<<"$a") / other NAS: $(tr '\n' ' ' <<<"$b")"; fi
  a=$(printf 'User-Name = "rcoa"\nSession-Timeout = 3\n' | dyn coa)
  if [[ $a == *CoA-ACK* ]]; then
    t0=$(date +%s); wait $p; t1=$(date +%s)
    stop=$(wait_record "^Stop .*User-Name=rcoa" 10)
    [ "$(attr "$stop" Acct-Terminate-Cause)" = Session-Timeout ] && ok coa "CoA-ACK; the session ended $((t1 - t0)) s later with Session-Timeout" \
      || bad coa "after CoA: $stop"
  else bad coa "$(tr '\n' ' ' <<<"$a")"; kill $p; fi
else bad coa "not up"; fi
start_client $c1 203.0.113.3 rcoa "$(pw rcoa coa-secret-5)" disc
p=$cpid
if wait_up disc $p; then
  sid=$(ip netns exec $srv "$bin" sessions --config "$out/roadgate.toml" --json 2>/dev/null \
    | python3 -c 'import json,sys; print([s for s in json.load(sys.stdin)["sessions"] if s.get("user")=="rcoa"][0].get("acct_session_id",""))' 2>/dev/null)
  a=$(printf 'Acct-Session-Id = "%s"\n' "$sid" | dyn disconnect)
  wait $p
  stop=$(wait_record "^Stop .*Acct-Session-Id=$sid" 10)
  if [[ $a == *Disconnect-ACK* ]] && [ "$(attr "$stop" Acct-Terminate-Cause)" = Admin-Reset ]; then
    ok disconnect "Disconnect-Request by Acct-Session-Id $sid: ACK, client down, Stop with Admin-Reset"
  else bad disconnect "answer: $(tr '\n' ' ' <<<"$a"); Stop: $stop"; fi
else bad disconnect "not up"; fi

# ---- pam ---------------------------------------------------------------------------------------
start_client $c1 203.0.113.3 "$pamuser" "$out/pw-pam" pam-ok --pap
p=$cpid
if wait_up pam-ok $p; then
  stop_client $p
  start_client $c1 203.0.113.3 "$pamuser" "$(pw pam-wrong wrong-one)" pam-wrong --pap
  wait $cpid; rc=$?
  r=$(grep '^RESULT' "$out/pam-wrong.log")
  [ $rc = 1 ] && [[ $r == *"stage=auth"* ]] && ok pam "system user $pamuser over PAP through PAM: up; a wrong password: $r" \
    || bad pam "wrong password: exit $rc $r"
else bad pam "not up: $(tail -2 "$out/pam-ok.log" | tr '\n' ' ')"; fi

# ---- failover: A killed, B answers -------------------------------------------------------------
kill -9 "$fra_pid"; wait "$fra_pid" 2>/dev/null; fra_pid=
start_client $c1 203.0.113.3 rpap "$(pw rpap pap-secret-1)" failover --pap
p=$cpid
if wait_up failover $p; then
  stop_client $p
  grep -q "127.0.0.1:18120.*dead\|dead.*127.0.0.1:18120" "$log" && ok failover "A (18120) dead, B answered; $(grep -m1 'dead' "$log" | cut -c1-160)" \
    || bad failover "up, but the log does not say A is dead"
else bad failover "not up with A dead: $(tail -2 "$out/failover.log" | tr '\n' ' ')"; fi

# ---- outage and kill -9 ------------------------------------------------------------------------
# B is the only one left: c2 comes up, then B goes; c1 comes and goes (Start and Stop spooled);
# roadgate is killed with -9 while c2 is up; B and roadgate come back: the spool is sent, and
# c2's session, found open, gets its Stop (NAS-Reboot). Every Start has exactly one Stop.
start_client $c2 203.0.113.4 rms "$(pw rms ms-secret-3)" outage-c2
p2=$cpid
if wait_up outage-c2 $p2; then
  ip netns exec $c2 ping -c 5 -i 0.2 -W 2 192.0.2.10 >/dev/null 2>&1
  sleep 3   # an interim checkpoints c2's counters
  kill -9 "$frb_pid"; wait "$frb_pid" 2>/dev/null; frb_pid=
  # No RADIUS: c1 can't authenticate; use the PAM user (the chain's first backend).
  start_client $c1 203.0.113.3 "$pamuser" "$out/pw-pam" outage-c1 --pap
  p1=$cpid
  wait_up outage-c1 $p1 && ip netns exec $c1 ping -c 3 -i 0.2 -W 2 192.0.2.10 >/dev/null 2>&1
  stop_client $p1
  sleep 2
  kill -9 "$srv_pid"; wait "$srv_pid" 2>/dev/null; srv_pid=
  kill -9 "$p2" 2>/dev/null
  start_fr a 18120 18130
  start_fr b 18121 18131
  start_server
  sleep 8
  records >"$out/records.txt"
  python3 - "$out/records.txt" >"$out/outage.txt" <<'PY'
import sys, collections
starts, stops = collections.Counter(), collections.Counter()
for l in open(sys.argv[1]):
    st, sid = (l.split(" ", 2) + ["", ""])[:2]
    if st == "Start": starts[sid] += 1
    if st == "Stop": stops[sid] += 1
bad = [s for s in starts if starts[s] != 1 or stops[s] != 1] + [s for s in stops if s not in starts]
print(f"starts={len(starts)} stops={sum(stops.values())} bad={bad}")
PY
  res=$(cat "$out/outage.txt")
  nasreboot=$(records | grep -E "^Stop .*User-Name=rms" | grep -c "Acct-Terminate-Cause=NAS-Reboot")
  if [[ $res == *"bad=[]"* ]] && [ "$nasreboot" -ge 1 ]; then
    ok outage "$res; c2's session closed with NAS-Reboot after the kill -9"
  else bad outage "$res; NAS-Reboot Stops for rms: $nasreboot"; fi
else bad outage "c2 not up"; fi

echo "netns radius_chain: $pass passed, $fail failed"
[ "$fail" = 0 ]
