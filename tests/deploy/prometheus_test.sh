#!/usr/bin/env bash
# deploy/prometheus: the scrape config and the alert rules are valid, the rules' unit tests pass,
# every alert is tested firing and not firing, and every runbook link names a section of
# docs/operations.md. Needs promtool (Debian package prometheus; deploy/install-deps.sh --tests).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$root/deploy/prometheus"
ops="$root/docs/operations.md"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

command -v promtool >/dev/null ||
  fail "promtool not found: install the Debian package prometheus (deploy/install-deps.sh --tests)"

echo "== promtool check config"
promtool check config "$dir/prometheus.yml" || fail "promtool check config prometheus.yml"
echo "== promtool check rules"
promtool check rules "$dir/alerts.yml" || fail "promtool check rules alerts.yml"
echo "== promtool test rules"
(cd "$dir" && promtool test rules alerts_test.yml) || fail "promtool test rules alerts_test.yml"

# The alerts, in the order alerts.yml gives them.
mapfile -t alerts < <(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\) *$/\1/p' "$dir/alerts.yml")
[ "${#alerts[@]}" -gt 0 ] || fail "no alerts found in alerts.yml"

# Each alert has at least one test case where it fires and one where it does not.
echo "== every alert tested firing and not firing"
cases="$(awk '
  /^ *alertname:/ { name = $2 }
  /^ *exp_alerts: *\[\] *$/ { if (name != "") print name, "quiet"; name = ""; next }
  /^ *exp_alerts: *$/ { if (name != "") print name, "fires"; name = "" }
' "$dir/alerts_test.yml")"
for a in "${alerts[@]}"; do
  grep -qx "$a fires" <<<"$cases" || fail "alerts_test.yml has no case where $a fires"
  grep -qx "$a quiet" <<<"$cases" || fail "alerts_test.yml has no case where $a stays quiet"
done

# Each alert's runbook is docs/operations.md#<its name in lower case>, and that heading exists
# (anchors as GitHub makes them: lower case, spaces to dashes, other punctuation dropped).
echo "== runbook links"
anchors="$(sed -n 's/^#\{1,6\} *//p' "$ops" | tr '[:upper:]' '[:lower:]' | tr ' ' '-' |
           tr -cd 'a-z0-9_\n-')"
mapfile -t runbooks < <(sed -n 's/^ *runbook: *//p' "$dir/alerts.yml")
[ "${#runbooks[@]}" -eq "${#alerts[@]}" ] ||
  fail "${#alerts[@]} alerts but ${#runbooks[@]} runbook annotations in alerts.yml"
for i in "${!alerts[@]}"; do
  want="docs/operations.md#$(tr '[:upper:]' '[:lower:]' <<<"${alerts[$i]}")"
  [ "${runbooks[$i]}" = "$want" ] || fail "${alerts[$i]}: runbook is ${runbooks[$i]}, want $want"
  grep -qx "${want#*#}" <<<"$anchors" || fail "docs/operations.md has no heading for $want"
done

echo "PASS: ${#alerts[@]} alerts: ${alerts[*]}"
