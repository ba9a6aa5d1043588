#!/usr/bin/env bash
# End-to-end suite: builds go-loadbalancer, runs it
# as a real process in -demo mode and with a config file, and checks it with curl.
# Traffic goes only to 127.0.0.1; every process started here is stopped by its PID.
# Ends with "N passed, N failed" and exits non-zero on any failure.
# Fixed ports stay below 32768, out of Linux's ephemeral range (ip_local_port_range 32768-60999):
# a client connection holding a port there as its local port makes a listen on it fail.
set -u
cd "$(dirname "$0")"

PASS=0
FAIL=0
PIDS=()
WORK=$(mktemp -d)
BIN="$WORK/go-loadbalancer"
LB=http://127.0.0.1:8080
ADMIN=http://127.0.0.1:9901

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

ok()   { PASS=$((PASS + 1)); echo "PASS: $1"; }
fail() { FAIL=$((FAIL + 1)); echo "FAIL: $1"; [ $# -gt 1 ] && echo "      $2"; }
check() { # check NAME COMMAND...: passes when the command succeeds
  local name=$1; shift
  if out=$("$@" 2>&1); then ok "$name"; else fail "$name" "$out"; fi
}

# wait_http URL [SECONDS]: poll until URL answers 200.
wait_http() {
  local deadline=$(( $(date +%s) + ${2:-20} ))
  until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

# stop_gracefully NAME PID SECONDS: SIGTERM, then the process must exit 0 in time.
stop_gracefully() {
  local deadline=$(( $(date +%s) + $3 ))
  kill -TERM "$2"
  while kill -0 "$2" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then fail "$1" "still running after $3 s"; return; fi
    sleep 0.1
  done
  wait "$2"
  local rc=$?
  if [ "$rc" = 0 ]; then ok "$1"; else fail "$1" "exit code $rc"; fi
}

# wait_grep PATTERN FILE [SECONDS]: poll until the file has a line matching PATTERN.
wait_grep() {
  local deadline=$(( $(date +%s) + ${3:-10} ))
  until grep -q "$1" "$2"; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

echo "== build"
if go build -o "$BIN" . ; then ok "go build"; else fail "go build"; echo "0 passed, 1 failed"; exit 1; fi

echo "== demo mode"
"$BIN" -demo >"$WORK/demo.log" 2>&1 &
DEMO=$!
PIDS+=("$DEMO")
if wait_http "$LB/lb" 20; then ok "demo serves /lb on :8080"; else fail "demo serves /lb on :8080" "$(tail -5 "$WORK/demo.log")"; fi

body=$(curl -fsS --max-time 5 "$LB/lb")
check "/lb answers from a demo backend" grep -q '"backend":"backend-' <<<"$body"

# 3:2:1 over 600 requests: smooth weighted round-robin is exact over whole cycles of 6.
declare -A count=()
for i in $(seq 600); do
  b=$(curl -fsS --max-time 5 "$LB/lb" | grep -o '"backend":"backend-[0-9]"' | grep -o 'backend-[0-9]')
  count[${b:-none}]=$(( ${count[${b:-none}]:-0} + 1 ))
done
dist="backend-1=${count[backend-1]:-0} backend-2=${count[backend-2]:-0} backend-3=${count[backend-3]:-0} none=${count[none]:-0}"
if [ "${count[backend-1]:-0}" = 300 ] && [ "${count[backend-2]:-0}" = 200 ] && [ "${count[backend-3]:-0}" = 100 ]; then
  ok "3:2:1 distribution over 600 requests ($dist)"
else
  fail "3:2:1 distribution over 600 requests" "$dist"
fi

# Interleaved, never bursts: six requests give a b a c b a in some rotation.
seq6=""
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
  seq6+=$(curl -fsS --max-time 5 "$LB/lb" | grep -o 'backend-[0-9]' | head -1 | tr -d 'backend-')
done
case "$seq6" in
  *121321121321*|*213211213211*|*132112132112*|*321121321121*|*211213211213*|*112132112132*) ok "smooth order (got $seq6)";;
  *) fail "smooth order" "got $seq6; want a rotation of 121321";;
esac

echo "== header forwarding"
hdrs=$(curl -fsS --max-time 5 -H 'X-Forwarded-For: 6.6.6.6' -H 'X-Request-Id: tester-42' \
  -H 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' -H 'Proxy-Authorization: secret' "$LB/lb")
check "X-Forwarded-For replaced for an untrusted peer" grep -q '"X-Forwarded-For":"127.0.0.1"' <<<"$hdrs"
check "X-Forwarded-Proto set" grep -q '"X-Forwarded-Proto":"http"' <<<"$hdrs"
check "X-Forwarded-Host set" grep -q '"X-Forwarded-Host":"127.0.0.1:8080"' <<<"$hdrs"
check "X-Request-Id kept" grep -q '"X-Request-Id":"tester-42"' <<<"$hdrs"
check "traceparent propagated" grep -q '"Traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"' <<<"$hdrs"
check "X-Request-Id generated when absent" grep -Eq '"X-Request-Id":"[0-9a-f]{32}"' <<<"$(curl -fsS --max-time 5 "$LB/lb")"

echo "== errors"
code=$(curl -s -o "$WORK/err.json" -w '%{http_code}' --max-time 5 -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' a)" "$LB/lb")
check "oversized header gets 431" test "$code" = 431
code=$(printf 'POST /lb HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' |
  curl -s --max-time 3 telnet://127.0.0.1:8080 2>/dev/null | head -1 | tr -d '\r')
check "CL+TE request smuggling gets 400" grep -q '^HTTP/1.1 400' <<<"$code"

echo "== admin port"
check "admin /health" grep -q '"status":"ok"' <<<"$(curl -fsS --max-time 5 "$ADMIN/health")"
check "admin /ready" grep -q '"status":"ready"' <<<"$(curl -fsS --max-time 5 "$ADMIN/ready")"

echo "== reload (SIGHUP) with a config file"
cat >"$WORK/lb.yaml" <<EOF
listen: "127.0.0.1:18080"
admin: { listen: "127.0.0.1:19901" }
pools:
  - name: web
    backends:
      - { url: "http://127.0.0.1:8081" }
EOF
"$BIN" -config "$WORK/lb.yaml" >"$WORK/cfg.log" 2>&1 &
CFG=$!
PIDS+=("$CFG")
wait_http http://127.0.0.1:18080/ 20
check "config file instance serves backend-1" grep -q 'backend-1' <<<"$(curl -fsS --max-time 5 http://127.0.0.1:18080/)"
sed -i 's/8081/8083/' "$WORK/lb.yaml"
kill -HUP "$CFG"
reloaded=no
for i in $(seq 100); do
  if curl -fsS --max-time 2 http://127.0.0.1:18080/ | grep -q backend-3; then reloaded=yes; break; fi
  sleep 0.1
done
check "after SIGHUP traffic goes to the new backend" test "$reloaded" = yes
echo 'pools: [ { backends: [ { url: "ftp://nope" } ] } ]' >"$WORK/lb.yaml"
kill -HUP "$CFG"
check "an invalid reload is rejected and logged" wait_grep 'reload rejected' "$WORK/cfg.log"
check "the old config keeps serving after a bad reload" grep -q 'backend-3' <<<"$(curl -fsS --max-time 5 http://127.0.0.1:18080/)"
check "-check-config rejects the bad file with its line" grep -q "$WORK/lb.yaml:1:" <<<"$("$BIN" -check-config -config "$WORK/lb.yaml" 2>&1)"

# ---------------------------------------------------------------------------------------
# Admin port, metrics and dashboard (issue 4). Runs against the demo instance above, which
# also answers the demo's /, /metrics, /health and /prometheus on :8080.
echo "== metrics, prometheus, dashboard (demo :8080 and admin :9901)"
check "demo :8080/health" grep -q '"status":"ok"' <<<"$(curl -fsS --max-time 5 "$LB/health")"
m=$(curl -fsS --max-time 5 "$LB/metrics")
check "demo :8080/metrics has uptime_s" grep -q '"uptime_s":' <<<"$m"
check "demo :8080/metrics lists the 3 demo backends" test "$(grep -o '"id":"demo-127.0.0.1_808[123]"' <<<"$m" | sort -u | wc -l)" = 3
check "demo :8080/metrics has per-backend latency and breaker" grep -q '"latency_ms":{"p50":.*"breaker":"closed"' <<<"$m"
check "demo :8080/metrics has pools" grep -q '"pools":\[{"name":"demo"' <<<"$m"
p=$(curl -fsS --max-time 5 "$LB/prometheus")
check "demo :8080/prometheus counts /lb requests" grep -Eq '^lb_requests_total\{pool="demo",backend="demo-127.0.0.1_8081",code="200"\} [1-9]' <<<"$p"
check "demo :8080/prometheus has the duration histogram" grep -q '^lb_request_duration_seconds_bucket{.*le="+Inf"}' <<<"$p"
if command -v promtool >/dev/null 2>&1; then
  check "promtool check metrics passes on /prometheus" bash -c "out=\$(promtool check metrics 2>&1 <<<\"\$1\") && [ -z \"\$out\" ] || { echo \"\$out\"; false; }" _ "$p"
fi
d=$(curl -fsS --max-time 5 "$LB/")
check "demo :8080/ serves the dashboard" grep -q '<table id="backends">' <<<"$d"
check "demo :8080/lb is still load-balanced" grep -q '"backend":"backend-' <<<"$(curl -fsS --max-time 5 "$LB/lb")"
check "admin /metrics JSON" grep -q '"controls":true' <<<"$(curl -fsS --max-time 5 "$ADMIN/metrics")"
check "admin /prometheus" grep -q '^# TYPE lb_backend_up gauge' <<<"$(curl -fsS --max-time 5 "$ADMIN/prometheus")"
check "admin / dashboard" grep -q '<table id="backends">' <<<"$(curl -fsS --max-time 5 "$ADMIN/")"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST "$ADMIN/api/backends/demo-127.0.0.1_8081/drain")
check "runtime API without ADMIN_TOKEN answers 403" test "$code" = 403
check "access log lines on stdout" wait_grep '"message":"access","method":"GET","host":"[^"]*","path":"/lb"' "$WORK/demo.log" 5
# ---------------------------------------------------------------------------------------

echo "== chaos: a backend killed and restarted under load"
declare -A BE=()
start_backend() { "$BIN" -demo-backend "127.0.0.1:$1" >>"$WORK/be-$1.log" 2>&1 & BE[$1]=$!; PIDS+=("${BE[$1]}"); }
for port in 28081 28082 28083; do start_backend $port; done
for port in 28081 28082 28083; do wait_http "http://127.0.0.1:$port/health" 10; done
cat >"$WORK/chaos.yaml" <<EOF
listen: "127.0.0.1:28080"
admin: { listen: "127.0.0.1:28901" }
pools:
  - name: web
    health_check: { interval: 200ms, timeout: 150ms, fall: 2, rise: 2 }
    circuit_breaker: { consecutive_failures: 3, open_for: 1s }
    retry: { attempts: 2, budget_ratio: 0.5 }
    backends:
      - { url: "http://127.0.0.1:28081", weight: 3 }
      - { url: "http://127.0.0.1:28082", weight: 2 }
      - { url: "http://127.0.0.1:28083", weight: 1 }
EOF
"$BIN" -config "$WORK/chaos.yaml" >"$WORK/chaos.log" 2>&1 &
CHAOS=$!
PIDS+=("$CHAOS")
wait_http http://127.0.0.1:28080/ 20
urls=$(for i in $(seq 100); do printf -- '-o /dev/null http://127.0.0.1:28080/chaos?%d ' "$i"; done)
: >"$WORK/codes"
for batch in $(seq 20); do
  # 100 keep-alive GETs per curl; 20 batches = 2,000 requests.
  curl -s --max-time 20 -w '%{http_code}\n' $urls >>"$WORK/codes"
  [ "$batch" = 5 ] && { kill -KILL "${BE[28082]}"; wait "${BE[28082]}" 2>/dev/null; }
  if [ "$batch" = 15 ]; then
    # Restart only once the health checks have seen it down (fall × interval), so the
    # recovery below is the health checker's, not just the breaker's.
    wait_grep '"health":"down"' "$WORK/chaos.log" 10
    start_backend 28082
  fi
done
total=$(wc -l <"$WORK/codes")
bad=$(grep -vc '^200$' "$WORK/codes")
if [ "$total" = 2000 ] && [ "$bad" = 0 ]; then
  ok "2,000 GETs with a backend killed mid-run: 0 errors"
else
  fail "2,000 GETs with a backend killed mid-run" "$total requests, $bad not 200: $(sort "$WORK/codes" | uniq -c | tr '\n' ' ')"
fi
check "the kill was noticed by the health checks" wait_grep '"health":"down"' "$WORK/chaos.log" 5
back=no
for i in $(seq 100); do
  if curl -fsS --max-time 2 "http://127.0.0.1:28080/chaos?[1-6]" 2>/dev/null | grep -q 'backend-28082'; then back=yes; break; fi
  sleep 0.1
done
check "traffic returns to the restarted backend" test "$back" = yes
check "its health recovered (logged up)" wait_grep '"health":"up"' "$WORK/chaos.log" 10
stop_gracefully "chaos instance exits 0 on SIGTERM" "$CHAOS" 20
for port in 28081 28082 28083; do kill "${BE[$port]}" 2>/dev/null; done

# ---------------------------------------------------------------------------------------
# Sticky sessions (issue 5, docs/behaviour.md#sticky-sessions). The demo instance above uses the memory store; then,
# when redis-server is available, an instance with REDIS_ENABLED=true shares its sessions
# through a redis-server started here on a free loopback port (killed by its PID). Under
# CI=true a missing redis-server is a failure, not a skip.
echo "== sticky sessions: memory store (demo :8080)"
# sticky_backend JAR URL: one request with the cookie jar; prints the backend that answered.
sticky_backend() { curl -fsS --max-time 5 -b "$1" -c "$1" "$2" | grep -o '"backend":"backend-[0-9]*"' | grep -o 'backend-[0-9]*'; }
# sticky_sticks NAME JAR URL: 20 requests with the jar all reach one backend.
sticky_sticks() {
  local seen
  seen=$(for i in $(seq 20); do sticky_backend "$2" "$3" || echo error; done | sort | uniq -c)
  if [ "$(wc -l <<<"$seen")" = 1 ] && ! grep -q error <<<"$seen"; then ok "$1 ($(xargs <<<"$seen"))"; else fail "$1" "$(xargs <<<"$seen")"; fi
}
hdr=$(curl -fsS --max-time 5 -D - -o /dev/null -c "$WORK/jar-demo" "$LB/lb" | tr -d '\r')
sc=$(grep -i '^Set-Cookie: lb_sticky=' <<<"$hdr")
check "demo: first /lb response sets lb_sticky" test -n "$sc"
check "demo: the cookie is HttpOnly" grep -q '; HttpOnly' <<<"$sc"
check "demo: the cookie is SameSite=Lax" grep -q '; SameSite=Lax' <<<"$sc"
check "demo: the cookie has Path=/ and Max-Age=1800 (sticky.ttl)" grep -q '; Path=/; Max-Age=1800' <<<"$sc"
check "demo: no Secure without TLS" bash -c '! grep -q "; Secure" <<<"$1"' _ "$sc"
sticky_sticks "demo: 20 requests with the cookie hit one backend" "$WORK/jar-demo" "$LB/lb"
sc=$(curl -fsS --max-time 5 -D - -o /dev/null -b "$WORK/jar-demo" "$LB/lb" | tr -d '\r' | grep -i '^Set-Cookie: lb_sticky=')
check "demo: no new cookie while the session stays" test -z "$sc"

echo "== sticky sessions: Redis store (REDIS_ENABLED=true)"
if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
  RPORT=""
  for p in $(seq 26379 26479); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then RPORT=$p; break; fi
  done
  redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
  REDIS=$!
  PIDS+=("$REDIS")
  up=no
  for i in $(seq 50); do
    [ "$(redis-cli -p "$RPORT" ping 2>/dev/null)" = PONG ] && { up=yes; break; }
    sleep 0.1
  done
  check "redis-server up on 127.0.0.1:$RPORT" test "$up" = yes
  cat >"$WORK/sticky.yaml" <<EOF2
listen: "127.0.0.1:28080"
admin: { listen: "127.0.0.1:28901" }
pools:
  - name: web
    backends:
      - { url: "http://127.0.0.1:8081", weight: 3 }
      - { url: "http://127.0.0.1:8082", weight: 2 }
      - { url: "http://127.0.0.1:8083", weight: 1 }
sticky: { enabled: true, ttl: 10m }
EOF2
  REDIS_ENABLED=true REDIS_URL="redis://127.0.0.1:$RPORT/0" "$BIN" -config "$WORK/sticky.yaml" >"$WORK/sticky.log" 2>&1 &
  STICKY=$!
  PIDS+=("$STICKY")
  if wait_http http://127.0.0.1:28080/ 20; then ok "redis instance serves on :28080"; else fail "redis instance serves on :28080" "$(tail -5 "$WORK/sticky.log")"; fi
  check "redis instance logs that sessions are stored in redis" wait_grep 'sticky sessions stored in redis' "$WORK/sticky.log" 5
  sc=$(curl -fsS --max-time 5 -D - -o /dev/null -c "$WORK/jar-redis" http://127.0.0.1:28080/r | tr -d '\r' | grep -i '^Set-Cookie: lb_sticky=')
  check "redis: first response sets lb_sticky (HttpOnly; SameSite=Lax; Max-Age=600)" grep -q '; Max-Age=600; HttpOnly; SameSite=Lax' <<<"$sc"
  sticky_sticks "redis: 20 requests with the cookie hit one backend" "$WORK/jar-redis" http://127.0.0.1:28080/r
  # A new cookie session is carried by its cookie alone: Redis holds no key for it (only
  # moved and header sessions are stored), and the cookie names no backend.
  keys=$(redis-cli -p "$RPORT" --scan --pattern 'lb:sticky:s:*')
  check "redis: cookie sessions write no session key (lb:sticky:s:* empty)" test -z "$keys"
  val=$(awk '$6 == "lb_sticky" { print $7 }' "$WORK/jar-redis")
  check "the cookie <sid>.<ref>.<sig> names no backend address or port" \
    sh -c '! printf %s "$1" | grep -Eq "127\.0\.0\.1|127-0-0-1|808[123]"' _ "$val"
  gets=$(redis-cli -p "$RPORT" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_get:calls=\([0-9]*\).*/\1/p')
  check "20 requests of the session asked Redis at most twice (client cache; got ${gets:-0} GETs)" test "${gets:-0}" -le 2
  # Redis is an accelerator, not a dependency: kill it; the session stays, nothing fails.
  kill -KILL "$REDIS"; wait "$REDIS" 2>/dev/null
  sticky_sticks "redis killed: 20 requests with the cookie still hit one backend, no errors" "$WORK/jar-redis" http://127.0.0.1:28080/r
  wait_grep 'redis unreachable' "$WORK/sticky.log" 5
  check "redis killed: the outage is logged as one warning" test "$(grep -c 'redis unreachable' "$WORK/sticky.log")" = 1
  stop_gracefully "redis instance exits 0 on SIGTERM" "$STICKY" 20
elif [ "${CI:-}" = true ]; then
  fail "redis-server and redis-cli are installed (CI=true)" "install them: scripts/install-deps.sh"
else
  echo "SKIP: redis-server not installed: Redis sticky checks skipped (apt-get install -y redis-server)"
fi
# ---------------------------------------------------------------------------------------

echo "== graceful stop (SIGTERM)"
stop_gracefully "config instance exits 0 on SIGTERM" "$CFG" 20
stop_gracefully "demo exits 0 on SIGTERM" "$DEMO" 20
check "data plane port is closed after stop" bash -c "! curl -s --max-time 1 $LB/lb >/dev/null"

echo
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
