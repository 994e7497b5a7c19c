#!/usr/bin/env bash
# Starts a test control plane by hand and prints its admin kubeconfig path on stdout; stops it
# when you press Enter. Builds the components first if needed.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/harness/build.sh >/dev/null
exec cargo run --quiet --example control-plane
