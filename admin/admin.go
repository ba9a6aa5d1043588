// Package admin serves the admin port: std-lib net/http handlers for liveness, readiness,
// the dashboard, JSON and Prometheus metrics, and the runtime API, on a listener of its
// own (docs/behaviour.md#admin-port). In -demo mode a read-only subset is also answered on the data-plane port
// through fasthttpadaptor (Server.Local).
//
// The runtime API (drain, enable, weight, reload) needs `Authorization: Bearer <token>`,
// the token being ADMIN_TOKEN or the contents of admin.token_file, read from the running
// table's config (a reload can change it). With no token configured the API answers 403
// and says how to enable it; a missing or wrong token gets 401. The scheme name "Bearer" is
// matched case-insensitively (RFC 9110 §11.1).
//
// Every request's Host must be an IP literal, "localhost", the admin listen host, or a name
// in admin.allowed_hosts (port ignored); any other Host gets 421. A browser page on a
// rebound DNS name (evil.example resolving to 127.0.0.1) thus cannot read /metrics or the
// dashboard; an IP literal cannot be rebound, and is what Kubernetes probes and Prometheus
// scrapes send (the pod IP), so it is always accepted.
//
// Error texts (a rejected reload's reasons) are truncated before they are answered or
// logged.
package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"go-loadbalancer/internal/redact"
	"go-loadbalancer/metrics"
	"go-loadbalancer/state"
)

// Options configure the admin handlers.
type Options struct {
	// Builder holds the current table and applies runtime changes; required.
	Builder *state.Builder
	// Metrics is read for /metrics and /prometheus; required.
	Metrics *metrics.Registry
	// Ready reports whether the data plane is serving (false while draining on shutdown).
	// nil means always, once a table is loaded.
	Ready func() bool
	// Reload re-reads the config file like SIGHUP (POST /api/reload); nil answers 501.
	// Its error is shown to the (authenticated) caller.
	Reload func() error
	// Pprof serves /debug/pprof/ (admin.pprof in the config).
	Pprof bool
	// ListenHost is the host part of the admin listen address (admin.listen); a Host
	// header naming it is accepted. Empty or an IP adds nothing (IP literals are always
	// accepted).
	ListenHost string
	Log        zerolog.Logger
}

// Server is the admin port's handler. Safe for concurrent use.
type Server struct {
	o    Options
	mux  *http.ServeMux
	demo *http.ServeMux
}

// New returns the admin handler.
func New(o Options) *Server {
	if o.Builder == nil || o.Metrics == nil {
		panic("BUG: admin.Options.Builder and Metrics are required")
	}
	s := &Server{o: o, mux: http.NewServeMux(), demo: http.NewServeMux()}
	for _, mux := range []*http.ServeMux{s.mux, s.demo} {
		controls := mux == s.mux
		mux.HandleFunc("GET /{$}", s.dashboard)
		mux.HandleFunc("GET /health", s.health)
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { s.metricsJSON(w, r, controls) })
		mux.HandleFunc("GET /prometheus", s.prometheus)
	}
	m := s.mux
	m.HandleFunc("GET /ready", s.ready)
	m.HandleFunc("POST /api/backends/{id}/drain", s.auth(s.drain))
	m.HandleFunc("POST /api/backends/{id}/enable", s.auth(s.enable))
	m.HandleFunc("PUT /api/backends/{id}/weight", s.auth(s.weight))
	m.HandleFunc("POST /api/reload", s.auth(s.reload))
	if o.Pprof {
		m.HandleFunc("GET /debug/pprof/", pprof.Index)
		m.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		m.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		m.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		m.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		m.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return s
}

// ServeHTTP serves the admin port, to requests whose Host is allowed (see the package doc).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.hostAllowed(r.Host) {
		// RFC 9110 §15.5.20: this server will not answer for that authority.
		writeError(w, http.StatusMisdirectedRequest, "host not allowed on the admin port: use its address, localhost, or add the name to admin.allowed_hosts")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// hostAllowed reports whether a request for host (the Host header, maybe with a port) may
// be answered.
func (s *Server) hostAllowed(host string) bool {
	if host == "" {
		return true // HTTP/1.0 without Host: not a browser
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if strings.EqualFold(host, "localhost") || (s.o.ListenHost != "" && strings.EqualFold(host, s.o.ListenHost)) {
		return true
	}
	if t := s.o.Builder.Store.Load(); t != nil && t.Config != nil {
		for _, a := range t.Config.Admin.AllowedHosts {
			if strings.EqualFold(host, a) {
				return true
			}
		}
	}
	return false
}

// Demo returns the read-only subset answered on the data-plane port in -demo mode:
// /, /metrics, /health and /prometheus (the demo's paths on one port). Its JSON says
// "controls": false, so the dashboard there hides the drain/enable buttons.
func (s *Server) Demo() http.Handler { return s.demo }

//go:embed dashboard.html
var dashboardHTML []byte

func (s *Server) dashboard(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	_, _ = w.Write(dashboardHTML)
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, `{"status":"ok"}`)
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	switch {
	case s.o.Builder.Store.Load() == nil:
		writeJSON(w, http.StatusServiceUnavailable, `{"status":"no config"}`)
	case s.o.Ready != nil && !s.o.Ready():
		writeJSON(w, http.StatusServiceUnavailable, `{"status":"draining"}`)
	default:
		writeJSON(w, http.StatusOK, `{"status":"ready"}`)
	}
}

// metricsDoc is the /metrics JSON: the metrics snapshot plus what only admin knows.
type metricsDoc struct {
	metrics.Snapshot
	Ready    bool `json:"ready"`
	Controls bool `json:"controls"` // the runtime API is served here (not on the demo port)
}

// metricsJSON serves GET /metrics; ?history=1 adds each backend's and pool's last
// minutes for sparklines.
func (s *Server) metricsJSON(w http.ResponseWriter, r *http.Request, controls bool) {
	doc := metricsDoc{
		Snapshot: s.o.Metrics.Snapshot(r.URL.Query().Get("history") == "1"),
		Ready:    s.o.Builder.Store.Load() != nil && (s.o.Ready == nil || s.o.Ready()),
		Controls: controls,
	}
	writeValue(w, http.StatusOK, doc)
}

func (s *Server) prometheus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	s.o.Metrics.WritePrometheus(w)
}

// auth wraps a runtime-API handler with the token rules of the package doc.
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var want string
		if t := s.o.Builder.Store.Load(); t != nil && t.Config != nil {
			want = t.Config.Admin.Token
		}
		if want == "" {
			writeError(w, http.StatusForbidden, "the admin API is disabled: set the ADMIN_TOKEN environment variable or admin.token_file in the config, then send Authorization: Bearer <token>")
			return
		}
		got, ok := bearer(r.Header.Get("Authorization"))
		if !ok || !tokenEqual(got, want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="go-loadbalancer admin"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			s.o.Log.Warn().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Msg("admin API: rejected token")
			return
		}
		h(w, r)
	}
}

// bearer returns the token of an Authorization header value "Bearer <token>", the scheme
// name in any case (RFC 9110 §11.1: auth-scheme is case-insensitive).
func bearer(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimSpace(v[len(scheme):]), true
}

// tokenEqual compares in constant time; hashing first hides the token's length too.
func tokenEqual(got, want string) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	s.control(w, r, "drain", s.o.Builder.Drain)
}

func (s *Server) enable(w http.ResponseWriter, r *http.Request) {
	s.control(w, r, "enable", s.o.Builder.Enable)
}

func (s *Server) weight(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Weight json.RawMessage `json:"weight"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Weight == nil {
		writeError(w, http.StatusBadRequest, `body must be {"weight": N} with N an integer from 1 to 10000`)
		return
	}
	n, err := strconv.Atoi(string(body.Weight)) // a JSON integer, not "3" or 1.5
	if err != nil || n < 1 || n > 10000 {
		writeError(w, http.StatusBadRequest, "weight must be an integer from 1 to 10000")
		return
	}
	s.control(w, r, "weight", func(id string) (*state.Table, error) { return s.o.Builder.SetWeight(id, n) })
}

// control applies one runtime change and answers with the backend as it is now.
func (s *Server) control(w http.ResponseWriter, r *http.Request, action string, apply func(id string) (*state.Table, error)) {
	id := r.PathValue("id")
	t, err := apply(id)
	switch {
	case errors.Is(err, state.ErrUnknownBackend):
		writeError(w, http.StatusNotFound, "no backend has id "+jsonSafe(id))
		return
	case err != nil:
		s.o.Log.Error().Err(err).Str("backend", id).Str("action", action).Msg("admin API: change failed")
		writeError(w, http.StatusInternalServerError, "cannot "+action+" the backend: "+redact.Truncate(err.Error(), maxErrorText))
		return
	}
	b := t.Backend(id)
	s.o.Log.Info().Str("backend", id).Str("action", action).Int("weight", b.Weight).Bool("drained", b.Drained).
		Uint64("table", t.Version).Str("remote", r.RemoteAddr).Msg("admin API: backend changed")
	writeValue(w, http.StatusOK, struct {
		ID      string `json:"id"`
		Pool    string `json:"pool"`
		Weight  int    `json:"weight"`
		Drained bool   `json:"drained"`
		Healthy bool   `json:"healthy"`
		Table   uint64 `json:"table_version"`
	}{b.ID, b.Pool, b.Weight, b.Drained, b.Healthy, t.Version})
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.o.Reload == nil {
		writeError(w, http.StatusNotImplemented, "reload is not available")
		return
	}
	s.o.Log.Info().Str("remote", r.RemoteAddr).Msg("admin API: reload requested")
	if err := s.o.Reload(); err != nil {
		// The operator needs the reason (like `nginx -t`); the caller holds the token.
		writeError(w, http.StatusUnprocessableEntity, "reload rejected; the running configuration keeps serving: "+redact.Truncate(err.Error(), maxErrorText))
		return
	}
	var v uint64
	if t := s.o.Builder.Store.Load(); t != nil {
		v = t.Version
	}
	writeValue(w, http.StatusOK, struct {
		Status string `json:"status"`
		Table  uint64 `json:"table_version"`
	}{"reloaded", v})
}

// maxErrorText bounds an error text in an answer: the reasons of a rejected reload are
// already bounded per problem (config.MaxMsgLen), this bounds any other error too.
const maxErrorText = 8 << 10

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body + "\n"))
}

func writeValue(w http.ResponseWriter, status int, v any) {
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("BUG: cannot encode admin JSON: " + err.Error())
	}
	writeJSON(w, status, strings.TrimSuffix(sb.String(), "\n"))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeValue(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

// jsonSafe quotes a caller-supplied string for an error message.
func jsonSafe(s string) string {
	if len(s) > 128 {
		s = s[:128] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}
