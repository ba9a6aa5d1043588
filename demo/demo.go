// Package demo runs the in-process backends of `go-loadbalancer -demo`: small fasthttp
// servers that answer any path with which backend answered, so that a curl through the load
// balancer shows the weighted split at a glance.
package demo

import (
	"encoding/json"
	"fmt"
	"net"

	"github.com/valyala/fasthttp"
)

// Backend is one running demo backend.
type Backend struct {
	Name string
	Addr string
	srv  *fasthttp.Server
	ln   net.Listener
}

// Start listens on each address and serves a demo backend there, named backend-1, -2, …
// On error the backends already started are stopped.
func Start(addrs []string) ([]*Backend, error) {
	var started []*Backend
	for i, addr := range addrs {
		b, err := StartOne(fmt.Sprintf("backend-%d", i+1), addr)
		if err != nil {
			Stop(started)
			return nil, err
		}
		started = append(started, b)
	}
	return started, nil
}

// StartOne serves one demo backend called name on addr.
func StartOne(name, addr string) (*Backend, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot start demo backend on %s: %w", addr, err)
	}
	b := &Backend{Name: name, Addr: ln.Addr().String(), ln: ln}
	b.srv = &fasthttp.Server{Handler: b.handle, Name: "demo-backend", NoDefaultServerHeader: true}
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

// Stop shuts the backends down.
func Stop(bs []*Backend) {
	for _, b := range bs {
		_ = b.srv.Shutdown()
	}
}

// reply is what a demo backend answers.
type reply struct {
	Backend   string            `json:"backend"`
	Addr      string            `json:"addr"`
	Method    string            `json:"method"`
	Path      string            `json:"path"`
	Forwarded map[string]string `json:"forwarded,omitempty"`
}

var forwardedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id", "Traceparent"}

func (b *Backend) handle(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("X-Backend", b.Name)
	if string(ctx.Path()) == "/health" {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}` + "\n")
		return
	}
	r := reply{Backend: b.Name, Addr: b.Addr, Method: string(ctx.Method()), Path: string(ctx.Path())}
	for _, h := range forwardedHeaders {
		if v := ctx.Request.Header.Peek(h); len(v) > 0 {
			if r.Forwarded == nil {
				r.Forwarded = map[string]string{}
			}
			r.Forwarded[h] = string(v)
		}
	}
	body, _ := json.Marshal(r)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(body, '\n'))
}
