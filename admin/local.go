package admin

import (
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Local returns the proxy.Options.Local hook of -demo mode: the paths /, /metrics, /health
// and /prometheus are answered on the data-plane port by the same net/http handlers
// (Demo), bridged with fasthttpadaptor; every other path, /lb included, returns nil and is
// load-balanced.
func (s *Server) Local() func(path []byte) fasthttp.RequestHandler {
	h := fasthttpadaptor.NewFastHTTPHandler(s.Demo())
	return func(path []byte) fasthttp.RequestHandler {
		switch string(path) { // no allocation: the compiler compares in place
		case "/", "/metrics", "/health", "/prometheus":
			return h
		}
		return nil
	}
}
