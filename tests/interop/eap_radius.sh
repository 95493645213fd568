#!/usr/bin/env bash
# Real-peer check of EAP through the whole chain (issue: AAA, EAP pass-through).
#
# The stock Debian strongSwan + xl2tpd + pppd 2.4.9 client in a VM connects over IPsec (PSK) to
# `roadgate serve` in the harness's host namespace. roadgate offers only EAP in LCP and relays
# every EAP packet to a real FreeRADIUS 3 in the same namespace (EAP-Message + State +
# Message-Authenticator, RFC 3579); FreeRADIUS runs the EAP method, roadgate only carries it.
# The client refuses every other method (tests/interop/vm_ext.sh adds `--ppp-auth eap` to the
# harness). Cases:
#   eap-mschapv2       FreeRADIUS proposes EAP-MSCHAPv2; pppd answers from its chap-secrets
#   eap-tls            FreeRADIUS proposes EAP-TLS; pppd presents a client certificate of the test
#                      CA and checks the RADIUS server's certificate (CA and CN)
#   eap-mschapv2-wrong a wrong password: FreeRADIUS rejects, the client must see the failure
#   eap-tls-untrusted  a client certificate from another CA: FreeRADIUS rejects the TLS handshake
# Checked: RESULT l2tp=up ppp=up auth=ok auth_proto=eap ip= ping=ok for the good cases; the EAP
# method in FreeRADIUS's own log; accounting Start and Stop in FreeRADIUS's detail file with the
# EAP identity as User-Name and the session's Acct-Session-Id; for the bad cases no address and
# the server's "authentication refused" log line.
#
# Needs root, the harness, freeradius and openssl; prints SKIP with the reason otherwise.
set -uo pipefail
name=eap_radius
subdir=/eap
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/vm_ext.sh"
fr=$(command -v freeradius || true)
[ -n "$fr" ] || skip "freeradius missing (apt-get install freeradius)"
command -v openssl >/dev/null || skip "openssl missing"
frconf=${ROADGATE_FRCONF:-$top/target/release/rg-freeradius}
if [ ! -x "$frconf" ]; then
  (cd "$top" && cargo build --release -p roadgate-tests --bin rg-freeradius) || { echo "FAIL: build"; exit 1; }
fi
vm_ext || exit 1
fr_pid=
trap '"$vm" net down >/dev/null 2>&1; [ -n "${srv:-}" ] && kill "$srv" 2>/dev/null; [ -n "$fr_pid" ] && kill "$fr_pid" 2>/dev/null' EXIT

rnd() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
psk="eap-$(rnd)"
printf '%s\n' "$psk" >"$out/psk"
printf 'rs-%s\n' "$(rnd)" >"$out/radius-secret"
chmod 600 "$out/psk" "$out/radius-secret"

# ---- certificates: a test CA, FreeRADIUS's server certificate, a client's, and a stranger's ----
pki="$out/pki"; rm -rf "$pki"; mkdir -p "$pki"; chmod 700 "$pki"
mkcert() { # $1 name, $2 CN, $3 EKU, $4 issuer name (empty: self-signed CA)
  if [ -z "$4" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -out "$pki/$1.pem" -days 2 \
      -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  else
    openssl req -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "/CN=$2" &&
    printf 'extendedKeyUsage=%s\nkeyUsage=critical,digitalSignature,keyEncipherment\n' "$3" >"$pki/$1.ext" &&
    openssl x509 -req -in "$pki/$1.csr" -CA "$pki/$4.pem" -CAkey "$pki/$4.key" -CAcreateserial \
      -out "$pki/$1.pem" -days 2 -extfile "$pki/$1.ext"
  fi
}
{ mkcert ca "Roadgate EAP test CA" "" "" && mkcert radius radius.roadgate.test serverAuth ca &&
  mkcert client eaptls clientAuth ca && mkcert otherca "Somebody else's CA" "" "" &&
  mkcert stranger eaptls clientAuth otherca; } >"$pki/openssl.log" 2>&1 || { echo "FAIL: openssl: $(tail -3 "$pki/openssl.log")"; exit 1; }
chmod 600 "$pki"/*.key
# What the client VM gets (vm_ext.sh: into /etc/ppp/extra, options appended to pppd's).
client_extra() { # $1 folder, $2 client cert name
  rm -rf "$1"; mkdir -p "$1"
  cp "$pki/ca.pem" "$1/ca.pem"; cp "$pki/$2.pem" "$1/client.pem"; cp "$pki/$2.key" "$1/client.key"
  cat >"$1/options" <<OPT
ca /etc/ppp/extra/ca.pem
cert /etc/ppp/extra/client.pem
key /etc/ppp/extra/client.key
remotename radius.roadgate.test
OPT
}
client_extra "$out/extra-good" client
client_extra "$out/extra-stranger" stranger

cat >"$out/users" <<'USERS'
eapms	Cleartext-Password := "eap-ms-secret-7"
USERS

# ---- FreeRADIUS in the server's namespace; $1 = the EAP method it proposes ----------------------
start_fr() { # $1 method, $2 case name
  local dir="$out/fr-$2"
  rm -rf "$dir"; mkdir -p "$dir"
  "$frconf" --dir "$dir" --auth-port 18120 --acct-port 18130 --secret-file "$out/radius-secret" \
    --users "$out/users" --eap-default "$1" --eap-tls-cert "$pki/radius.pem" \
    --eap-tls-key "$pki/radius.key" --eap-tls-ca "$pki/ca.pem" >"$dir/conf.out" 2>&1 \
    || { echo "FAIL setup: FreeRADIUS config: $(cat "$dir/conf.out")"; exit 1; }
  ip netns exec l2tpv-host "$fr" -X -d "$dir" >"$dir/out.log" 2>&1 &
  fr_pid=$!
  for _ in $(seq 100); do grep -q "Ready to process requests" "$dir/out.log" 2>/dev/null && break; sleep 0.1; done
  grep -q "Ready to process requests" "$dir/out.log" || { echo "FAIL setup: FreeRADIUS did not start: $(tail -5 "$dir/out.log")"; exit 1; }
  frdir=$dir
}
stop_fr() { [ -n "$fr_pid" ] && kill "$fr_pid" 2>/dev/null; wait "$fr_pid" 2>/dev/null; fr_pid=; }

cat >"$out/roadgate.toml" <<TOML
[server]
state_dir = "$out/state"
listen = ["192.0.2.1"]
[ppp]
local_address = "10.77.0.1"
pool = ["10.77.0.10-10.77.0.99"]
dns = ["192.0.2.53"]
auth = ["eap"]
[auth]
backends = ["radius"]
[radius]
timeout_ms = 1000
tries = 3
nas_identifier = "roadgate-interop"
servers = [
  { address = "127.0.0.1:18120", secret_file = "$out/radius-secret", role = "auth" },
  { address = "127.0.0.1:18130", secret_file = "$out/radius-secret", role = "acct" },
]
TOML
"$bin" check-config --config "$out/roadgate.toml" --psk-file "$out/psk" >"$out/check-config.txt" 2>&1 \
  || { echo "FAIL setup: check-config: $(cat "$out/check-config.txt")"; exit 1; }

pass=0; fail=0
# run_case NAME EAP-METHOD EXPECT(up|refused) EXTRA-DIR USER PASSWORD
run_case() {
  local cname=$1 method=$2 expect=$3 extra=$4 user=$5 pass_=$6
  local log="$out/server-$cname.log"
  start_fr "$method" "$cname"
  rm -rf "$out/state"
  ip netns exec l2tpv-host env RUST_LOG=info,roadgate=debug "$bin" serve --config "$out/roadgate.toml" \
    --psk-file "$out/psk" >"$log" 2>&1 &
  srv=$!
  sleep 1
  local result
  result=$(ROADGATE_VM_EXTRA=$extra "$vm" client --server 192.0.2.1 --psk "$psk" --ppp-auth eap \
    --user "$user" --pass "$pass_" --ppp-timeout 25 2>"$out/client-$cname.err" | grep '^RESULT' | tail -1)
  kill -TERM "$srv" 2>/dev/null; wait "$srv" 2>/dev/null; srv=
  sleep 0.5
  stop_fr
  echo "$cname: $result" | tee -a "$out/results.txt"
  local ok=1 why=
  local logs; logs=$(sed -n 's/.* logs=\([^ ]*\).*/\1/p' <<<"$result")
  local detail="$frdir/acct/detail"
  case $expect in
    up)
      for f in ike=up esp=up l2tp=up ppp=up auth=ok auth_proto=eap; do
        [[ $result == *" $f"* ]] || { ok=0; why+=" ${f%%=*}"; }
      done
      [[ $result =~ \ ip=10\.77\.0\.[0-9]+ ]] || { ok=0; why+=" ip"; }
      [[ $result == *" ping=ok"* || $result == *" peer=global "* ]] || { ok=0; why+=" ping"; }
      grep -q "roadgate_core::session: session up" "$log" || { ok=0; why+=" server-log"; }
      # FreeRADIUS ran the method itself.
      grep -q "eap: Calling submodule eap_$method" "$frdir/out.log" || { ok=0; why+=" fr-method"; }
      # Accounting: Start and Stop of the session the server logged, User-Name = the EAP identity.
      local sid
      sid=$(grep -o 'session up .*acct_session_id=[0-9A-F]*' "$log" | head -1 | sed 's/.*acct_session_id=//')
      [ -n "$sid" ] || { ok=0; why+=" acct-session-id"; }
      [ "$(grep -c 'Acct-Status-Type = Start' "$detail" 2>/dev/null)" = 1 ] || { ok=0; why+=" acct-start"; }
      [ "$(grep -c 'Acct-Status-Type = Stop' "$detail" 2>/dev/null)" = 1 ] || { ok=0; why+=" acct-stop"; }
      [ "$(grep -c "User-Name = \"$user\"" "$detail" 2>/dev/null)" -ge 2 ] || { ok=0; why+=" acct-user"; }
      [ "$(grep -c "Acct-Session-Id = \"$sid\"" "$detail" 2>/dev/null)" -ge 2 ] || { ok=0; why+=" acct-same-id"; } ;;
    refused)
      [[ $result == *" l2tp=up"* ]] || { ok=0; why+=" l2tp"; }
      [[ $result == *" ip=none"* ]] || { ok=0; why+=" got-address"; }
      [[ $result != *" auth=ok"* ]] || { ok=0; why+=" auth-accepted"; }
      grep -q "authentication refused" "$log" || { ok=0; why+=" server-log"; }
      grep -q "eap: Calling submodule eap_$method" "$frdir/out.log" || { ok=0; why+=" fr-method"; }
      grep -q "Sent Access-Reject" "$frdir/out.log" || { ok=0; why+=" no-reject"; }
      if [ -f "$detail" ] && grep -q 'Acct-Status-Type = Start' "$detail"; then ok=0; why+=" accounted"; fi ;;
  esac
  if [ $ok = 1 ]; then
    echo "PASS $cname: $(grep -o 'roadgate_core::session: session up.*' "$log" | head -1 | sed 's/roadgate_core::session: //')$(grep -o 'authentication refused.*' "$log" | head -1)"
    pass=$((pass+1))
  else
    echo "FAIL $cname:$why (server log: $log, FreeRADIUS: $frdir/out.log, client: $logs)"
    fail=$((fail+1))
  fi
}

run_case eap-mschapv2 mschapv2 up "" eapms eap-ms-secret-7
run_case eap-tls tls up "$out/extra-good" eaptls unused-password
run_case eap-mschapv2-wrong mschapv2 refused "" eapms wrong-password-1
run_case eap-tls-untrusted tls refused "$out/extra-stranger" eaptls unused-password

echo "interop/eap_radius: $pass passed, $fail failed"
[ "$fail" = 0 ]
