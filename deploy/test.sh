#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test layer,
# fast ones first (unit, store, service), then integration and e2e.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh --tests
deploy/build.sh
BUILD_DIR=${BUILD_DIR:-build}
cd "$BUILD_DIR"
ctest --output-on-failure -j 2 -L 'unit|store|service|sim'
ctest --output-on-failure -L 'integration|e2e'
