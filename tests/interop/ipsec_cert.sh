#!/usr/bin/env bash
# Real-peer check of certificate authentication in IKE (RFC 2409 §5.1, RSA signatures) with the
# built-in CA, and of IKE fragmentation.
#
# `roadgate ca init` makes the CA; `roadgate serve` makes its server certificate on first start;
# `roadgate ca issue` makes the client's certificate and key. The stock Debian strongSwan 5.9
# client in a VM (tests/interop/vm_ext.sh puts a swanctl.conf with `auth = pubkey` and the files
# into the VM) runs Main Mode with RSA signatures against `roadgate serve` in the harness's host
# namespace, checks the server's certificate against the CA, then L2TP + PPP (MS-CHAPv2, a local
# user) and a ping go through the tunnel. Messages 5 and 6 carry a certificate and a 2048-bit
# signature (an RSA-3072 CA makes both certificates large enough): more than strongSwan's 1280-byte fragment size, so both sides send IKE fragments
# (the FRAGMENTATION vendor ID) and both reassemble. Cases:
#   cert          the client certificate of the built-in CA: up; the server logs the subject
#   user-mismatch alice's certificate but bob's user name and password in PPP: IPsec up, PPP
#                 refused (certificates.require_user_match, on by default)
#   revoked       the same certificate after `roadgate ca revoke` (server still running): refused
#   foreign-ca    a certificate of another CA (openssl): refused as an unknown issuer
# Checked: RESULT ike/esp/l2tp/ppp/ping, the server's "ISAKMP SA established ... auth=certificate
# CN=..." line, fragments both ways (server debug log), and the refusals' log lines.
#
# Needs root, the harness and openssl; prints SKIP with the reason otherwise.
set -uo pipefail
name=ipsec_cert
subdir=/cert
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/vm_ext.sh"
command -v openssl >/dev/null || skip "openssl missing"
vm_ext || exit 1

state="$out/state"
rm -rf "$state" "$out/pki"; mkdir -p "$out/pki"; chmod 700 "$out/pki"
"$bin" ca --state "$state" init --cn "Roadgate interop CA" --key rsa3072 >"$out/ca-init.txt" 2>&1 || { echo "FAIL: ca init: $(cat "$out/ca-init.txt")"; exit 1; }
"$bin" ca --state "$state" issue alice --out "$out/pki" >"$out/ca-issue.txt" 2>&1 || { echo "FAIL: ca issue: $(cat "$out/ca-issue.txt")"; exit 1; }
"$bin" ca --state "$state" cert >"$out/pki/ca.pem" || { echo "FAIL: ca cert"; exit 1; }
serial=$(sed -n 's/.* serial \([0-9a-f]*\) for .*/\1/p' "$out/ca-issue.txt")
[ -n "$serial" ] || { echo "FAIL: no serial in: $(cat "$out/ca-issue.txt")"; exit 1; }
echo testpass123 | "$bin" user --state "$state" add alice >/dev/null || { echo "FAIL: user add"; exit 1; }
echo bobpass12345 | "$bin" user --state "$state" add bob >/dev/null || { echo "FAIL: user add bob"; exit 1; }
echo "psk-unused-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" >"$out/psk"; chmod 600 "$out/psk"
# Sanity of what the client gets: openssl agrees the certificate chains to the CA.
openssl verify -CAfile "$out/pki/ca.pem" "$out/pki/alice.pem" >"$out/openssl-verify.txt" 2>&1 \
  || { echo "FAIL: openssl verify: $(cat "$out/openssl-verify.txt")"; exit 1; }

# A certificate of somebody else's CA, same name.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$out/pki/other-ca.key" -out "$out/pki/other-ca.pem" \
  -days 2 -subj "/CN=Other CA" -addext "basicConstraints=critical,CA:TRUE" >/dev/null 2>&1 &&
openssl req -newkey rsa:2048 -nodes -keyout "$out/pki/mallory.key" -out "$out/pki/mallory.csr" -subj "/CN=alice" >/dev/null 2>&1 &&
openssl x509 -req -in "$out/pki/mallory.csr" -CA "$out/pki/other-ca.pem" -CAkey "$out/pki/other-ca.key" \
  -CAcreateserial -out "$out/pki/mallory.pem" -days 2 >/dev/null 2>&1 || { echo "FAIL: openssl (foreign CA)"; exit 1; }

# The client's files: swanctl.conf for public-key authentication, its certificate and key, and
# our CA (which must also sign the server's certificate).
client_extra() { # $1 folder, $2 cert, $3 key
  rm -rf "$1"; mkdir -p "$1/x509" "$1/x509ca" "$1/private"
  cp "$2" "$1/x509/client.pem"; cp "$3" "$1/private/client.key"; cp "$out/pki/ca.pem" "$1/x509ca/ca.pem"
  cat >"$1/swanctl.conf" <<'CONF'
connections {
  l2tp {
    version = 1
    aggressive = no
    local_addrs = @VM_IP@
    remote_addrs = @SERVER@
    proposals = @IKE@
    encap = @ENCAP@
    dpd_delay = 0s
    rekey_time = 0s
    fragmentation = yes
    send_certreq = yes
    send_cert = always
    local {
      auth = pubkey
      certs = client.pem
    }
    remote {
      auth = pubkey
      id = %any
    }
    children {
      l2tp {
        mode = transport
        local_ts = dynamic[udp/1701]
        remote_ts = dynamic[udp/1701]
        esp_proposals = @ESP@
        start_action = none
        close_action = none
        dpd_action = clear
      }
    }
  }
}
CONF
}
client_extra "$out/extra-alice" "$out/pki/alice.pem" "$out/pki/alice.key"
client_extra "$out/extra-mallory" "$out/pki/mallory.pem" "$out/pki/mallory.key"

pass=0; fail=0
log="$out/server.log"
ip netns exec l2tpv-host env RUST_LOG=info,roadgate=debug,roadgate_core=debug "$bin" serve --listen 192.0.2.1 --psk-file "$out/psk" \
  --state "$state" >"$log" 2>&1 &
srv=$!
for _ in $(seq 100); do grep -q "certificate authentication (IKE RSA signatures) is on" "$log" && break; sleep 0.1; done
grep -q "certificate authentication (IKE RSA signatures) is on" "$log" || { echo "FAIL: server did not start with certificates: $(tail -5 "$log")"; exit 1; }
sleep 1
openssl x509 -in "$state/server-cert.pem" -noout -ext subjectAltName,extendedKeyUsage >"$out/server-cert.txt" 2>&1
grep -q "IP Address:192.0.2.1" "$out/server-cert.txt" && grep -q "1.3.6.1.5.5.8.2.2" "$out/server-cert.txt" \
  || { echo "FAIL: server certificate lacks its address or the IKE EKU: $(cat "$out/server-cert.txt")"; exit 1; }

# run_case NAME EXTRA-DIR EXPECT(up|refused) LOG-PATTERN
run_case() {
  local cname=$1 extra=$2 expect=$3 pattern=$4 user=${5:-alice} pw=${6:-testpass123}
  local mark; mark=$(wc -l <"$log")
  local result
  result=$(ROADGATE_VM_EXTRA=$extra "$vm" client --server 192.0.2.1 --psk unused --user "$user" --pass "$pw" \
    --ppp-timeout 20 --ike-timeout 30 2>"$out/client-$cname.err" | grep '^RESULT' | tail -1)
  echo "$cname: $result" | tee -a "$out/results.txt"
  local slog; slog=$(tail -n +"$((mark + 1))" "$log")
  local ok=1 why=
  case $expect in
    up)
      for f in ike=up esp=up l2tp=up ppp=up auth=ok; do [[ $result == *" $f"* ]] || { ok=0; why+=" ${f%%=*}"; }; done
      [[ $result == *" ping=ok"* || $result == *" peer=global "* ]] || { ok=0; why+=" ping"; } ;;
    refused)
      [[ $result == *" ike=down"* ]] || { ok=0; why+=" ike-not-down"; }
      [[ $result == *" ip=none"* ]] || { ok=0; why+=" got-address"; } ;;
    ppp-refused)
      # IPsec (with the certificate) comes up; PPP authentication is refused.
      for f in ike=up esp=up l2tp=up; do [[ $result == *" $f"* ]] || { ok=0; why+=" ${f%%=*}"; }; done
      [[ $result != *" auth=ok"* ]] || { ok=0; why+=" auth-accepted"; }
      [[ $result == *" ip=none"* ]] || { ok=0; why+=" got-address"; } ;;
  esac
  grep -qE -- "$pattern" <<<"$slog" || { ok=0; why+=" server-log($pattern)"; }
  if [ $ok = 1 ]; then
    echo "PASS $cname: $(grep -oE -- "$pattern" <<<"$slog" | head -1)"; pass=$((pass+1))
  else
    echo "FAIL $cname:$why (server log: $log)"; fail=$((fail+1))
  fi
}

run_case cert "$out/extra-alice" up "ISAKMP SA established.*auth=certificate CN=alice"
# IKE fragmentation, both ways, in that exchange.
if grep -q "IKE fragments joined" "$log" && grep -q "Main Mode message 6 sent in IKE fragments" "$log"; then
  echo "PASS fragmentation: $(grep -o 'IKE fragments joined.*' "$log" | head -1); $(grep -o 'Main Mode message 6 sent in IKE fragments.*' "$log" | head -1)"
  pass=$((pass+1))
else
  echo "FAIL fragmentation: no fragments both ways in $log"; fail=$((fail+1))
fi
# alice's certificate with bob's (good) password: PPP must be alice (certificates.require_user_match).
run_case user-mismatch "$out/extra-alice" ppp-refused "PPP user is not the one the IPsec certificate was issued for" bob bobpass12345
"$bin" ca --state "$state" revoke "$serial" --reason keyCompromise >"$out/ca-revoke.txt" 2>&1 || { echo "FAIL: ca revoke: $(cat "$out/ca-revoke.txt")"; fail=$((fail+1)); }
run_case revoked "$out/extra-alice" refused "certificate authentication failed.*revoked"
run_case foreign-ca "$out/extra-mallory" refused "certificate authentication failed.*not issued by a trusted CA"

kill -TERM "$srv" 2>/dev/null; wait "$srv" 2>/dev/null; srv=
echo "interop/ipsec_cert: $pass passed, $fail failed"
[ "$fail" = 0 ]
