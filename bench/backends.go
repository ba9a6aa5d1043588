package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// The backends process: the harness re-executes its own binary with roleEnv=backends to
// serve N fasthttp listeners in one process, pinned to the load-generator core, and a
// control listener that reports how many requests each listener served.
const (
	roleEnv      = "GOLB_BENCH_ROLE"
	listenEnv    = "GOLB_BENCH_LISTEN"  // comma-separated data listeners
	controlEnv   = "GOLB_BENCH_CONTROL" // control listener: GET /counts
	roleBackends = "backends"
)

// responseBody is what every backend answers: a small JSON document, like an API's.
var responseBody = []byte(`{"id":42,"name":"widget","price":9.99,"tags":["a","b","c"],"stock":1000}` + "\n")

// maybeServeBackends runs the backends process and exits when roleEnv says so; otherwise
// it returns.
func maybeServeBackends() {
	if os.Getenv(roleEnv) != roleBackends {
		return
	}
	if err := serveBackends(strings.Split(os.Getenv(listenEnv), ","), os.Getenv(controlEnv)); err != nil {
		fmt.Fprintln(os.Stderr, "backends:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveBackends(addrs []string, control string) error {
	hits := make([]atomic.Uint64, len(addrs))
	var servers []*fasthttp.Server
	for i, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("cannot listen on %q: %w", addr, err)
		}
		n := &hits[i]
		srv := &fasthttp.Server{
			Handler: func(ctx *fasthttp.RequestCtx) {
				// Health checks of the proxies under test are not traffic: counting them
				// made the 3:2:1 check flaky ([30 20 11] when a check fell inside it).
				if string(ctx.Path()) != "/health" {
					n.Add(1)
				}
				ctx.SetContentType("application/json")
				ctx.SetBody(responseBody)
			},
			Name:              "bench-backend",
			NoDefaultDate:     true,
			ReadBufferSize:    16 << 10,
			Concurrency:       1 << 20,
			IdleTimeout:       2 * time.Minute,
			TCPKeepalive:      true,
			ReduceMemoryUsage: false,
		}
		servers = append(servers, srv)
		go func() { _ = srv.Serve(ln) }()
	}
	if control != "" {
		ln, err := net.Listen("tcp", control)
		if err != nil {
			return fmt.Errorf("cannot listen on control address %q: %w", control, err)
		}
		ctl := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			counts := make([]uint64, len(hits))
			for i := range hits {
				counts[i] = hits[i].Load()
			}
			b, _ := json.Marshal(counts)
			ctx.SetContentType("application/json")
			ctx.SetBody(b)
		}}
		go func() { _ = ctl.Serve(ln) }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, s := range servers {
		_ = s.Shutdown()
	}
	return nil
}

// backendCounts reads the per-listener request counts from a backends process.
func backendCounts(control string) ([]uint64, error) {
	status, body, err := fasthttp.GetTimeout(nil, "http://"+control+"/counts", 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("cannot read backend counts from %s: %w", control, err)
	}
	if status != 200 {
		return nil, fmt.Errorf("cannot read backend counts from %s: status %d", control, status)
	}
	var counts []uint64
	if err := json.Unmarshal(body, &counts); err != nil {
		return nil, fmt.Errorf("cannot read backend counts from %s: %w", control, err)
	}
	return counts, nil
}
