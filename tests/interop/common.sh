# Shared set-up of the real-peer scripts: sourced after `name` (for SKIP lines) and `out` (the
# script's output folder) are set. Skips (exit 0) without root, the harness or qemu; builds the
# server if no binary is given; builds the VM image and brings the harness network up, and tears it
# (and a server left in $srv) down on exit.
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
harness=${ROADGATE_HARNESS:-$top/../shared/harness}
vm="$harness/vm.sh"
out=${ROADGATE_INTEROP_OUT:-$top/target/interop}${subdir:-}
mkdir -p "$out"
rm -f "$out/results.txt"

skip() { echo "SKIP interop/$name: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, VMs)"
[ -x "$vm" ] || skip "harness not found at $vm"
command -v qemu-system-x86_64 >/dev/null 2>&1 || "$vm" deps >/dev/null 2>&1 || skip "qemu could not be installed"

bin=${ROADGATE_BIN:-$top/target/release/roadgate}
if [ ! -x "$bin" ]; then
  (cd "$top" && cargo build --release -p roadgate) || { echo "FAIL: build"; exit 1; }
fi

"$vm" build >"$out/vm-build.log" 2>&1 || { echo "FAIL: vm.sh build (see $out/vm-build.log)"; exit 1; }
"$vm" net up >"$out/net-up.log" 2>&1 || { echo "FAIL: vm.sh net up"; exit 1; }
trap '"$vm" net down >/dev/null 2>&1; [ -n "${srv:-}" ] && kill "$srv" 2>/dev/null' EXIT
