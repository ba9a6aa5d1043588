#!/usr/bin/env bash
# Installs the system packages the test suite and benchmarks use, when they are missing.
# Debian packages; needs root (CI runs as root). Idempotent: does nothing when all are present.
#   scripts/install-deps.sh          # test dependencies (wrk: bench's harness test needs it under CI=true)
#   scripts/install-deps.sh bench    # plus haproxy, nginx (and perf, for syscall counts) for bench/
set -euo pipefail

need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
want curl curl
want redis-server redis-server
want wrk wrk
want promtool prometheus   # admin/metrics: promtool check metrics, a real Prometheus scrape
want chromium chromium     # admin: the dashboard in headless Chromium
if [ "${1:-}" = bench ]; then
  want haproxy haproxy
  want nginx nginx
  want perf linux-perf
fi

[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing packages: ${need[*]} (run as root, or: sudo apt-get install -y ${need[*]})" >&2
  exit 1
fi
echo "installing: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
