#!/usr/bin/env bash
# Installs what the test suite and benchmarks use, when it is missing:
#  - Debian packages (needs root; CI runs as root);
#  - a Consul agent v1.16.3 and an OpenTelemetry Collector, built from Go module source
#    into a cache directory outside the repository and reused when present.
# Idempotent: does nothing when everything is present.
#   scripts/install-deps.sh          # test dependencies (wrk: bench's harness test needs it under CI=true)
#   scripts/install-deps.sh bench    # plus haproxy, nginx (and perf, for syscall counts) for bench/
#   scripts/install-deps.sh consul   # only the Consul agent
#   scripts/install-deps.sh otelcol  # only the OpenTelemetry Collector
# The built binaries are found by the tests (internal/testconsul, internal/testotel) in
# $GOLB_TOOLS, default /var/cache/go-loadbalancer when writable, else ~/.cache/go-loadbalancer.
set -euo pipefail

tools_dir() {
  if [ -n "${GOLB_TOOLS:-}" ]; then echo "$GOLB_TOOLS"
  elif mkdir -p /var/cache/go-loadbalancer 2>/dev/null && [ -w /var/cache/go-loadbalancer ]; then echo /var/cache/go-loadbalancer
  else echo "$HOME/.cache/go-loadbalancer"
  fi
}

apt_packages() {
  local need=()
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

  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${need[*]} (run as root, or: sudo apt-get install -y ${need[*]})" >&2
    exit 1
  fi
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# is_mpl2 FILE: whether a LICENSE file is the MPL-2.0.
is_mpl2() { [[ "$(head -5 "$1" 2>/dev/null)" == *"Mozilla Public License, version 2.0"* ]]; }

# lock DIR: holds DIR/.lock until the script exits, so that two runs (a helper and CI, two
# terminals) never build into the same directory at once.
lock() {
  mkdir -p "$1"
  command -v flock >/dev/null 2>&1 || return 0
  local fd
  exec {fd}>"$1/.lock"
  flock "$fd"
}

# Consul v1.16.3 is the last release under MPL-2.0; v1.16.4 and later are under the BUSL and
# must not be used. Its module zip lacks the nested modules its go.mod replaces with local
# directories (api, sdk, ...), so the replaces are dropped and go.mod's own requirements
# resolve to published versions, each of which must also be MPL-2.0 (checked below).
CONSUL_VERSION=v1.16.3
consul_agent() {
  local dir out
  dir="$(tools_dir)/consul-${CONSUL_VERSION#v}"
  out="$dir/consul"
  # (Output captured first: with pipefail, grep -q closing the pipe early would fail it.)
  if [ -x "$out" ] && [[ "$("$out" version 2>/dev/null)" == "Consul ${CONSUL_VERSION}"* ]]; then return 0; fi
  lock "$dir"
  if [ -x "$out" ] && [[ "$("$out" version 2>/dev/null)" == "Consul ${CONSUL_VERSION}"* ]]; then return 0; fi
  echo "building Consul ${CONSUL_VERSION} into $out (10-15 minutes on 2 cores)" >&2
  local start=$SECONDS src work
  src=$(go mod download -json "github.com/hashicorp/consul@${CONSUL_VERSION}" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || { echo "consul: module download failed" >&2; exit 1; }
  rm -rf "$dir"/src.* # what an interrupted build left
  work=$(mktemp -d "$dir/src.XXXXXX")
  cp -r "$src/." "$work"
  chmod -R u+w "$work"
  (
    cd "$work"
    local m
    for m in api envoyextensions proto-public sdk troubleshoot; do
      go mod edit -dropreplace "github.com/hashicorp/consul/$m"
    done
    # The checksum database has no entry it accepts for envoyextensions.
    export GONOSUMDB=github.com/hashicorp/consul/envoyextensions GOFLAGS=-mod=mod
    is_mpl2 LICENSE || { echo "consul: LICENSE is not MPL-2.0" >&2; exit 1; }
    for m in api envoyextensions proto-public sdk troubleshoot; do
      local mdir
      mdir=$(go list -m -f '{{.Dir}}' "github.com/hashicorp/consul/$m")
      [ -n "$mdir" ] || mdir=$(go mod download -json "github.com/hashicorp/consul/$m@$(go list -m -f '{{.Version}}' "github.com/hashicorp/consul/$m")" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
      is_mpl2 "$mdir/LICENSE" || { echo "consul: $m ($mdir) is not MPL-2.0" >&2; exit 1; }
      echo "consul: $m $(go list -m -f '{{.Version}}' "github.com/hashicorp/consul/$m") is MPL-2.0" >&2
    done
    go build -trimpath -ldflags='-s -w' -o "$out.tmp" .
  )
  mv "$out.tmp" "$out"
  rm -rf "$work"
  echo "consul: built in $((SECONDS - start))s: $("$out" version | head -1)" >&2
}

# An OpenTelemetry Collector with only what the tracing tests use: the OTLP receiver, the
# debug exporter and the file exporter, built with the official builder.
OTELCOL_VERSION=0.165.0
otel_collector() {
  local dir out
  dir="$(tools_dir)/otelcol-${OTELCOL_VERSION}"
  out="$dir/otelcol-golb"
  if [ -x "$out" ] && [[ "$("$out" --version 2>/dev/null)" == *" ${OTELCOL_VERSION}"* ]]; then return 0; fi
  lock "$dir"
  if [ -x "$out" ] && [[ "$("$out" --version 2>/dev/null)" == *" ${OTELCOL_VERSION}"* ]]; then return 0; fi
  echo "building the OpenTelemetry Collector ${OTELCOL_VERSION} into $out" >&2
  local start=$SECONDS work
  rm -rf "$dir"/src.* # what an interrupted build left
  work=$(mktemp -d "$dir/src.XXXXXX")
  GOBIN="$work/bin" GOFLAGS= go install "go.opentelemetry.io/collector/cmd/builder@v${OTELCOL_VERSION}"
  cat >"$work/manifest.yaml" <<MANIFEST
dist:
  name: otelcol-golb
  description: OpenTelemetry Collector for the go-loadbalancer tests
  version: ${OTELCOL_VERSION}
  output_path: $work/dist
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v${OTELCOL_VERSION}
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/debugexporter v${OTELCOL_VERSION}
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter v0.165.1
providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider v1.71.0
  - gomod: go.opentelemetry.io/collector/confmap/provider/envprovider v1.71.0
  - gomod: go.opentelemetry.io/collector/confmap/provider/yamlprovider v1.71.0
MANIFEST
  # -e: the builder's "go mod tidy" would otherwise stop at a test-only module the proxy refuses.
  GOFLAGS=-e CGO_ENABLED=0 "$work/bin/builder" --config="$work/manifest.yaml" --ldflags='-s -w' >&2
  mv "$work/dist/otelcol-golb" "$out"
  rm -rf "$work"
  echo "otelcol: built in $((SECONDS - start))s: $("$out" --version)" >&2
}

case "${1:-}" in
  consul) consul_agent ;;
  otelcol) otel_collector ;;
  *) apt_packages "${1:-}"; consul_agent; otel_collector ;;
esac
