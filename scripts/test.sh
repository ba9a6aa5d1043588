#!/usr/bin/env bash
# The whole test suite, as CI runs it: dependencies (with the Consul agent and the
# OpenTelemetry Collector, built once), formatting, vet, unit and integration tests under the
# race detector, the Kubernetes manifests' test (module k8s/), then the end-to-end
# tester.sh against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...

echo "== fuzz the request scan (bounded)"
go test -run '^$' -fuzz '^FuzzCanonical$' -fuzztime 15s ./internal/reqpath
go test -run '^$' -fuzz '^FuzzRequestScan$' -fuzztime 20s ./proxy
echo "== fuzz a whole proxied exchange against random backend answers (bounded)"
go test -run '^$' -fuzz '^FuzzProxiedExchange$' -fuzztime 20s ./proxy

echo "== k8s manifests (a module of its own: the Kubernetes API types stay out of go.mod)"
(cd k8s && go vet ./... && go test -count=1 ./...)

echo "== tester.sh"
./tester.sh
