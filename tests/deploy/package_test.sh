#!/usr/bin/env bash
# The Debian packages: cpack -G DEB in the build folder, into a temporary folder, then on this
# machine.
#   - dpkg-deb: each package's name, version, dependencies (from dpkg-shlibdeps, and python3 for
#     schedd's providers), conffiles, maintainer scripts and files;
#   - dpkg -i of the three: the programs run from /usr/bin, schedd finds the packaged catalog and
#     loads /etc/sched/autoscale.yaml.example, a provider program runs from its folder, the user
#     sched and the state folders exist, the units are in /lib/systemd/system (and pass
#     systemd-analyze verify when it is installed), the man pages are found;
#   - dpkg --purge of sched-agent alone keeps the user (schedd still runs as it), then of the
#     others removes everything: programs, units, /etc/sched, the user and group, /var/lib/sched
#     and /var/lib/sched-agent.
# Needs root (exit 77, skipped, otherwise) and a machine without these packages or a user sched.
# Whatever happens, the packages it installed are purged on the way out, and the dependencies
# apt-get had to add are removed again.
#
# Usage: package_test.sh SOURCE_DIR, with $SCHED_BIN_DIR the build folder.
set -euo pipefail

src=${1:?usage: package_test.sh SOURCE_DIR}
build=${SCHED_BIN_DIR:?SCHED_BIN_DIR is not set (the build folder)}
packages=(sched-schedd sched-agent schedctl)
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

[[ $(id -u) -eq 0 ]] || skip "package_test installs packages: run it as root"
for tool in cpack dpkg dpkg-deb dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || fail "$tool not found (Debian packages cmake, dpkg-dev)"
done
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ -z $status || $status == not-installed ]] ||
    fail "$p is on this machine ($status): this test installs and purges it; remove it first"
done
getent passwd sched >/dev/null && fail "a user sched exists: this test makes and removes it"
for d in /var/lib/sched /var/lib/sched-agent /etc/sched; do
  [[ -e $d ]] && fail "$d exists: this test makes and removes it"
done
# cpack runs the build's "preinstall" target; it must not build (cmake/Packaging.cmake).
grep -q '^preinstall: all' "$build/Makefile" 2>/dev/null &&
  fail "the build's preinstall target builds everything: reconfigure ($build: cmake .)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sched_package_test.XXXXXX")
dpkg-query -W -f='${Package}\n' | sort >"$tmp/before"
schedd_pid=
cleanup() {
  local rc=$?
  [[ -n $schedd_pid ]] && kill "$schedd_pid" 2>/dev/null && wait "$schedd_pid" 2>/dev/null
  for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    if [[ -n $status && $status != not-installed ]]; then
      dpkg --purge "$p" >/dev/null 2>&1 || echo "cleanup: dpkg --purge $p failed" >&2
    fi
  done
  # Dependencies apt-get added for them.
  dpkg-query -W -f='${db:Status-Status} ${Package}\n' | awk '$1 == "installed" {print $2}' |
    sort >"$tmp/after"
  mapfile -t added < <(comm -13 "$tmp/before" "$tmp/after")
  if [[ ${#added[@]} -gt 0 ]]; then
    echo "cleanup: purging the dependencies added: ${added[*]}"
    dpkg --purge "${added[@]}" >/dev/null 2>&1 || echo "cleanup: could not purge ${added[*]}" >&2
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- the packages ------------------------------------------------------------------------------

(cd "$build" && cpack -G DEB -B "$tmp/out" --config "$build/CPackConfig.cmake") >"$tmp/cpack.log" \
  2>&1 || { cat "$tmp/cpack.log" >&2; fail "cpack -G DEB failed"; }
version=$(sed -n 's/^project(sched VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[[ -n $version ]] || fail "no project VERSION in $src/CMakeLists.txt"

deb_of() { compgen -G "$tmp/out/${1}_${version}_*.deb" | head -n 1; }
field() { dpkg-deb -f "$(deb_of "$1")" "$2"; }
has_file() {  # PACKAGE PATH
  dpkg-deb -c "$(deb_of "$1")" | awk '{print $6}' | grep -qx "\\.$2" ||
    fail "$1 has no $2:"$'\n'"$(dpkg-deb -c "$(deb_of "$1")")"
}
depends_on() {  # PACKAGE DEPENDENCY-NAME
  [[ ", $(field "$1" Depends)," == *", $2"[\ ,]* ]] ||
    fail "$1 does not depend on $2: Depends: $(field "$1" Depends)"
}

for p in "${packages[@]}"; do
  [[ -n $(deb_of "$p") ]] || fail "no ${p}_${version}_*.deb in: $(ls "$tmp/out")"
  [[ $(field "$p" Package) == "$p" ]] || fail "$p: Package: $(field "$p" Package)"
  [[ $(field "$p" Version) == "$version" ]] || fail "$p: Version: $(field "$p" Version)"
  [[ -n $(field "$p" Description) ]] || fail "$p has no Description"
  echo "$p: $(basename "$(deb_of "$p")"), Depends: $(field "$p" Depends)"
  # dpkg-shlibdeps found the C++ runtime and gRPC.
  depends_on "$p" libc6
  depends_on "$p" libstdc++6
  depends_on "$p" "libgrpc++1.51"
done
depends_on sched-schedd python3
depends_on sched-schedd adduser
depends_on sched-agent adduser

has_file sched-schedd /usr/bin/schedd
has_file sched-schedd /usr/share/sched/catalog.yaml
has_file sched-schedd /usr/lib/sched/providers/sched_provider.py
for prog in local slurm runpod vast aws; do
  has_file sched-schedd "/usr/lib/sched/providers/sched-provider-$prog"
done
has_file sched-schedd /lib/systemd/system/schedd.service
has_file sched-schedd /etc/sched/schedd.env
has_file sched-schedd /etc/sched/autoscale.yaml.example
has_file sched-schedd /usr/share/man/man1/schedd.1.gz
has_file sched-agent /usr/bin/sched-agent
has_file sched-agent /lib/systemd/system/sched-agent.service
has_file sched-agent /etc/sched/sched-agent.env
has_file sched-agent /usr/share/man/man1/sched-agent.1.gz
has_file schedctl /usr/bin/schedctl
has_file schedctl /usr/share/man/man1/schedctl.1.gz
if dpkg-deb -c "$(deb_of schedctl)" | grep -q "/etc/"; then fail "schedctl installs into /etc"; fi

control() {  # PACKAGE FILE: the control file's text, or nothing
  dpkg-deb --ctrl-tarfile "$(deb_of "$1")" | tar -xOf - "./$2" 2>/dev/null || true
}
schedd_conffiles=$'/etc/sched/schedd.env\n/etc/sched/autoscale.yaml.example'
[[ $(control sched-schedd conffiles) == "$schedd_conffiles" ]] ||
  fail "sched-schedd conffiles: $(control sched-schedd conffiles)"
[[ $(control sched-agent conffiles) == /etc/sched/sched-agent.env ]] ||
  fail "sched-agent conffiles: $(control sched-agent conffiles)"
for p in sched-schedd sched-agent; do
  for script in postinst prerm postrm; do
    control "$p" "$script" | sh -n || fail "$p $script does not parse"
    [[ -n $(control "$p" "$script") ]] || fail "$p has no $script"
  done
done
echo "ok: three packages, their dependencies, conffiles and files"

# ---- installed ---------------------------------------------------------------------------------

debs=()
for p in "${packages[@]}"; do debs+=("$(deb_of "$p")"); done
if ! dpkg -i "${debs[@]}" >"$tmp/dpkg.log" 2>&1; then
  echo "dpkg -i left dependencies missing; apt-get -f install:"
  grep -E "depends on|not installed" "$tmp/dpkg.log" || true
  apt-get -f install -y -q >"$tmp/apt.log" 2>&1 ||
    { cat "$tmp/dpkg.log" "$tmp/apt.log" >&2; fail "apt-get -f install failed"; }
fi
for p in "${packages[@]}"; do
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$p") == installed ]] ||
    fail "$p is not installed: $(cat "$tmp/dpkg.log")"
done

[[ $(command -v schedd) == /usr/bin/schedd ]] || fail "schedd is not /usr/bin/schedd"
# Abseil's --help exits 1; what matters is that it runs and says what it is.
help=$(/usr/bin/schedd --help 2>&1 || true)
[[ $help == *"the sched daemon"* ]] || fail "/usr/bin/schedd --help: $help"
help=$(/usr/bin/schedd --helpfull 2>&1 || true)
[[ $help == *"--data_dir"* ]] || fail "schedd --helpfull lists no flags: $help"
help=$(/usr/bin/schedctl --help) || fail "/usr/bin/schedctl --help: exit $?"
[[ $help == *"Subcommands:"* ]] || fail "/usr/bin/schedctl --help: $help"
detected=$(/usr/bin/sched-agent --detect_only --gpu_detection=none --work_dir="$tmp") ||
  fail "/usr/bin/sched-agent --detect_only: exit $?"
[[ $detected == *'"agent_version": "'"$version"'"'* ]] ||
  fail "/usr/bin/sched-agent --detect_only: $detected"
echo "ok: schedd, schedctl and sched-agent run from /usr/bin"

# schedd finds the packaged catalog by itself and loads the example autoscale file.
/usr/bin/schedd --data_dir="$tmp/data" --listen=127.0.0.1:0 --metrics_listen= \
  --autoscale_config=/etc/sched/autoscale.yaml.example >"$tmp/schedd.log" 2>&1 &
schedd_pid=$!
for _ in $(seq 100); do
  grep -q "serving gRPC" "$tmp/schedd.log" && break
  kill -0 "$schedd_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q "serving gRPC" "$tmp/schedd.log" || fail "schedd did not start: $(cat "$tmp/schedd.log")"
grep -q "catalog /usr/share/sched/catalog.yaml" "$tmp/schedd.log" ||
  fail "schedd did not take /usr/share/sched/catalog.yaml: $(cat "$tmp/schedd.log")"
kill "$schedd_pid"
wait "$schedd_pid" || fail "schedd did not stop cleanly: $(cat "$tmp/schedd.log")"
schedd_pid=
echo "ok: schedd took /usr/share/sched/catalog.yaml and /etc/sched/autoscale.yaml.example"

# A provider program finds sched_provider.py beside it.
offers=$(echo '{"protocol": 1, "provider": "local", "config": {}}' |
  /usr/lib/sched/providers/sched-provider-local offers) ||
  fail "sched-provider-local offers: $offers"
[[ $offers == *'"offers"'* ]] || fail "sched-provider-local offers: $offers"
echo "ok: /usr/lib/sched/providers/sched-provider-local answers"

IFS=: read -r _ _ uid _ _ home shell < <(getent passwd sched) || fail "no user sched"
[[ $home == /var/lib/sched ]] || fail "sched's home is $home"
[[ $uid -lt 1000 ]] || fail "sched is not a system user (uid $uid)"
[[ $shell == */nologin || $shell == /bin/false ]] || fail "sched has a login shell: $shell"
getent group sched >/dev/null || fail "no group sched"
for d in /var/lib/sched /var/lib/sched-agent; do
  [[ $(stat -c '%U:%G %a' "$d") == "sched:sched 700" ]] || fail "$d: $(stat -c '%U:%G %a' "$d")"
done
for unit in schedd sched-agent; do
  [[ -f /lib/systemd/system/$unit.service ]] || fail "no /lib/systemd/system/$unit.service"
done
for f in schedd.env sched-agent.env autoscale.yaml.example; do
  [[ $(stat -c '%U %a' "/etc/sched/$f") == "root 640" ]] ||
    fail "/etc/sched/$f: $(stat -c '%U %a' "/etc/sched/$f")"
done
if command -v man >/dev/null; then
  for page in schedd sched-agent schedctl; do
    [[ $(man -w "$page" 2>/dev/null) == /usr/share/man/man1/$page.1.gz ]] ||
      fail "man -w $page: $(man -w "$page" 2>&1)"
  done
fi
echo "ok: user sched ($uid, home $home), state folders, units, conffiles, man pages"

if command -v systemd-analyze >/dev/null; then
  # Offline: checks the units' syntax, directives and that ExecStart's program exists.
  verify=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no \
    /lib/systemd/system/schedd.service /lib/systemd/system/sched-agent.service 2>&1) ||
    fail "systemd-analyze verify:"$'\n'"$verify"
  [[ -z $verify ]] || fail "systemd-analyze verify says:"$'\n'"$verify"
  echo "ok: systemd-analyze verify"
else
  echo "systemd-analyze not installed: units not verified"
fi

# ---- purged ------------------------------------------------------------------------------------

dpkg --purge sched-agent >"$tmp/purge.log" 2>&1 ||
  fail "dpkg --purge sched-agent: $(cat "$tmp/purge.log")"
getent passwd sched >/dev/null || fail "purging sched-agent removed the user schedd runs as"
[[ -d /var/lib/sched && ! -e /var/lib/sched-agent ]] ||
  fail "after purging sched-agent: /var/lib/sched-agent should be gone, /var/lib/sched kept"
[[ -f /etc/sched/schedd.env && ! -e /etc/sched/sched-agent.env ]] ||
  fail "after purging sched-agent: $(ls /etc/sched)"
echo "ok: purging sched-agent alone keeps the user and schedd's files"

dpkg --purge sched-schedd schedctl >>"$tmp/purge.log" 2>&1 ||
  fail "dpkg --purge: $(cat "$tmp/purge.log")"
for f in /usr/bin/schedd /usr/bin/sched-agent /usr/bin/schedctl /usr/lib/sched \
  /usr/share/sched /lib/systemd/system/schedd.service /lib/systemd/system/sched-agent.service \
  /etc/sched /var/lib/sched /var/lib/sched-agent /usr/share/man/man1/schedd.1.gz; do
  [[ ! -e $f ]] || fail "$f is still there after the purge"
done
getent passwd sched >/dev/null && fail "the user sched is still there after the purge"
getent group sched >/dev/null && fail "the group sched is still there after the purge"
echo "ok: purged: programs, units, /etc/sched, /var/lib/sched*, the user and group are gone"
echo "PASS"
