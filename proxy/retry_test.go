package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"go-loadbalancer/health"
	"go-loadbalancer/internal/testtool"
)

// resetBackend accepts connections, reads one request header, then closes the connection
// without answering: the request was sent, no response came (Caddy's retries_test habit).
type resetBackend struct {
	url   string
	hits  atomic.Int64
	bytes atomic.Int64
}

func startResetBackend(t *testing.T) *resetBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &resetBackend{url: "http://" + ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					rb.bytes.Add(int64(len(line)))
					if line == "\r\n" {
						break
					}
				}
				rb.hits.Add(1)
				// Drain whatever body is already here, then hang up.
				_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				n, _ := r.Discard(1 << 20)
				rb.bytes.Add(int64(n))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return rb
}

// noTrip keeps breakers closed so retry counts are deterministic.
const noTrip = "    circuit_breaker: { consecutive_failures: 100000, min_requests: 100000 }\n"

func retryConfig(t *testing.T, extra string, urls ...string) string {
	var sb strings.Builder
	sb.WriteString("pools:\n  - name: web\n    timeouts: { connect: 500ms, response: 2s }\n" + extra + "    backends:\n")
	for _, u := range urls {
		fmt.Fprintf(&sb, "      - url: %q\n", u)
	}
	return sb.String()
}

func TestGETRetriesOnAnotherBackendAfterReset(t *testing.T) {
	t.Parallel()
	rb := startResetBackend(t)
	ok := startBackend(t, named("ok"))
	px := startProxy(t, parseConfig(t, retryConfig(t, noTrip, rb.url, ok.url)))
	for i := range 20 {
		if resp := px.get(t, "/"); resp.StatusCode() != 200 || string(resp.Body()) != "ok" {
			t.Fatalf("GET %d: got %d %q; want 200 ok via the other backend", i, resp.StatusCode(), resp.Body())
		}
	}
	if rb.hits.Load() == 0 {
		t.Fatal("the resetting backend was never tried; the test proves nothing")
	}
}

func TestPOSTIsNotReplayedAfterItWasSent(t *testing.T) {
	t.Parallel()
	rb := startResetBackend(t)
	ok := startBackend(t, named("ok"))
	px := startProxy(t, parseConfig(t, retryConfig(t, noTrip, rb.url, ok.url)))
	// Smooth 1:1 starts with the first backend: the resetting one.
	resp, _ := px.raw(t, "POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: close\r\n\r\namount=1000")
	if !strings.HasPrefix(resp, "HTTP/1.1 502") {
		t.Fatalf("got %q; want 502 (a sent POST is never replayed)", resp)
	}
	if rb.hits.Load() != 1 || ok.hits.Load() != 0 {
		t.Fatalf("resetting backend got %d, other got %d; want exactly 1 and 0", rb.hits.Load(), ok.hits.Load())
	}
	// A PUT (idempotent) with a body is replayed, body and all.
	var gotBody atomic.Value
	echo := startBackend(t, func(ctx *fasthttp.RequestCtx) { gotBody.Store(string(ctx.Request.Body())) })
	px2 := startProxy(t, parseConfig(t, retryConfig(t, noTrip, rb.url, echo.url)))
	resp, _ = px2.raw(t, "PUT /doc HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
	if !strings.HasPrefix(resp, "HTTP/1.1 200") || gotBody.Load() != "hello" {
		t.Fatalf("got %q, backend body %v; want 200 and the whole body replayed", resp, gotBody.Load())
	}
}

func TestPOSTRetriesWhenNothingWasSent(t *testing.T) {
	t.Parallel()
	ok := startBackend(t, named("ok"))
	px := startProxy(t, parseConfig(t, retryConfig(t, noTrip, "http://"+deadAddr(t), ok.url)))
	for i := range 4 {
		resp, _ := px.raw(t, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
		if !strings.HasPrefix(resp, "HTTP/1.1 200") {
			t.Fatalf("POST %d: got %q; want 200 (a connect failure is safe to retry)", i, resp)
		}
	}
}

func TestTriedNeverRepeatsABackend(t *testing.T) {
	t.Parallel()
	rbs := []*resetBackend{startResetBackend(t), startResetBackend(t), startResetBackend(t)}
	px := startProxy(t, parseConfig(t, retryConfig(t, noTrip+"    retry: { attempts: 5, budget_ratio: 1 }\n", rbs[0].url, rbs[1].url, rbs[2].url)))
	for i := range 5 {
		if resp := px.get(t, "/"); resp.StatusCode() != 502 {
			t.Fatalf("GET %d: got %d; want 502 once every backend has failed", i, resp.StatusCode())
		}
	}
	for i, rb := range rbs {
		if n := rb.hits.Load(); n != 5 {
			t.Errorf("backend %d got %d tries for 5 requests; want exactly 5 (one each)", i, n)
		}
	}
}

func TestRetryBudgetRunsOut(t *testing.T) {
	t.Parallel()
	rbs := []*resetBackend{startResetBackend(t), startResetBackend(t), startResetBackend(t)}
	px := startProxy(t, parseConfig(t, retryConfig(t, noTrip+"    retry: { attempts: 2, budget_ratio: 0 }\n", rbs[0].url, rbs[1].url, rbs[2].url)))
	for range 20 {
		px.get(t, "/")
	}
	total := rbs[0].hits.Load() + rbs[1].hits.Load() + rbs[2].hits.Load()
	// 20 first tries plus the budget's floor of 30 retries (3/s over 10 s).
	if total != 50 {
		t.Fatalf("got %d tries for 20 requests; want 50 (20 + a budget of 30 retries)", total)
	}
	if n := px.builder.Store.Load().DefaultPool().Stats.Retries.Load(); n != 30 {
		t.Fatalf("got %d retries counted; want 30", n)
	}
}

func TestAllUnreachableIs503WithRetryAfter(t *testing.T) {
	t.Parallel()
	px := startProxy(t, parseConfig(t, retryConfig(t, "", "http://"+deadAddr(t), "http://"+deadAddr(t), "http://"+deadAddr(t))))
	for range 10 { // enough for breakers to open and the pool to go into panic
		resp := px.get(t, "/")
		if resp.StatusCode() != 503 || string(resp.Header.Peek("Retry-After")) == "" {
			t.Fatalf("got %d (Retry-After %q); want 503 with Retry-After", resp.StatusCode(), resp.Header.Peek("Retry-After"))
		}
	}
}

func TestBreakerOpensAndTrafficMoves(t *testing.T) {
	t.Parallel()
	bad := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(503) })
	good := startBackend(t, named("good"))
	cfg := parseConfig(t, retryConfig(t, "    circuit_breaker: { consecutive_failures: 3, open_for: 30s }\n", bad.url, good.url))
	px := startProxy(t, cfg)
	for i := range 10 {
		if resp := px.get(t, "/"); resp.StatusCode() != 200 {
			t.Fatalf("GET %d: got %d; want 200 (503s are retried on the good backend)", i, resp.StatusCode())
		}
	}
	be := px.builder.Store.Load().Backends()[0]
	if s := be.Stats.Breaker.State().String(); s != "open" {
		t.Fatalf("bad backend's breaker is %s after repeated 503s; want open", s)
	}
	before := bad.hits.Load()
	for range 20 {
		px.get(t, "/")
	}
	if after := bad.hits.Load(); after != before {
		t.Fatalf("bad backend got %d more requests while its breaker was open; want 0", after-before)
	}
}

func TestConnectionLimitOverflowsElsewhere(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	slow := func(ctx *fasthttp.RequestCtx) { <-release; ctx.SetBodyString("done") }
	a, b := startBackend(t, slow), startBackend(t, slow)
	// Registered after the backends, so it runs before their shutdown waits on handlers.
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	px := startProxy(t, parseConfig(t, retryConfig(t, "    max_conns_per_backend: 1\n", a.url, b.url)))

	results := make(chan int, 2)
	for range 2 {
		go func() {
			resp, err := http.Get("http://" + px.addr + "/")
			if err != nil {
				results <- 0
				return
			}
			resp.Body.Close()
			results <- resp.StatusCode
		}()
	}
	testtool.WaitFor(t, 5*time.Second, "both backends busy", func() bool { return a.hits.Load() == 1 && b.hits.Load() == 1 })
	// Both connections are taken: a third request is refused at once, not queued.
	resp := px.get(t, "/")
	if resp.StatusCode() != 503 || !strings.Contains(string(resp.Body()), "capacity") {
		t.Fatalf("got %d %q; want 503 backends at capacity", resp.StatusCode(), resp.Body())
	}
	once.Do(func() { close(release) })
	for range 2 {
		if code := <-results; code != 200 {
			t.Fatalf("a request held by a busy backend got %d; want 200", code)
		}
	}
	for _, be := range px.builder.Store.Load().Backends() {
		if be.Stats.Failures.Load() != 0 || be.Stats.Breaker.State().String() != "closed" {
			t.Fatalf("%s: %d failures, breaker %s; a full connection pool is not a backend failure", be.ID, be.Stats.Failures.Load(), be.Stats.Breaker.State())
		}
	}
}

func TestPanicModeServesWhenEveryCheckFails(t *testing.T) {
	t.Parallel()
	sick := func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" {
			ctx.SetStatusCode(503)
			return
		}
		ctx.SetBodyString("still here")
	}
	a, b := startBackend(t, sick), startBackend(t, sick)
	px := startProxy(t, parseConfig(t, retryConfig(t, "    health_check: { interval: 50ms, timeout: 40ms, fall: 2, rise: 1 }\n", a.url, b.url)))
	hc := health.NewChecker(px.builder, zerolog.Nop())
	t.Cleanup(hc.Stop)
	testtool.WaitFor(t, 5*time.Second, "both backends marked down", func() bool {
		return px.builder.Store.Load().DefaultPool().Panic(time.Now().UnixNano())
	})
	for range 10 {
		if resp := px.get(t, "/"); resp.StatusCode() != 200 || string(resp.Body()) != "still here" {
			t.Fatalf("got %d %q in panic; want the reachable backends to keep serving", resp.StatusCode(), resp.Body())
		}
	}
}

// TestClientFailuresDoNotTripBreakers: uploads that the client breaks off, or that pass
// max_body_bytes while streaming, are the client's failures: the backend's breaker and
// failure count must not move (found in review: six such requests opened the breaker).
func TestClientFailuresDoNotTripBreakers(t *testing.T) {
	t.Parallel()
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		_, _ = io.Copy(io.Discard, ctx.RequestBodyStream())
		ctx.SetBodyString("ok")
	})
	px := startProxy(t, parseConfig(t, retryConfig(t, "    circuit_breaker: { consecutive_failures: 3 }\n", be.url)+
		"server: { max_body_bytes: 100000 }\n"))
	chunk := strings.Repeat("a", 60000)
	for range 6 {
		// Chunked, over the limit while streaming: 413.
		resp, _ := px.raw(t, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
			fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk, len(chunk), chunk))
		if !strings.HasPrefix(resp, "HTTP/1.1 413") {
			t.Fatalf("got %q; want 413", resp[:min(len(resp), 80)])
		}
		// A client that promises 90 KB, sends 70 KB and goes away.
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 90000\r\n\r\n%s", strings.Repeat("b", 70000))
		c.Close()
	}
	be0 := px.builder.Store.Load().Backends()[0]
	testtool.WaitFor(t, 5*time.Second, "the broken uploads to finish", func() bool { return be0.Stats.Inflight.Load() == 0 })
	if f, s := be0.Stats.Failures.Load(), be0.Stats.Breaker.State(); f != 0 || s.String() != "closed" {
		t.Fatalf("after 12 client-side failures the backend has %d failures and its breaker is %s; want 0 and closed", f, s)
	}
}

// TestLastBackendAnswerIsPassedThrough: a 503 the policy would retry, from the only
// backend there is, reaches the client as the backend sent it — status, Retry-After and
// body — not as a made-up "no backend" (found in review).
func TestLastBackendAnswerIsPassedThrough(t *testing.T) {
	t.Parallel()
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(503)
		ctx.Response.Header.Set("Retry-After", "120")
		ctx.SetBodyString("down for maintenance")
	})
	px := startProxy(t, parseConfig(t, retryConfig(t, noTrip, be.url)))
	resp := px.get(t, "/")
	if resp.StatusCode() != 503 || string(resp.Header.Peek("Retry-After")) != "120" || string(resp.Body()) != "down for maintenance" {
		t.Fatalf("got %d Retry-After %q %q; want the backend's own 503", resp.StatusCode(), resp.Header.Peek("Retry-After"), resp.Body())
	}
	if n := px.builder.Store.Load().DefaultPool().Stats.Retries.Load(); n != 0 {
		t.Fatalf("got %d retries charged to the budget; want 0 (there was no other backend)", n)
	}
}
