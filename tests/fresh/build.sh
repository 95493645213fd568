#!/usr/bin/env bash
# Fresh-machine build (issue 15): a clean Debian 12 root with only what rustup itself needs (gcc,
# libc6-dev, ca-certificates on top of minbase) builds `roadgate` (offline) and runs it.
#
# - The build uses the dev profile by default (FRESH_PROFILE=release for the README's exact
#   command): the same build scripts, C compilation and linking as --release, which adds only fat
#   LTO (about 3 minutes more on 2 cores); a need the fresh machine lacks fails either.
#
# - The root is made by mmdebstrap from Debian's archive; its tarball is cached under
#   /var/tmp/roadgate-fresh/ keyed by the package list, so reruns only extract it.
# - The host's Rust toolchain (`rustc --print sysroot`, which holds cargo) and the host's cargo
#   registry are bind-mounted read-only; the source is a `git archive` of HEAD (committed code
#   only; ROADGATE_FRESH_REV=<commit> picks another). The build is offline.
# - The target folder is made fresh in the root on every run and deleted at the end (a cached one
#   could hide a build-time need that was met once and is gone now): the build is from scratch.
# - Asserted: no libclang, no clang, cmake or pkg-config, and no -dev package other than libc6-dev
#   and what gcc and libc6-dev themselves depend on (listed below) is installed in the root, and
#   the package list did not change during the build.
# - Then iproute2 is installed in the root (a run-time need: `ip route`), and in a network
#   namespace rg-fresh-$$ (loopback, with 192.0.2.1/32 on it):
#   `roadgate --version`; `roadgate serve` on the embedded default, whose log must say it listened;
#   `roadgate serve` with the `pam` backend first in the chain: minbase includes libpam0g (login
#   and util-linux need it), so the log must say libpam loaded; then libpam.so.0 is deleted from
#   the (throw-away) root and the same server must say, plainly, that PAM is not available, and
#   still listen.
# Root only; SKIP without root or without mmdebstrap. Prints PASS/FAIL lines and a summary line.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
src=$PWD

if [ "$(id -u)" != 0 ]; then
  echo "SKIP fresh-build: needs root (chroot, mounts, network namespace)"
  exit 0
fi
if ! command -v mmdebstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null 2>&1 || true
fi
if ! command -v mmdebstrap >/dev/null; then
  echo "SKIP fresh-build: mmdebstrap is not installed and could not be installed (apt install mmdebstrap)"
  exit 0
fi

pass=0
fail=0
ok() { echo "PASS $1: $2"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
t0=$SECONDS

cache=/var/tmp/roadgate-fresh
suite=bookworm
variant=minbase
packages="gcc,libc6-dev,ca-certificates"
key=$(printf '%s %s %s' "$suite" "$variant" "$packages" | sha256sum | cut -c1-16)
tarball=$cache/root-$suite-$variant-$key.tar
mkdir -p "$cache"

work=$(mktemp -d "$cache/run.XXXXXX")
root=$work/root
ns=rg-fresh-$$
mounts=()
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# ---- the root --------------------------------------------------------------------------------
if [ ! -s "$tarball" ]; then
  echo "making the Debian $suite root ($variant + $packages) into $tarball"
  if ! mmdebstrap --quiet --variant="$variant" --include="$packages" --mode=root --format=tar \
    "$suite" "$tarball.tmp" http://deb.debian.org/debian >"$work/mmdebstrap.log" 2>&1; then
    rm -f "$tarball.tmp"
    if grep -qiE 'could not resolve|failed to fetch|temporary failure|connection' "$work/mmdebstrap.log"; then
      echo "SKIP fresh-build: Debian's archive cannot be reached: $(tail -1 "$work/mmdebstrap.log")"
      exit 0
    fi
    bad root "mmdebstrap failed: $(tail -3 "$work/mmdebstrap.log" | tr '\n' ' ')"
    echo "fresh-build: $pass passed, $fail failed"
    exit 1
  fi
  mv "$tarball.tmp" "$tarball"
fi
mkdir -p "$root"
tar -C "$root" -xf "$tarball" || { bad root "cannot extract $tarball"; echo "fresh-build: $pass passed, $fail failed"; exit 1; }
ok root "Debian $suite $variant + $packages from $(basename "$tarball") (made $(date -r "$tarball" +%F))"
# shellcheck disable=SC2016 # dpkg-query's own ${...} fields
dpkg_list() { chroot "$root" dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" {print $2}' | sort; }
dpkg_list >"$work/packages.before"

# ---- mounts: toolchain, registry, source -------------------------------------------------------
bind() { # bind SRC DST [ro]
  mkdir -p "$2" && mount --bind "$1" "$2" && mounts+=("$2") || return 1
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2" || return 1; fi
}
sysroot=$(rustc --print sysroot)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
[ -x "$sysroot/bin/cargo" ] || { bad setup "no cargo in $sysroot/bin (expected a rustup toolchain)"; echo "fresh-build: $pass passed, $fail failed"; exit 1; }
mkdir -p "$work/src"
git -C "$src" archive "${ROADGATE_FRESH_REV:-HEAD}" | tar -C "$work/src" -x
if ! { bind /proc "$root/proc" && bind /dev "$root/dev" && bind /sys "$root/sys" \
  && bind "$sysroot" "$root/opt/rust" ro \
  && bind "$cargo_home/registry" "$root/opt/cargo-home/registry" ro \
  && bind "$work/src" "$root/src" ro; }; then
  bad setup "bind mounts"
  echo "fresh-build: $pass passed, $fail failed"
  exit 1
fi
mkdir -p "$root/build"
in_root() { # runs a shell command in the root with the toolchain on PATH, cwd /build
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/opt/rust/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    CARGO_HOME=/opt/cargo-home CARGO_TARGET_DIR=/build/target LANG=C.UTF-8 \
    /bin/sh -c "cd /build && $1"
}

# ---- build -------------------------------------------------------------------------------------
echo "building in the root (from scratch, offline; this takes minutes)"
b0=$SECONDS
profile=${FRESH_PROFILE:-dev}
outdir=$([ "$profile" = dev ] && echo debug || echo "$profile")
if in_root "cargo build --profile $profile --locked --offline -p roadgate --manifest-path /src/Cargo.toml" >"$work/build.log" 2>&1; then
  ok build "cargo build --profile $profile --locked --offline -p roadgate in $((SECONDS - b0)) s"
else
  bad build "exit $?: $(grep -E '^error|error:' "$work/build.log" | head -5 | tr '\n' ' ') $(tail -5 "$work/build.log" | tr '\n' ' ')"
  cp "$work/build.log" "$cache/last-build.log"
  echo "  (the build log is kept in $cache/last-build.log)"
fi

# ---- what the root has -------------------------------------------------------------------------
dpkg_list >"$work/packages.after"
if cmp -s "$work/packages.before" "$work/packages.after"; then
  ok packages "the root's $(wc -l <"$work/packages.after") packages are the same after the build"
else
  bad packages "the package list changed: $(diff "$work/packages.before" "$work/packages.after" | grep '^[<>]' | tr '\n' ' ')"
fi
# gcc (gcc-12 -> libgcc-12-dev) and libc6-dev (-> linux-libc-dev, libcrypt-dev, libnsl-dev,
# libtirpc-dev) bring these; anything else ending in -dev would be a build-time need.
allowed_dev="libc6-dev libgcc-12-dev linux-libc-dev libcrypt-dev libnsl-dev libtirpc-dev"
extra=()
while read -r p; do
  case " $allowed_dev " in *" ${p%%:*} "*) ;; *) extra+=("$p") ;; esac
done < <(grep -E -- '-dev(:|$)' "$work/packages.after")
# (perl is there: bookworm's base has usrmerge, which needs it; nothing in the build calls it.)
forbidden=$(grep -E '^(libclang|clang|llvm|cmake|pkg-config|pkgconf|libpam0g-dev|libsqlite3-dev|libssl-dev|golang|nasm)' "$work/packages.after" | tr '\n' ' ')
if [ ${#extra[@]} -eq 0 ] && [ -z "$forbidden" ]; then
  ok deps "no libclang/clang/cmake/pkg-config and no -dev package but $(grep -E -- '-dev(:|$)' "$work/packages.after" | tr '\n' ' ')"
else
  bad deps "unexpected: ${extra[*]} $forbidden"
fi

bin=$root/build/target/$outdir/roadgate
if [ ! -x "$bin" ]; then
  bad run "no binary to run"
  echo "fresh-build: $pass passed, $fail failed ($((SECONDS - t0)) s)"
  exit 1
fi

# ---- run it ------------------------------------------------------------------------------------
# Running needs iproute2 (`ip route` for the pool's routes); minbase has none. It is installed now,
# after the build and its checks (it is a run-time need; the .debs are kept in $cache/debs).
mkdir -p "$cache/debs/partial"
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null
bind "$cache/debs" "$root/var/cache/apt/archives" || bad setup "bind $cache/debs"
if ! in_root 'apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -y -qq --no-install-recommends install iproute2' >"$work/iproute2.log" 2>&1; then
  echo "SKIP run: iproute2 (a run-time need) could not be installed in the root: $(tail -1 "$work/iproute2.log")"
  echo "fresh-build: $pass passed, $fail failed ($((SECONDS - t0)) s)"
  [ "$fail" = 0 ]
  exit
fi
v=$(in_root "/build/target/$outdir/roadgate --version" 2>&1)
if [[ $v == roadgate* ]]; then ok version "$v"; else bad version "$v"; fi

ip netns add "$ns" || { bad netns "cannot make $ns"; echo "fresh-build: $pass passed, $fail failed"; exit 1; }
ip -n "$ns" link set lo up
ip -n "$ns" addr add 192.0.2.1/32 dev lo || bad netns "address on lo"

# serve NAME ARGS...: runs `roadgate serve ARGS` in the namespace and the root for 4 s; log in
# $work/NAME.log.
serve() {
  local name=$1
  shift
  mkdir -p "$root/build/$name"
  ip netns exec "$ns" chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin \
    RUST_LOG=info /bin/sh -c "cd /build/$name && exec /build/target/$outdir/roadgate serve $*" \
    >"$work/$name.log" 2>&1 &
  server_pid=$!
  sleep 4
  if kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null
    echo "ROADGATE-FRESH: still running after 4 s" >>"$work/$name.log"
  else
    wait "$server_pid" 2>/dev/null
    echo "ROADGATE-FRESH: roadgate serve $* exited early" >>"$work/$name.log"
  fi
  server_pid=
}
# It listened and was still running after 4 s.
listened() { grep -q 'listening' "$work/$1.log" && grep -q '^ROADGATE-FRESH: still running' "$work/$1.log"; }

serve default
if listened default; then
  ok serve "the embedded default listens: $(grep -m1 'listening' "$work/default.log" | cut -c1-160)"
else
  bad serve "not listening, or exited: $(tail -5 "$work/default.log" | tr '\n' ' ')"
fi

cat >"$root/build/pam.toml" <<'EOF'
[server]
state_dir = "/build/pam-state"
[auth]
backends = ["pam", "local"]
EOF
libpam=$(find "$root/lib" "$root/usr/lib" -name 'libpam.so.0*' 2>/dev/null | head -1)
if [ -n "$libpam" ]; then
  serve pam-present --config /build/pam.toml
  if grep -q 'PAM: libpam loaded' "$work/pam-present.log" && listened pam-present; then
    ok pam-present "libpam0g is in the root (minbase: login needs it): the pam backend loads it, the server listens"
  else
    bad pam-present "$(grep -i -m3 'pam\|error' "$work/pam-present.log" | tr '\n' ' ')"
  fi
  find "$root/lib" "$root/usr/lib" -name 'libpam.so.0*' -delete 2>/dev/null
else
  echo "  (libpam0g is not in this root: only the missing case runs)"
fi
serve pam-missing --config /build/pam.toml
msg="PAM is not available on this machine: libpam.so.0 could not be loaded (Debian: apt install libpam0g)"
if grep -qF "$msg" "$work/pam-missing.log" && listened pam-missing; then
  ok pam-missing "without libpam.so.0 the log says \"$msg\" and the server still listens"
else
  bad pam-missing "$(grep -i -m3 'pam\|error' "$work/pam-missing.log" | tr '\n' ' ') $(tail -2 "$work/pam-missing.log" | tr '\n' ' ')"
fi

echo "fresh-build: $pass passed, $fail failed ($((SECONDS - t0)) s)"
[ "$fail" = 0 ]
