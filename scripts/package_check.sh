#!/usr/bin/env bash
# Builds the Debian packages, installs them into this machine the way a user does
# (apt install ./zmqkit-*.deb), uses them, removes them, and checks nothing is left.
#   scripts/package_check.sh [BUILD_DIR]     (default build-deb; needs root or sudo)
# Steps: cpack -> apt install -> consumer built with CMake and with pkg-config against
# /usr -> the programs run -> apt purge -> every file and directory the packages
# brought is gone again.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${1:-build-deb}
out=$build/packages
packages=(libzmqkit-dev zmqkit)
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
apt_get() { DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get -y -qq "$@"; }
say() { printf -- '-- package_check: %s\n' "$*"; }
fail() { printf -- '-- package_check: FAILED: %s\n' "$*" >&2; exit 1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

for p in "${packages[@]}"; do
  if installed "$p"; then
    say "$p is installed from an earlier run: purging it first"
    apt_get purge "$p" >/dev/null
  fi
done

say "build (Release, prefix /usr) and cpack"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DZMQKIT_BUILD_TESTS=OFF -DZMQKIT_BUILD_BENCH=OFF -DZMQKIT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
rm -rf "$out"
(cd "$build" && cpack -G DEB -B "$PWD/packages" >/dev/null)
rm -rf "$out/_CPack_Packages"
debs=("$out"/zmqkit-*.deb)
((${#debs[@]} == 2)) || fail "expected 2 packages in $out, found: ${debs[*]}"
for deb in "${debs[@]}"; do
  say "$(basename "$deb"): $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)," \
    "Depends: $(dpkg-deb -f "$deb" Depends)"
done
# The programs' dependencies come from dpkg-shlibdeps: libzmq must be among them.
dpkg-deb -f "$out"/zmqkit-bin_*.deb Depends | grep -q 'libzmq5' || fail "zmqkit does not depend on libzmq5"

# What the packages bring: files, and the directories that do not exist yet (removal
# must take exactly those away again, and leave the ones that were there before).
work=$(mktemp -d)
queue_pid=""
cleanup() {
  if [ -n "$queue_pid" ]; then kill "$queue_pid" 2>/dev/null || true; fi
  for p in "${packages[@]}"; do installed "$p" && apt_get purge "$p" >/dev/null 2>&1; done
  rm -rf "$work"
}
trap cleanup EXIT
for deb in "${debs[@]}"; do dpkg-deb -c "$deb"; done | awk '{print $6}' | sed 's|^\./|/|; s|/$||' |
  grep -v '^/\?$' | sort -u >"$work/contents"
: >"$work/new"
while read -r path; do [ -e "$path" ] || echo "$path" >>"$work/new"; done <"$work/contents"
say "$(wc -l <"$work/contents") paths in the packages, $(wc -l <"$work/new") of them new to this machine"

say "apt install ./zmqkit-*.deb"
apt_get install "${debs[@]/#/$root/}" >/dev/null
for p in "${packages[@]}"; do installed "$p" || fail "$p did not install"; done

expected_version=$(dpkg-query -W -f='${Version}' zmqkit)
expected_version=${expected_version%-*}
got=$(zmqkit-queue --version)
[ "$got" = "$expected_version" ] || fail "zmqkit-queue --version printed '$got', expected '$expected_version'"
say "zmqkit-queue --version: $got"
zmqkit-forwarder --version | grep -qx "zmqkit-forwarder $expected_version" || fail "zmqkit-forwarder --version"
zmqkit --help >/dev/null || fail "zmqkit --help"

say "systemd units and their conffiles"
conffiles=$(dpkg-query -W -f='${Conffiles}' zmqkit)
for conf in /etc/zmqkit/queue.toml /etc/zmqkit/forwarder.toml; do
  [ -f "$conf" ] && grep -q "$conf" <<<"$conffiles" || fail "$conf is not a conffile of zmqkit"
done
units=(/usr/lib/systemd/system/zmqkit-queue.service /usr/lib/systemd/system/zmqkit-forwarder.service)
verify_rc=0
tests/packaging/verify_units.sh "${units[@]}" || verify_rc=$?
case $verify_rc in
  0) ;;
  77) say "systemd-analyze skipped (reason above)" ;;
  *) fail "systemd-analyze on the installed units" ;;
esac
zmqkit-keygen --help >/dev/null || fail "zmqkit-keygen --help"

# README's third command: the service as the unit starts it (its ExecStart line, the shipped
# /etc/zmqkit/queue.toml), answering on the dashboard port. systemd itself cannot run in a
# container, so the unit's own start is not tried; its command line and config are.
exec_start=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/system/zmqkit-queue.service)
dashboard=$(sed -n 's/^http = "\(.*\)"/\1/p' /etc/zmqkit/queue.toml)
[ -n "$exec_start" ] && [ -n "$dashboard" ] || fail "no ExecStart in the unit or no http in queue.toml"
overrides=()
if ss -ltnH | awk '{print $4}' | grep -qE ':(5555|5556|5557|9102)$'; then
  say "a shipped port (5555-5557, 9102) is taken here: running the unit's command with private endpoints"
  overrides=(--frontend "ipc://$work/front" --backend "ipc://$work/back" --admin "ipc://$work/admin"
    --http 127.0.0.1:0)
fi
say "the unit's command: $exec_start ${overrides[*]}"
: >"$work/queue.log"
$exec_start "${overrides[@]}" 2>"$work/queue.log" &
queue_pid=$!
url=""
for _ in $(seq 100); do
  url=$(grep -o 'dashboard http://[^ ]*/' "$work/queue.log" | head -1 | sed 's/^dashboard //') && [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/queue.log"; fail "zmqkit-queue from the unit's command line did not start"; }
api=$(curl -fsS "${url}api/stats") && grep -q '"program":"zmqkit-queue"' <<<"$api" || fail "no /api/stats at $url"
page=$(curl -fsS "$url") && grep -q '<title>zmqkit-queue</title>' <<<"$page" || fail "no dashboard page at $url"
kill -TERM "$queue_pid"
wait "$queue_pid" || { queue_pid=""; fail "zmqkit-queue did not exit 0 on SIGTERM"; }
queue_pid=""
say "dashboard answered at $url; SIGTERM: exit 0"

say "consumer with CMake, against the installed package (no prefix path: /usr)"
cmake -S tests/install/consumer -B "$work/consumer-cmake" -G Ninja >/dev/null
cmake --build "$work/consumer-cmake" >/dev/null
"$work/consumer-cmake/consumer"
say "consumer with pkg-config: $(pkg-config --modversion zmqkit)"
c++ -std=c++20 -o "$work/consumer-pc" tests/install/consumer/main.cpp $(pkg-config --cflags --libs zmqkit)
"$work/consumer-pc"
# A static link (--static) resolves Requires.private: Abseil and libsodium must be in it.
# (Not linked here: Debian 12's libzmq.pc pulls in norm.pc, whose static libs do not link.)
static_libs=$(pkg-config --static --libs zmqkit)
for lib in -lzmqkit -labsl_raw_hash_set -lsodium -lzmq; do
  grep -qw -- "$lib" <<<"$static_libs" || fail "pkg-config --static --libs zmqkit lacks $lib"
done

say "apt purge ${packages[*]}"
apt_get purge "${packages[@]}" >/dev/null
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case $status in "" | *not-installed) ;; *) fail "$p still known to dpkg after purge: $status" ;; esac
done
left=()
while read -r path; do [ -e "$path" ] && left+=("$path"); done <"$work/new"
((${#left[@]} == 0)) || fail "left behind after purge: ${left[*]}"
say "removed cleanly: none of the $(wc -l <"$work/new") new paths is left"
echo "package check passed"
