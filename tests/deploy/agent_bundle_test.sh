#!/usr/bin/env bash
# The self-contained agent bundle (deploy/bundle/make-agent-bundle.sh), made from the build folder
# and unpacked into a temporary folder:
#   - it holds bin/sched-agent, lib/, install-agent.sh and VERSION, and nothing named sched-agent
#     twice (the providers' boot script links the first one it finds);
#   - with LD_LIBRARY_PATH empty, ldd resolves every library inside the bundle, or to glibc or the
#     C++ runtime (libstdc++, libgcc_s), which are left to the machine;
#   - bin/sched-agent --detect_only --gpu_detection=none prints the capabilities as JSON;
#   - the bundle asks glibc for 2.34 at most (Ubuntu 22.04 has 2.35), as objdump shows;
#   - as root, it also runs in a root folder holding nothing but glibc, the C++ runtime and the
#     bundle (chroot in a mount namespace of its own): no library comes from Debian's.
#
# Usage: agent_bundle_test.sh SOURCE_DIR, with $SCHED_BIN_DIR the build folder.
set -euo pipefail

src=${1:?usage: agent_bundle_test.sh SOURCE_DIR}
build=${SCHED_BIN_DIR:?SCHED_BIN_DIR is not set (the build folder)}
fail() { echo "FAIL: $*" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sched_agent_bundle_test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

"$src/deploy/bundle/make-agent-bundle.sh" "$build" "$tmp/bundle.tar.gz" >"$tmp/make.log" 2>&1 ||
  { cat "$tmp/make.log" >&2; fail "make-agent-bundle.sh failed"; }
cat "$tmp/make.log"
mkdir "$tmp/unpacked"
tar -xzf "$tmp/bundle.tar.gz" -C "$tmp/unpacked"
root=$tmp/unpacked/sched-agent-bundle
for f in bin/sched-agent install-agent.sh VERSION; do
  [[ -f $root/$f ]] || fail "the bundle has no $f"
done
[[ -x $root/bin/sched-agent && -x $root/install-agent.sh ]] || fail "not executable"
[[ $(find "$tmp/unpacked" -name sched-agent -type f | wc -l) -eq 1 ]] ||
  fail "more than one file named sched-agent in the bundle"
cmp -s "$root/install-agent.sh" "$src/deploy/install-agent.sh" ||
  fail "install-agent.sh in the bundle differs from deploy/install-agent.sh"

# Every library resolved inside the bundle, or one the machine is expected to have.
system_lib='^(linux-vdso|ld-linux.*|libc|libm|libpthread|libdl|librt|libresolv'
system_lib+='|libstdc\+\+|libgcc_s)\.so'
ldd_out=$(env LD_LIBRARY_PATH= ldd "$root/bin/sched-agent")
bundled=0
while read -r name arrow path _; do
  [[ -z $name ]] && continue
  if [[ $arrow == "=>" && $path == "not" ]]; then
    fail "ldd: $name not found:"$'\n'"$ldd_out"
  fi
  if [[ $arrow == "=>" && $(realpath -m "$path") == "$(realpath "$root/lib")"/* ]]; then
    bundled=$((bundled + 1))
    continue
  fi
  [[ $(basename "$name") =~ $system_lib ]] ||
    fail "ldd: $name comes from outside the bundle ($path) and is not glibc's:"$'\n'"$ldd_out"
done <<<"$ldd_out"
[[ $bundled -ge 10 ]] || fail "only $bundled libraries resolved inside the bundle"
# The bundled libraries find each other too (RUNPATH $ORIGIN), not only through the binary's.
for lib in "$root"/lib/*; do
  if env LD_LIBRARY_PATH= ldd "$lib" | grep -q "not found"; then
    fail "ldd $lib: $(env LD_LIBRARY_PATH= ldd "$lib" | grep "not found")"
  fi
done

check_json() {  # FILE WHAT
  python3 - "$1" "$2" <<'EOF'
import json, sys
path, what = sys.argv[1], sys.argv[2]
try:
    caps = json.load(open(path))
except ValueError as e:
    sys.exit("FAIL: %s: not JSON: %s\n%s" % (what, e, open(path).read()))
for key in ("cpus", "memory_bytes", "agent_version", "gpu_detection", "provider"):
    if key not in caps:
        sys.exit("FAIL: %s: no %r in %s" % (what, key, caps))
if caps["gpu_detection"] != "none" or caps["cpus"] <= 0:
    sys.exit("FAIL: %s: unexpected %s" % (what, caps))
print("%s: %s CPUs, agent %s" % (what, caps["cpus"], caps["agent_version"]))
EOF
}

mkdir "$tmp/work"
env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH= "$root/bin/sched-agent" --detect_only \
  --gpu_detection=none --work_dir="$tmp/work" >"$tmp/detect.json" 2>"$tmp/detect.err" ||
  fail "bin/sched-agent --detect_only: $(cat "$tmp/detect.err")"
check_json "$tmp/detect.json" "the bundled agent"

glibc=$(for f in "$root/bin/sched-agent" "$root"/lib/*; do
  objdump -T "$f" | awk '/\*UND\*/' | grep -o '(GLIBC_[0-9.]*)' | tr -d '()' || true
done | sort -uV | tail -n 1)
echo "max GLIBC symbol version: $glibc"
[[ $(printf '%s\nGLIBC_2.34\n' "$glibc" | sort -V | tail -n 1) == GLIBC_2.34 ]] ||
  fail "the bundle needs $glibc: more than Ubuntu 22.04's glibc 2.35 and the 2.34 aimed at"
grep -q "needs glibc ${glibc#GLIBC_}" "$root/VERSION" || fail "VERSION does not say $glibc"

# Nothing but glibc and the C++ runtime: a root folder of its own.
if [[ $(id -u) -ne 0 ]] || ! command -v unshare >/dev/null; then
  echo "SKIP the chroot run: needs root and unshare"
  echo "PASS"
  exit 0
fi
jail=$tmp/jail
mkdir -p "$jail/proc" "$jail/tmp" "$jail/etc" "$jail/opt"
cp -a "$root" "$jail/opt/"
while read -r lib; do
  mkdir -p "$jail$(dirname "$lib")"
  cp -L "$lib" "$jail$lib"
done < <(ldd "$build/bin/sched-agent" | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i}' |
  grep -E '/(ld-linux[^/]*|libc|libm|libstdc\+\+|libgcc_s)\.so[^/]*$')
cp /etc/passwd /etc/group "$jail/etc/"
# shellcheck disable=SC2016 # $1 is for the inner shell
unshare --mount --fork sh -c '
  mount -t proc proc "$1/proc" && exec chroot "$1" /opt/sched-agent-bundle/bin/sched-agent \
    --detect_only --gpu_detection=none --work_dir=/tmp' sh "$jail" \
  >"$tmp/jail.json" 2>"$tmp/jail.err" ||
  fail "in a root folder of glibc and the bundle alone: $(cat "$tmp/jail.err")"
check_json "$tmp/jail.json" "the bundled agent alone with glibc and libstdc++"
echo "PASS"
