#!/usr/bin/env bash
# Installs roadgate on this host, or removes it again. Run as root, from a checkout (it builds the
# binary) or from an unpacked release (the `roadgate` binary next to this deploy/ folder).
# Running it again is safe: files it owns are replaced, the configuration and the firewall file
# are kept once they exist, and the state folder is never touched.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/install.sh [--binary PATH] [--wan-if IF] [--lan-if IF] [--start] [--dry-run]
       deploy/install.sh --uninstall [--dry-run]

  --binary PATH  install this roadgate binary (default: ./roadgate of an unpacked release, else
                 `cargo build --release -p roadgate` in the checkout)
  --wan-if IF    interface VPN clients come from (default: the interface of the default route)
  --lan-if IF    interface clients' traffic leaves by (default: the same as --wan-if)
  --start        enable and start roadgate.service afterwards (restart it if it runs)
  --dry-run      print what would be done, change nothing (root not needed)
  --uninstall    remove what this script installed; keeps /var/lib/roadgate (key, users) and
                 the system user roadgate that owns it

Installs: /usr/local/bin/roadgate, the system user roadgate, /etc/roadgate/roadgate.toml (from
deploy/roadgate.example.toml, only if absent), /etc/systemd/system/roadgate.service,
/etc/sysctl.d/60-roadgate.conf (applied with sysctl --system), and the nftables rules as
/etc/nftables.d/roadgate.nft if that folder exists, else /etc/roadgate/roadgate.nft (only if
absent; /etc/nftables.conf is never changed: the line to add is printed).
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)

BIN_DST=/usr/local/bin/roadgate
ETC_DIR=/etc/roadgate
CONFIG=$ETC_DIR/roadgate.toml
EXAMPLE=$here/roadgate.example.toml
UNIT_DST=/etc/systemd/system/roadgate.service
SYSCTL_DST=/etc/sysctl.d/60-roadgate.conf
NFT_MAIN=/etc/nftables.conf
NFT_D=/etc/nftables.d
STATE_DIR=/var/lib/roadgate
SVC_USER=roadgate

binary="" wan_if="" lan_if="" start=0 dry_run=0 uninstall=0
while [ $# -gt 0 ]; do
  case $1 in
    --binary) [ $# -ge 2 ] || { usage >&2; exit 2; }; binary=$2; shift 2 ;;
    --wan-if) [ $# -ge 2 ] || { usage >&2; exit 2; }; wan_if=$2; shift 2 ;;
    --lan-if) [ $# -ge 2 ] || { usage >&2; exit 2; }; lan_if=$2; shift 2 ;;
    --start) start=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

say() { printf '%s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
# Runs a command, or with --dry-run prints it.
run() {
  if [ "$dry_run" = 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}
have_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }
valid_ifname() { [[ $1 =~ ^[A-Za-z0-9_.@:-]{1,15}$ ]]; }

if [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "run as root (or try --dry-run)"
fi

# Where the firewall file goes: /etc/nftables.d when the host uses that pattern.
if [ -d "$NFT_D" ]; then
  nft_dst=$NFT_D/roadgate.nft
else
  nft_dst=$ETC_DIR/roadgate.nft
fi
# Is a file loaded by /etc/nftables.conf (named, or through an include of its folder)?
nft_included() {
  [ -f "$NFT_MAIN" ] || return 1
  grep -Eq "^[[:space:]]*include[[:space:]]+\"($1|$(dirname "$1")/\*[^\"]*)\"" "$NFT_MAIN"
}

# --- uninstall -------------------------------------------------------------------------------
if [ "$uninstall" = 1 ]; then
  if have_systemd; then
    if systemctl cat roadgate.service >/dev/null 2>&1; then
      run systemctl disable --now roadgate.service
    fi
  else
    say "systemd is not running here: no service to stop"
  fi
  for f in "$BIN_DST" "$UNIT_DST" "$SYSCTL_DST"; do
    if [ -e "$f" ]; then run rm -f "$f"; fi
  done
  for f in "$NFT_D/roadgate.nft" "$ETC_DIR/roadgate.nft"; do
    [ -e "$f" ] || continue
    if [ "$f" = "$ETC_DIR/roadgate.nft" ] && nft_included "$f"; then
      # nft refuses a whole file whose include is missing: the host's firewall would not load.
      warn "$NFT_MAIN includes $f: kept. Remove that include line first, then the file."
    else
      run rm -f "$f"
    fi
  done
  if command -v nft >/dev/null && nft list table inet roadgate >/dev/null 2>&1; then
    run nft delete table inet roadgate
  fi
  if [ -e "$CONFIG" ]; then
    if [ -f "$EXAMPLE" ] && cmp -s "$CONFIG" "$EXAMPLE"; then
      run rm -f "$CONFIG"
    else
      say "Kept $CONFIG (changed from the example, or no example to compare with)."
    fi
  fi
  if [ -d "$ETC_DIR" ] && [ -z "$(ls -A "$ETC_DIR")" ]; then run rmdir "$ETC_DIR"; fi
  if have_systemd; then run systemctl daemon-reload; fi
  say "Removed roadgate. Kept, on purpose:"
  say "  $STATE_DIR (pre-shared key, user database) and the system user $SVC_USER that owns it;"
  say "    to remove them too: rm -rf $STATE_DIR && userdel $SVC_USER"
  say "  the sysctl values now in force (net.ipv4.ip_forward=1 ...) until the next boot."
  exit 0
fi

# --- the binary --------------------------------------------------------------------------------
if [ -n "$binary" ]; then
  if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then die "--binary $binary: not an executable file"; fi
elif [ -f "$top/roadgate" ] && [ -x "$top/roadgate" ]; then
  binary=$top/roadgate # unpacked release
elif [ -f "$top/Cargo.toml" ]; then
  command -v cargo >/dev/null || die "cargo not found: build roadgate elsewhere and pass --binary PATH"
  say "Building roadgate (cargo build --release -p roadgate) in $top"
  run cargo build --release -p roadgate --manifest-path "$top/Cargo.toml"
  binary=$top/target/release/roadgate
else
  die "no roadgate binary: pass --binary PATH"
fi
# (The help text is read whole first: grep -q would stop early, and pipefail count the SIGPIPE.)
if [ -x "$binary" ] && ! grep -q -- '--config' <<<"$("$binary" serve --help 2>/dev/null || true)"; then
  warn "$binary has no 'serve --config' (it predates the configuration file):" \
    "roadgate.service cannot start with it. Install a newer build."
fi
run install -m 0755 -o root -g root "$binary" "$BIN_DST"

# --- user, configuration -------------------------------------------------------------------------
if getent passwd "$SVC_USER" >/dev/null; then
  say "System user $SVC_USER exists."
else
  nologin=$(command -v nologin || echo /usr/sbin/nologin)
  run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
    --shell "$nologin" --comment "Roadgate VPN server" "$SVC_USER"
fi
run install -d -m 0750 -o root -g "$SVC_USER" "$ETC_DIR"
config_missing=0
if [ -e "$CONFIG" ]; then
  say "Kept $CONFIG."
elif [ -f "$EXAMPLE" ]; then
  run install -m 0640 -o root -g "$SVC_USER" "$EXAMPLE" "$CONFIG"
  say "Installed $CONFIG from deploy/roadgate.example.toml: review it before starting."
else
  config_missing=1
  warn "$EXAMPLE is missing (it comes with the configuration-file work), so $CONFIG was not" \
    "created. Write $CONFIG yourself before starting roadgate."
fi

# --- PAM services for the "pam" and "system" backends (kept if the admin has their own) --------
for svc in roadgate roadgate-system; do
  if [ -e "/etc/pam.d/$svc" ]; then
    say "keeping /etc/pam.d/$svc"
  else
    run install -m 0644 -o root -g root "$here/pam.d/$svc" "/etc/pam.d/$svc"
  fi
done

# --- systemd unit, sysctl ------------------------------------------------------------------------
run install -m 0644 -o root -g root "$here/roadgate.service" "$UNIT_DST"
run install -m 0644 -o root -g root "$here/sysctl.conf" "$SYSCTL_DST"
if ! run sysctl --quiet --system; then
  warn "sysctl --system reported errors (above; possibly from other files)."
fi
if [ "$dry_run" = 0 ] && [ "$(cat /proc/sys/net/ipv4/ip_forward)" != 1 ]; then
  warn "net.ipv4.ip_forward is still 0: another sysctl file overrides $SYSCTL_DST?"
fi

# --- nftables ----------------------------------------------------------------------------------
if [ -e "$nft_dst" ]; then
  say "Kept $nft_dst (the shipped version is $here/nftables.conf)."
else
  if [ -z "$wan_if" ]; then
    wan_if=$(ip -4 route show default 2>/dev/null |
      awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }') || true
  fi
  if [ -z "$wan_if" ]; then
    warn "no IPv4 default route: WAN_IF left as eth0; edit $nft_dst"
    wan_if=eth0
  fi
  lan_if=${lan_if:-$wan_if}
  valid_ifname "$wan_if" || die "--wan-if $wan_if: not an interface name"
  valid_ifname "$lan_if" || die "--lan-if $lan_if: not an interface name"
  if [ "$dry_run" = 1 ]; then
    say "+ install -m 0644 $here/nftables.conf $nft_dst  (with WAN_IF=\"$wan_if\" LAN_IF=\"$lan_if\")"
  else
    tmp=$(mktemp)
    sed -e "s/^\([[:space:]]*redefine WAN_IF = \)\"[^\"]*\"/\1\"$wan_if\"/" \
      -e "s/^\([[:space:]]*redefine LAN_IF = \)\"[^\"]*\"/\1\"$lan_if\"/" \
      "$here/nftables.conf" >"$tmp"
    install -m 0644 -o root -g root "$tmp" "$nft_dst"
    rm -f "$tmp"
    say "Installed $nft_dst with WAN_IF=\"$wan_if\" LAN_IF=\"$lan_if\"."
  fi
fi
if [ "$dry_run" = 0 ] && command -v nft >/dev/null; then
  nft -c -f "$nft_dst" || warn "$nft_dst does not load (nft -c above): fix it before loading it"
elif ! command -v nft >/dev/null; then
  warn "nft not found (apt-get install nftables): the firewall file is not loaded or checked."
fi

# --- systemd -----------------------------------------------------------------------------------
if have_systemd; then
  run systemctl daemon-reload
else
  say "systemd is not running here: skipped systemctl daemon-reload."
fi

say ""
say "Firewall: load the rules now with:  nft -f $nft_dst"
if nft_included "$nft_dst"; then
  say "          $NFT_MAIN loads them at boot."
else
  say "          and at boot by adding this line to $NFT_MAIN:"
  say "              include \"$nft_dst\""
fi
say "          If another ruleset drops by default, open UDP 500, 4500 and ESP there too"
say "          (the header of $nft_dst says how)."
say "State:    $STATE_DIR (0700, user $SVC_USER), created by systemd on first start."

if [ "$start" = 1 ]; then
  [ "$config_missing" = 0 ] || die "not starting roadgate: $CONFIG is missing"
  have_systemd || die "cannot start roadgate: systemd is not running"
  if [ "$dry_run" = 0 ] && systemctl is-active --quiet roadgate.service; then
    run systemctl restart roadgate.service
  else
    run systemctl enable --now roadgate.service
  fi
  say "Started. On first start roadgate writes the generated pre-shared key and the passwords of"
  say "the first user, vpnuser, and the web admin to $STATE_DIR/first-start.txt (0600)"
else
  say "Next:     edit $CONFIG, check it (roadgate check-config --config $CONFIG),"
  say "          then: systemctl enable --now roadgate"
  if have_systemd && systemctl is-active --quiet roadgate.service; then
    say "          roadgate is running: systemctl restart roadgate  to use the new binary."
  fi
fi
