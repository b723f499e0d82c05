#!/usr/bin/env bash
# Installs what sched needs to build and test, from Debian 12 packages only. Idempotent:
# packages already present are not fetched again.
set -euo pipefail

PACKAGES=(
  build-essential cmake ccache pkg-config git curl
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev prometheus-cpp-dev libabsl-dev libyaml-cpp-dev libcli11-dev
  libgtest-dev libgmock-dev libssl-dev nlohmann-json3-dev python3
)
# With --tests, also what only the tests use: a real Slurm for the slurm provider's end-to-end
# test (its daemons are started by the test itself, not as services); gRPC, protobuf and YAML
# for Python, for the Python client's test; Prometheus and promtool for deploy/prometheus's
# tests (the e2e test runs a prometheus of its own, not the package's service).
# patchelf for the agent bundle (deploy/bundle/make-agent-bundle.sh).
if [ "${1:-}" = "--tests" ]; then
  PACKAGES+=(slurm-wlm munge python3-grpcio python3-protobuf python3-yaml prometheus patchelf)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
