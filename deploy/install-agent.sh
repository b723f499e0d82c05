#!/usr/bin/env bash
# Starts sched-agent on a rented machine: a RunPod pod's start command, a Vast.ai on-start script,
# cloud-init user data on AWS or GCP, or by hand.
#
#   SCHED_SERVER=sched.example.com:7070 SCHED_CA_PIN=sha256:... SCHED_TOKEN=<id>.<secret> \
#   SCHED_PRICE_PER_HOUR=0.44 install-agent.sh [--supervise] [--dry-run] [-- AGENT FLAGS...]
#
# Environment:
#   SCHED_SERVER          schedd's address, host:port (required)
#   SCHED_TOKEN           the join token (role agent); or SCHED_TOKEN_FILE, a file holding it.
#                         Never printed. Not needed once the agent has its node certificate
#   SCHED_CA_PIN          schedd's CA pin, sha256:<hex>: TLS, checked before the token is sent
#                         (or SCHED_CA_FILE, schedd's ca.crt). Without either: plaintext
#   SCHED_PRICE_PER_HOUR  what the machine costs, dollars an hour
#   SCHED_SPOT            true or false: spot (interruptible) capacity; found by itself on AWS and
#                         GCP, to be given on RunPod and Vast.ai
#   SCHED_NODE_NAME       the node's name; default runpod-<pod id>, vast-<instance id>, the AWS
#                         instance id, the GCE instance name, else the host name
#   SCHED_WORK_DIR        the agent's folder (node identity, jobs); default /var/lib/sched-agent
#                         (root) or ~/.local/state/sched-agent
#   SCHED_BUNDLE_URL      where to download the agent bundle (.tar.gz from
#                         deploy/bundle/make-agent-bundle.sh, or the bare binary; https://,
#                         http:// or file://) when no sched-agent is found
#   SCHED_AGENT           the agent's path, in place of looking for it: the bundle this script is
#                         in, then SCHED_PREFIX/bin, then PATH
#   SCHED_PREFIX          where a downloaded bundle goes; default /opt/sched (root) or
#                         ~/.local/share/sched
#   SCHED_PROVIDER        the provider's name, in place of detecting it
#   SCHED_AWS_METADATA_URL, SCHED_GCP_METADATA_URL
#                         the metadata servers (defaults: the agent's); SCHED_METADATA_TIMEOUT
#                         seconds each question may take (default 2)
#
# The provider: sched-agent itself finds RunPod (RUNPOD_POD_ID) and Vast.ai (VAST_CONTAINERLABEL,
# CONTAINER_ID). AWS and GCP it cannot tell from a machine of one's own, so this script asks their
# metadata servers (briefly: no answer within the timeout means neither) and passes --provider,
# --region, --instance_type and --spot=true on a spot machine, which also turns on the agent's
# preemption notices from that provider.
#
# The agent runs in the foreground, in place of this script (exec): a container's main process,
# which gets the container's SIGTERM itself. With --supervise, this script stays as its parent and
# starts it again when it exits with a failure (1 s, doubling to 60 s; back to 1 s after a run of
# a minute), stops when it exits 0 (stopped, or gone after a preemption notice) or 2 (a setting, a
# pin or a token it refuses: starting again would fail the same way), and passes SIGTERM, SIGINT
# and SIGHUP on to it, so a spot preemption's SIGTERM reaches the agent as a notice. Under
# --supervise a SCHED_TOKEN is written to SCHED_WORK_DIR/join.token (0600) and the script starts
# itself again without it in its environment; the file goes once the agent holds its node
# certificate (TLS).
#
# --dry-run prints what was found and the agent's command line (the token masked) and runs
# nothing. Exit status: the agent's; 1 when something needed is missing.
set -euo pipefail

prog=install-agent
say() { echo "$prog: $*" >&2; }
die() { say "$*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]:-}" 2>/dev/null ||
    echo "usage: install-agent.sh [--supervise] [--dry-run] [-- AGENT FLAGS...]"
}

supervise=0
dry_run=0
extra_args=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --supervise) supervise=1 ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; extra_args=("$@"); break ;;
    *) say "unknown option $1 (agent flags go after --)"; usage >&2; exit 2 ;;
  esac
  shift
done

[[ -n ${SCHED_SERVER:-} ]] || die "SCHED_SERVER is not set: schedd's address, host:port"

if [[ $(id -u) -eq 0 ]]; then
  work_dir=${SCHED_WORK_DIR:-/var/lib/sched-agent}
  prefix=${SCHED_PREFIX:-/opt/sched}
else
  work_dir=${SCHED_WORK_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/sched-agent}
  prefix=${SCHED_PREFIX:-${XDG_DATA_HOME:-$HOME/.local/share}/sched}
fi
tls=0
[[ -n ${SCHED_CA_PIN:-} || -n ${SCHED_CA_FILE:-} ]] && tls=1

# ---- the token: never printed, and under --supervise not kept in this script's environment ----

own_token_file=${SCHED_INSTALL_OWN_TOKEN_FILE:-}
if [[ $supervise -eq 1 && -n ${SCHED_TOKEN:-} && $dry_run -eq 0 ]]; then
  mkdir -p "$work_dir"
  own_token_file=$work_dir/join.token
  (umask 077 && printf '%s\n' "$SCHED_TOKEN" >"$own_token_file")
  script=${BASH_SOURCE[0]:-}
  if [[ -f $script && -r $script ]]; then
    # /proc/<pid>/environ keeps a process's starting environment, and jobs run as this user.
    exec env -u SCHED_TOKEN SCHED_TOKEN_FILE="$own_token_file" \
      SCHED_INSTALL_OWN_TOKEN_FILE="$own_token_file" bash "$script" --supervise -- \
      "${extra_args[@]}"
  fi
  say "not started from a file (piped into bash?): the token stays in this shell's environment too"
  export SCHED_TOKEN_FILE=$own_token_file
  unset SCHED_TOKEN
fi

# ---- the agent ---------------------------------------------------------------------------------

fetch() {  # URL FILE
  local url=$1 file=$2
  case $url in
    file://*) cp "${url#file://}" "$file"; return ;;
    /*) cp "$url" "$file"; return ;;
  esac
  if ! command -v curl >/dev/null 2>&1 && ! command -v wget >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      say "neither curl nor wget: installing curl"
      apt-get update -qq && apt-get install -y -qq --no-install-recommends curl ca-certificates
    else
      die "neither curl nor wget to download $url"
    fi
  fi
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 5 -o "$file" "$url"
  else
    wget -q -O "$file" "$url"
  fi
}

find_agent() {
  local here
  if [[ -n ${SCHED_AGENT:-} ]]; then
    echo "$SCHED_AGENT"
    return
  fi
  here=
  if [[ -n ${BASH_SOURCE[0]:-} ]]; then
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" 2>/dev/null && pwd) || here=
  fi
  if [[ -n $here && -x $here/bin/sched-agent ]]; then
    echo "$here/bin/sched-agent"
  elif [[ -x $prefix/bin/sched-agent ]]; then
    echo "$prefix/bin/sched-agent"
  else
    command -v sched-agent || true
  fi
}

install_bundle() {  # URL: unpacks into $prefix/bundle, links $prefix/bin/sched-agent
  local url=$1 download found
  mkdir -p "$prefix/bin" "$prefix/bundle"
  download=$prefix/bundle.download
  say "downloading the agent from $url"
  fetch "$url" "$download"
  case $url in
    *.tar.gz | *.tgz)
      tar -xzf "$download" -C "$prefix/bundle"
      rm -f "$download"
      found=$(find "$prefix/bundle" -path '*/bin/sched-agent' -type f | head -n 1)
      [[ -n $found ]] || found=$(find "$prefix/bundle" -name sched-agent -type f | head -n 1)
      [[ -n $found ]] || die "no sched-agent in $url"
      ln -sf "$found" "$prefix/bin/sched-agent" ;;
    *)
      mv "$download" "$prefix/bin/sched-agent" ;;
  esac
  chmod 0755 "$prefix/bin/sched-agent"
}

agent=$(find_agent)
if [[ -z $agent ]]; then
  [[ -n ${SCHED_BUNDLE_URL:-} ]] ||
    die "no sched-agent found (SCHED_AGENT, this script's bundle, $prefix/bin, PATH)" \
      "and no SCHED_BUNDLE_URL to download it from"
  if [[ $dry_run -eq 1 ]]; then
    say "would download $SCHED_BUNDLE_URL into $prefix"
  else
    install_bundle "$SCHED_BUNDLE_URL"
  fi
  agent=$prefix/bin/sched-agent
elif [[ ! -x $agent ]]; then
  die "$agent is not an executable file"
fi

# ---- the provider ------------------------------------------------------------------------------

timeout_s=${SCHED_METADATA_TIMEOUT:-2}
aws_url=${SCHED_AWS_METADATA_URL:-http://169.254.169.254}
gcp_url=${SCHED_GCP_METADATA_URL:-http://metadata.google.internal}

http_get() {  # URL [HEADER]: the body, or failure
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --connect-timeout "$timeout_s" --max-time "$timeout_s" ${2:+-H "$2"} "$1" 2>/dev/null
  else
    wget -q -T "$timeout_s" -t 1 ${2:+--header="$2"} -O - "$1" 2>/dev/null
  fi
}

# AWS (IMDSv2): a session token first, then the answers.
aws_token=
aws_get() { http_get "$aws_url/latest/meta-data/$1" "X-aws-ec2-metadata-token: $aws_token"; }
detect_aws() {
  if command -v curl >/dev/null 2>&1; then
    aws_token=$(curl -fsS --connect-timeout "$timeout_s" --max-time "$timeout_s" -X PUT \
      -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$aws_url/latest/api/token" 2>/dev/null) ||
      return 1
  else
    aws_token=$(wget -q -T "$timeout_s" -t 1 --method=PUT \
      --header="X-aws-ec2-metadata-token-ttl-seconds: 300" -O - "$aws_url/latest/api/token" \
      2>/dev/null) || return 1
  fi
  [[ -n $aws_token ]] || return 1
  aws_instance_id=$(aws_get instance-id) || return 1
  aws_region=$(aws_get placement/region || true)
  if [[ -z $aws_region ]]; then
    aws_region=$(aws_get placement/availability-zone || true)
    aws_region=${aws_region%[a-z]}
  fi
  aws_instance_type=$(aws_get instance-type || true)
  aws_life_cycle=$(aws_get instance-life-cycle || true)
}

gcp_get() { http_get "$gcp_url/computeMetadata/v1/instance/$1" "Metadata-Flavor: Google"; }
detect_gcp() {
  gcp_name=$(gcp_get name) || return 1
  [[ -n $gcp_name ]] || return 1
  local zone
  zone=$(gcp_get zone || true)
  zone=${zone##*/}
  gcp_region=${zone%-*}
  gcp_machine_type=$(gcp_get machine-type || true)
  gcp_machine_type=${gcp_machine_type##*/}
  gcp_model=$(gcp_get scheduling/provisioning-model || true)
  gcp_preemptible=$(gcp_get scheduling/preemptible || true)
}

# What sched-agent is told, beyond what it finds by itself.
provider_args=()
node_name=${SCHED_NODE_NAME:-}
spot=${SCHED_SPOT:-}
if [[ -n ${SCHED_PROVIDER:-} ]]; then
  provider=$SCHED_PROVIDER
  how="given in SCHED_PROVIDER"
  provider_args+=("--provider=$provider")
elif [[ -n ${RUNPOD_POD_ID:-} ]]; then
  provider=runpod
  how="found by sched-agent (RUNPOD_POD_ID)"
  node_name=${node_name:-runpod-$RUNPOD_POD_ID}
elif [[ -n ${VAST_CONTAINERLABEL:-} || -n ${CONTAINER_ID:-} ]]; then
  provider=vastai
  how="found by sched-agent (VAST_CONTAINERLABEL, CONTAINER_ID)"
  vast_id=${CONTAINER_ID:-${VAST_CONTAINERLABEL#C.}}
  node_name=${node_name:-vast-$vast_id}
elif ! command -v curl >/dev/null 2>&1 && ! command -v wget >/dev/null 2>&1; then
  provider=local
  how="AWS and GCP not looked for: neither curl nor wget (give SCHED_PROVIDER)"
elif detect_aws; then
  provider=aws
  how="AWS instance metadata ($aws_url)"
  provider_args+=("--provider=aws")
  [[ -n $aws_region ]] && provider_args+=("--region=$aws_region")
  [[ -n $aws_instance_type ]] && provider_args+=("--instance_type=$aws_instance_type")
  [[ $aws_life_cycle == spot && -z $spot ]] && spot=true
  [[ -n ${SCHED_AWS_METADATA_URL:-} ]] && provider_args+=("--aws_metadata_url=$aws_url")
  node_name=${node_name:-$aws_instance_id}
elif detect_gcp; then
  provider=gcp
  how="GCE metadata ($gcp_url)"
  provider_args+=("--provider=gcp")
  [[ -n $gcp_region ]] && provider_args+=("--region=$gcp_region")
  [[ -n $gcp_machine_type ]] && provider_args+=("--instance_type=$gcp_machine_type")
  if [[ -z $spot && ($gcp_model == SPOT || $gcp_preemptible == TRUE) ]]; then
    spot=true
  fi
  [[ -n ${SCHED_GCP_METADATA_URL:-} ]] && provider_args+=("--gcp_metadata_url=$gcp_url")
  node_name=${node_name:-$gcp_name}
else
  provider=local
  how="no RunPod, Vast.ai, AWS or GCP found"
fi

# ---- the command line --------------------------------------------------------------------------

args=("--server=$SCHED_SERVER")
[[ -n ${SCHED_CA_PIN:-} ]] && args+=("--ca_pin=$SCHED_CA_PIN")
[[ -n ${SCHED_CA_FILE:-} ]] && args+=("--ca_file=$SCHED_CA_FILE")
[[ -n $node_name ]] && args+=("--name=$node_name")
args+=("--work_dir=$work_dir")
args+=("${provider_args[@]}")
[[ -n ${SCHED_PRICE_PER_HOUR:-} ]] && args+=("--price_per_hour=$SCHED_PRICE_PER_HOUR")
[[ -n $spot ]] && args+=("--spot=$spot")
args+=("${extra_args[@]}")

if [[ $provider != local && -z ${SCHED_PRICE_PER_HOUR:-} ]]; then
  say "SCHED_PRICE_PER_HOUR is not set: the node is taken to cost nothing"
fi
if [[ -z ${SCHED_TOKEN:-} && -z ${SCHED_TOKEN_FILE:-} && ! -s $work_dir/identity/node.crt ]]; then
  say "neither SCHED_TOKEN nor SCHED_TOKEN_FILE: fine for a schedd that asks for no token"
fi

# The environment the agent gets for its token, as it is to be shown: never the token itself.
token_shown() {
  if [[ -n ${SCHED_TOKEN:-} ]]; then
    if [[ $supervise -eq 1 ]]; then
      printf 'SCHED_TOKEN_FILE=%q ' "$work_dir/join.token"
    else
      printf 'SCHED_TOKEN=%s ' '****'
    fi
  elif [[ -n ${SCHED_TOKEN_FILE:-} ]]; then
    printf 'SCHED_TOKEN_FILE=%q ' "$SCHED_TOKEN_FILE"
  fi
}

if [[ $dry_run -eq 1 ]]; then
  echo "provider: $provider, $how"
  echo "agent: $agent"
  if [[ $supervise -eq 1 ]]; then
    echo "mode: supervised (restarted on failure)"
  else
    echo "mode: foreground"
  fi
  printf 'command: %s%q' "$(token_shown)" "$agent"
  printf ' %q' "${args[@]}"
  printf '\n'
  exit 0
fi

mkdir -p "$work_dir"
say "provider $provider ($how); starting $agent for schedd at $SCHED_SERVER"

if [[ $supervise -eq 0 ]]; then
  exec "$agent" "${args[@]}"
fi

# ---- --supervise -------------------------------------------------------------------------------

child=
sleeper=
stopping=0
forward() {  # SIGNAL
  stopping=1
  if [[ -n $child ]]; then
    say "SIG$1: passed on to the agent (pid $child)"
    kill -s "$1" "$child" 2>/dev/null || true
  fi
  if [[ -n $sleeper ]]; then
    kill "$sleeper" 2>/dev/null || true
  fi
}
trap 'forward TERM' TERM
trap 'forward INT' INT
trap 'forward HUP' HUP

delay=1
while :; do
  # Over TLS the token is spent once the node certificate is there: the copy here goes.
  if [[ $tls -eq 1 && -n $own_token_file && -s $work_dir/identity/node.crt ]]; then
    rm -f "$own_token_file"
  fi
  if [[ -n ${SCHED_TOKEN_FILE:-} && ! -e $SCHED_TOKEN_FILE &&
    -s $work_dir/identity/node.crt ]]; then
    unset SCHED_TOKEN_FILE
  fi
  started=$SECONDS
  "$agent" "${args[@]}" &
  child=$!
  while :; do
    rc=0
    wait "$child" || rc=$?
    # A trap ends the wait early (status > 128) with the agent still running: wait again.
    if [[ $rc -gt 128 ]] && kill -0 "$child" 2>/dev/null; then
      continue
    fi
    break
  done
  child=
  if [[ $stopping -eq 1 ]]; then
    say "the agent exited ($rc) after a signal: stopping"
    exit "$rc"
  fi
  case $rc in
    0) say "the agent exited 0: stopping"; exit 0 ;;
    2) say "the agent exited 2 (a setting, pin or token it refuses): not starting it again"
       exit 2 ;;
  esac
  if ((SECONDS - started >= 60)); then
    delay=1
  fi
  say "the agent exited $rc: starting it again in ${delay}s"
  sleep "$delay" &
  sleeper=$!
  wait "$sleeper" || true
  sleeper=
  if [[ $stopping -eq 1 ]]; then
    exit 0
  fi
  delay=$((delay * 2 > 60 ? 60 : delay * 2))
done
