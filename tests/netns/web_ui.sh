#!/usr/bin/env bash
# The admin web UI end to end: `roadgate serve` with [web] on the server's LAN address, a real VPN
# client connected, and a real headless Chromium (tests/web-e2e/e2e.mjs, playwright-core) on an
# admin host that logs in, adds a user, issues a certificate, downloads its .p12 files, and
# disconnects the live VPN session from the dashboard.
#
#   rg-wu-c1 203.0.113.3 ── 203.0.113.2 rg-wu-srv 192.0.2.1:8443 ── 192.0.2.10 rg-wu-adm
#   (rg-client, no TUN)       (roadgate serve, web UI)                (chromium + node)
#
# Cases: web-listener (the UI listens on 192.0.2.1:8443 only, as [web] bind says); tls (curl
# verifies the certificate against the built-in CA that `roadgate ca cert` prints); first-admin
# (the first start prints a web admin password); admin-cli (`roadgate admin add/list`); vpn-up
# (rg-client up); metrics (/metrics refused without the bearer token, and with it shows the
# session and the connect); browser (every step of e2e.mjs passes); client-down (the client saw the
# disconnect: DOWN, exit 3); server-log (the server logged the disconnect of that session);
# sessions (`roadgate sessions` no longer lists it); user-added and cert-issued (`roadgate user
# list` and `roadgate ca list` show what the browser made); crl-http (the CRL and /ca.crt over
# plain HTTP at certificates.crl_url, [web] crl_bind: openssl verify -crl_check OK, then
# "certificate revoked" after a revocation while the server runs).
# Logs: target/netns/web_ui/; screenshots: target/web-e2e/. Needs root, iproute2, curl, node,
# chromium (/usr/bin/chromium or $E2E_CHROMIUM) and tests/web-e2e/node_modules (`npm ci --prefix
# tests/web-e2e`; tests/install-deps.sh does it). Without chromium or node_modules it skips,
# except with CI=true, where that is a failure.
set -uo pipefail
name=web_ui
# shellcheck disable=SC2034 # read by common.bash
subdir=/web_ui
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "SKIP netns/$name: needs root"; exit 0; }
# Missing browser parts: a skip here, a failure in CI (install-deps.sh installs them there).
missing() {
  if [ "${CI:-}" = true ]; then echo "FAIL netns/$name: $*"; exit 1; fi
  echo "SKIP netns/$name: $*"; exit 0
}
chromium=${E2E_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || missing "no chromium at $chromium (apt-get install chromium)"
command -v node >/dev/null || missing "node missing (apt-get install nodejs npm)"
command -v curl >/dev/null || missing "curl missing (apt-get install curl)"
[ -d "$top/tests/web-e2e/node_modules/playwright-core" ] ||
  missing "tests/web-e2e/node_modules missing (npm ci --prefix tests/web-e2e)"

srvns=rg-wu-srv; adm=rg-wu-adm; c1=rg-wu-c1
# shellcheck disable=SC2034 # read by common.bash
nss="$srvns $adm $c1"
# common.bash: skip/ok/bad/finish, make_namespaces/cleanup, $bin and $out (builds if need be).
# shellcheck source=tests/netns/common.bash disable=SC1091
. "$here/common.bash"
# shellcheck disable=SC2154 # set by common.bash
: "$bin" "$out"
rgclient=${ROADGATE_CLIENT:-$top/target/release/rg-client}
if [ ! -x "$rgclient" ]; then
  (cd "$top" && cargo build --release -p roadgate-tests --bins) || { echo "FAIL: build"; exit 1; }
fi
"$bin" admin --help >/dev/null 2>&1 ||
  missing "$bin has no web UI yet (no \`roadgate admin\` command)"

rm -rf "$out"; mkdir -p "$out"
shots=$top/target/web-e2e
log="$out/server.log"
state="$out/state"
cpid=
web_cleanup() {
  [ -n "$cpid" ] && kill -9 "$cpid" 2>/dev/null
  cleanup
}
trap web_cleanup EXIT

# ---- topology ----------------------------------------------------------------------------------
make_namespaces
ip link add wan0 netns $c1 type veth peer name wan0 netns $srvns
ip -n $srvns addr add 203.0.113.2/24 dev wan0; ip -n $srvns link set wan0 up
ip -n $c1 addr add 203.0.113.3/24 dev wan0; ip -n $c1 link set wan0 up
ip link add lan0 netns $adm type veth peer name lan0 netns $srvns
ip -n $srvns addr add 192.0.2.1/24 dev lan0; ip -n $srvns link set lan0 up
ip -n $adm addr add 192.0.2.10/24 dev lan0; ip -n $adm link set lan0 up

# ---- server ------------------------------------------------------------------------------------
rnd() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
umask 077
printf 'wu-%s\n' "$(rnd)" >"$out/psk"
printf 'vpn-%s\n' "$(rnd)" >"$out/pw-vpn"
admin_pw="Admin-$(rnd)"
printf 'mt-%s%s\n' "$(rnd)" "$(rnd)" >"$out/metrics-token"
cat >"$out/roadgate.toml" <<TOML
[server]
state_dir = "$state"
listen = ["203.0.113.2"]
[certificates]
# The server certificate (made by the built-in CA on the first start) also serves HTTPS.
public_names = ["203.0.113.2", "192.0.2.1"]
# Written into every certificate the CA issues; served by [web] crl_bind.
crl_url = "http://192.0.2.1/roadgate.crl"
[web]
enabled = true
bind = "192.0.2.1:8443"
show_psk = false
metrics = "token"
metrics_token_file = "$out/metrics-token"
crl_bind = "192.0.2.1:80"
TOML
ip netns exec $srvns env RUST_LOG=info "$bin" serve --config "$out/roadgate.toml" \
  --psk-file "$out/psk" --no-tun >"$out/server.out" 2>"$log" &
srv=$!
if ! wait_for "$log" "admin web UI listening" "$srv" 150; then
  echo "FAIL setup: no 'admin web UI listening' in the server log: $(tail -3 "$log" | tr '\n' ' ')"
  exit 1
fi

# The UI listens where [web] bind says, and only there.
listen_line=$(grep -m1 "admin web UI listening" "$log")
socks=$(ip netns exec $srvns ss -Hltn 'sport = :8443' | awk '{print $4}' | tr '\n' ' ')
if [[ $listen_line == *"addr=192.0.2.1:8443"* ]] && [ "$socks" = "192.0.2.1:8443 " ]; then
  ok web-listener "server log: addr=192.0.2.1:8443; listening sockets on :8443: $socks"
else
  bad web-listener "log: ${listen_line:-none}; sockets on :8443: ${socks:-none}"
fi

# The certificate chain verifies against our CA (the one `roadgate ca cert` prints).
# (A copy in the state folder, if the server keeps one, must be the same certificate.)
"$bin" ca --state "$state" cert >"$out/ca-cli.pem" 2>"$out/ca-cli.err"
if [ -e "$state/ca-cert.pem" ] && ! cmp -s "$out/ca-cli.pem" "$state/ca-cert.pem"; then
  bad tls "roadgate ca cert and $state/ca-cert.pem differ"
elif grep -q 'BEGIN CERTIFICATE' "$out/ca-cli.pem"; then
  code=$(ip netns exec $adm curl -sS -o "$out/login.html" -w '%{http_code}' \
    --cacert "$out/ca-cli.pem" https://192.0.2.1:8443/login 2>"$out/curl.err")
  if [ "$code" = 200 ] && grep -q 'data-testid="login-form"' "$out/login.html"; then
    if ip netns exec $adm curl -sS -o /dev/null https://192.0.2.1:8443/login 2>/dev/null; then
      bad tls "the certificate verifies without our CA too"
    else
      ok tls "curl --cacert <roadgate ca cert> https://192.0.2.1:8443/login: 200 with the login form; without the CA it is refused"
    fi
  else
    bad tls "curl with our CA: HTTP ${code:-none}: $(cat "$out/curl.err")"
  fi
else
  bad tls "roadgate ca cert printed no certificate: $(cat "$out/ca-cli.err")"
fi

# The first start made a web admin and said its password once.
if grep -hq "Created the web admin (password shown once): admin / " "$out/server.out" "$log"; then
  ok first-admin "the first start printed the password of the web admin 'admin'"
else
  bad first-admin "no 'Created the web admin' line in $out/server.out or the log"
fi

# An admin with a known password, made by the CLI while the server runs.
if printf '%s\n' "$admin_pw" | "$bin" admin --state "$state" add e2e-admin --password-stdin >"$out/admin-add.txt" 2>&1 &&
  "$bin" admin --state "$state" list >"$out/admin-list.txt" 2>&1 &&
  grep -qw e2e-admin "$out/admin-list.txt" && grep -qw admin "$out/admin-list.txt"; then
  ok admin-cli "roadgate admin add e2e-admin --password-stdin; admin list: $(tr '\n' ' ' <"$out/admin-list.txt")"
else
  bad admin-cli "$(cat "$out/admin-add.txt" "$out/admin-list.txt" 2>/dev/null | tr '\n' ' ')"
fi

# ---- the VPN client ----------------------------------------------------------------------------
"$bin" user --state "$state" add vpn-e2e <"$out/pw-vpn" >"$out/user-add.txt" 2>&1 ||
  { echo "FAIL setup: roadgate user add vpn-e2e: $(cat "$out/user-add.txt")"; exit 1; }
ip netns exec $c1 "$rgclient" --server 203.0.113.2 --local 203.0.113.3 --psk-file "$out/psk" \
  --user vpn-e2e --password-file "$out/pw-vpn" --no-tun >"$out/client.log" 2>&1 &
cpid=$!
up=0
wait_for "$out/client.log" '^PPP up' "$cpid" 300 && up=1
if [ $up = 1 ]; then
  ok vpn-up "$(grep -m1 '^PPP up' "$out/client.log")"
else
  bad vpn-up "rg-client: $(tail -2 "$out/client.log" | tr '\n' ' ')"
fi
ip netns exec $srvns "$bin" sessions --state "$state" --json >"$out/sessions-before.json" 2>&1

# Prometheus /metrics on the UI's listener, for the bearer token only ([web] metrics = "token").
mcode=$(ip netns exec $adm curl -sS -o /dev/null -w '%{http_code}' --cacert "$out/ca-cli.pem" \
  https://192.0.2.1:8443/metrics 2>&1)
ip netns exec $adm curl -sS -o "$out/metrics.txt" --cacert "$out/ca-cli.pem" \
  -H "Authorization: Bearer $(cat "$out/metrics-token")" https://192.0.2.1:8443/metrics 2>&1
want_up=0; [ $up = 1 ] && want_up=1
if [ "$mcode" = 401 ] && grep -qx "roadgate_sessions $want_up" "$out/metrics.txt" &&
  grep -qx "roadgate_connects_total $want_up" "$out/metrics.txt" &&
  grep -q '^roadgate_connect_failures_total{reason="ike_auth_failed"} 0$' "$out/metrics.txt" &&
  grep -q '^roadgate_accounting_spool_records 0$' "$out/metrics.txt"; then
  ok metrics "without the token: HTTP $mcode; with it: $(grep -E '^roadgate_(sessions|connects_total|ike_sas) ' "$out/metrics.txt" | tr '\n' ' ')"
else
  bad metrics "without the token: HTTP ${mcode:-none}; with it: $(grep -E '^roadgate_(sessions|connects_total|accounting)' "$out/metrics.txt" | tr '\n' ' ') ($out/metrics.txt)"
fi

# ---- the browser -------------------------------------------------------------------------------
live=()
[ $up = 1 ] && live=(--live-user vpn-e2e)
mkdir -p "$shots"
ip netns exec $adm env E2E_PASSWORD="$admin_pw" E2E_CHROMIUM="$chromium" HOME="$out" \
  timeout 300 node "$top/tests/web-e2e/e2e.mjs" --url https://192.0.2.1:8443 --admin e2e-admin \
  --out "$shots" "${live[@]}" >"$out/e2e.log" 2>&1
rc=$?
sed 's/^/  e2e: /' "$out/e2e.log"
npass=$(grep -c '^PASS ' "$out/e2e.log"); nfail=$(grep -c '^FAIL ' "$out/e2e.log")
if [ $rc = 0 ] && [ "$nfail" = 0 ] && [ "$npass" -ge 9 ]; then
  ok browser "e2e.mjs: $npass steps passed in Chromium; screenshots in $shots"
else
  bad browser "e2e.mjs exit $rc, $npass passed, $nfail failed: $(grep -m3 '^FAIL ' "$out/e2e.log" | tr '\n' ' ') (log: $out/e2e.log)"
fi
sid=$(sed -n 's/^DISCONNECTED //p' "$out/e2e.log" | head -1)

# ---- what the rest of the system saw -----------------------------------------------------------
if [ $up = 1 ]; then
  # The client was told: DOWN, and it exits 3.
  for _ in $(seq 150); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
  crc=0
  if kill -0 "$cpid" 2>/dev/null; then crc=running; else wait "$cpid" || crc=$?; fi
  down=$(grep -m1 '^DOWN' "$out/client.log")
  if [ -n "$sid" ] && [ "$crc" = 3 ] && [ -n "$down" ]; then
    ok client-down "after the browser disconnected $sid: $down, exit 3"
    cpid=
  else
    bad client-down "session ${sid:-not disconnected}; client exit $crc; $(tail -2 "$out/client.log" | tr '\n' ' ')"
  fi
  # The server logged it (the web backend's line, and the data plane's).
  web_line=$(grep "disconnected from the web UI" "$log" | grep -F -- "${sid:-no session id}" | head -1)
  dp_line=$(grep "administrative disconnect" "$log" | grep -F -- "${sid:-no session id}" | head -1)
  if [ -n "$sid" ] && [ -n "$web_line" ] && [ -n "$dp_line" ]; then
    ok server-log "${web_line#*INFO }; ${dp_line#*INFO }"
  else
    bad server-log "for ${sid:-(no id)}: web UI line: ${web_line:-none}; data plane line: ${dp_line:-none}"
  fi
  # The admin socket no longer lists it.
  ip netns exec $srvns "$bin" sessions --state "$state" --json >"$out/sessions-after.json" 2>&1
  left=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(len([s for s in d["sessions"] if s.get("user") == "vpn-e2e" or s.get("id") == sys.argv[2]]))
' "$out/sessions-after.json" "${sid:-none}" 2>&1)
  if [ -n "$sid" ] && [ "$left" = 0 ]; then
    ok sessions "roadgate sessions: no session of vpn-e2e left (was $sid)"
  else
    bad sessions "roadgate sessions still lists vpn-e2e/$sid: $left ($out/sessions-after.json)"
  fi
fi

# The user and the certificate the browser made.
if "$bin" user --state "$state" list >"$out/users.txt" 2>&1 && grep -qw carol-e2e "$out/users.txt"; then
  ok user-added "roadgate user list: $(grep -w carol-e2e "$out/users.txt" | tr -s ' ')"
else
  bad user-added "carol-e2e not in roadgate user list: $(tr '\n' ' ' <"$out/users.txt")"
fi
if "$bin" ca --state "$state" list >"$out/certs.txt" 2>&1 && grep -q carol-e2e "$out/certs.txt"; then
  ok cert-issued "roadgate ca list: $(grep -m1 carol-e2e "$out/certs.txt" | tr -s ' ')"
else
  bad cert-issued "no certificate for carol-e2e in roadgate ca list: $(tr '\n' ' ' <"$out/certs.txt")"
fi

# The CRL at its distribution point (plain HTTP, [web] crl_bind): a certificate checks against it
# before its revocation and is reported revoked after, with the server still running.
crl_check() { # $1: label; prints openssl's verdict
  ip netns exec $adm curl -sS -o "$out/crl-$1.der" -w '%{http_code} %{content_type}' http://192.0.2.1/roadgate.crl 2>&1
  echo
  openssl crl -inform DER -in "$out/crl-$1.der" -out "$out/crl-$1.pem" 2>&1
  openssl verify -crl_check -CAfile "$out/ca-http.pem" -CRLfile "$out/crl-$1.pem" "$out/pki/crl-e2e.pem" 2>&1
}
mkdir -p "$out/pki"
if ip netns exec $adm curl -sS -o "$out/ca-http.pem" http://192.0.2.1/ca.crt 2>"$out/ca-http.err" &&
  cmp -s "$out/ca-http.pem" "$out/ca-cli.pem" &&
  "$bin" ca --state "$state" issue crl-e2e --out "$out/pki" >"$out/crl-issue.txt" 2>&1; then
  dp=$(openssl x509 -in "$out/pki/crl-e2e.pem" -noout -ext crlDistributionPoints 2>&1 | grep -o 'URI:.*')
  before=$(crl_check before)
  serial=$("$bin" ca --state "$state" list | awk '/crl-e2e/ {print $1; exit}')
  "$bin" ca --state "$state" revoke "$serial" --reason keyCompromise >"$out/crl-revoke.txt" 2>&1
  after=$(crl_check after)
  if [ "$dp" = "URI:http://192.0.2.1/roadgate.crl" ] && [[ $before == "200 application/pkix-crl"*": OK"* ]] &&
    [[ $after == "200 application/pkix-crl"*"certificate revoked"* ]]; then
    ok crl-http "CRL DP $dp; /ca.crt is the CA; openssl verify -crl_check: OK before, \"certificate revoked\" after roadgate ca revoke"
  else
    bad crl-http "DP ${dp:-none}; before: $(tr '\n' ' ' <<<"$before"); after: $(tr '\n' ' ' <<<"$after")"
  fi
else
  bad crl-http "/ca.crt over HTTP: $(cat "$out/ca-http.err") (or not the CA of roadgate ca cert, or issue failed: $(cat "$out/crl-issue.txt" 2>/dev/null))"
fi

kill -TERM "$srv" 2>/dev/null; wait "$srv" 2>/dev/null; srv=
finish
