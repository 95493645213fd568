# Sourced by interop scripts that need more of the client VM than ../shared/harness/vm.sh offers.
# Writes "$out/vm-ext.sh", a copy of vm.sh with two additions, and points $vm at it:
#   --ppp-auth eap      pppd refuses PAP, CHAP, MS-CHAP and MS-CHAPv2, so the server must use EAP
#                       (pppd 2.4.9 answers EAP-MD5, EAP-MSCHAPv2 and EAP-TLS as a peer)
#   ROADGATE_VM_EXTRA=D the files of folder D go to the guest's /etc/ppp/extra (mode 0600), and
#                       D/options, if present, is appended to pppd's options (EAP-TLS: ca, cert,
#                       key, remotename); D/swanctl.conf, if present, replaces the client's
#                       swanctl.conf (@VM_IP@ @SERVER@ @IKE@ @ESP@ @ENCAP@ filled in) and the
#                       files of D/x509, D/x509ca and D/private go to /etc/swanctl/ (certificate
#                       authentication)
# Every edit must match exactly once; if the harness changed shape the script says so and fails.
vm_ext() {
  local src=$vm dst="$out/vm-ext.sh"
  cp "$src" "$dst" || return 1
  # shellcheck disable=SC2016
  sed -i \
    -e 's/^\(  case "\$auth" in mschapv2|chap|pap|any\)) ;;/\1|eap) ;;/' \
    -e 's/^    \*)        AUTHOPTS="refuse-eap" ;;$/    eap)      AUTHOPTS="refuse-pap refuse-chap refuse-mschap refuse-mschap-v2 need-peer-eap" ;; # roadgate-ext\n&/' \
    -e 's|^  chmod 600 /etc/ppp/options.l2tp-client$|  if [ -d "$H/job/extra" ]; then mkdir -p /etc/ppp/extra; cp "$H/job/extra/"* /etc/ppp/extra/ 2>/dev/null; chmod 600 /etc/ppp/extra/*; if [ -f /etc/ppp/extra/options ]; then cat /etc/ppp/extra/options >> /etc/ppp/options.l2tp-client; fi; fi # roadgate-ext\n&|' \
    -e 's~^start_charon || true$~if [ -f "$H/job/extra/swanctl.conf" ]; then sed -e "s|@VM_IP@|$VM_IP|g; s|@SERVER@|$SERVER|g; s|@IKE@|$IKE|g; s|@ESP@|$ESP|g; s|@ENCAP@|$ENCAP|g" "$H/job/extra/swanctl.conf" > /etc/swanctl/swanctl.conf; for d in x509 x509ca private; do if [ -d "$H/job/extra/$d" ]; then cp "$H/job/extra/$d/"* "/etc/swanctl/$d/"; fi; done; chmod 600 /etc/swanctl/private/* 2>/dev/null; fi # roadgate-ext\n&~' \
    -e 's|^  emit_client_job > "\$run/job/run.sh"$|&\n  if [ -n "${ROADGATE_VM_EXTRA:-}" ]; then cp -r "$ROADGATE_VM_EXTRA" "$run/job/extra"; fi # roadgate-ext|' \
    "$dst"
  local n
  n=$(grep -c 'roadgate-ext' "$dst")
  if [ "$n" != 4 ] || ! grep -q 'mschapv2|chap|pap|any|eap) ;;' "$dst"; then
    echo "FAIL: the harness's vm.sh changed shape; tests/interop/vm_ext.sh could not extend it ($n of 4 edits)"
    return 1
  fi
  chmod 755 "$dst"
  vm=$dst
}
