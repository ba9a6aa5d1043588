// Package admin serves the admin port: std-lib net/http handlers for liveness, readiness,
// metrics, the dashboard and the runtime API, on a listener of its own (SPEC §6).
package admin

import (
	"net/http"

	"github.com/rs/zerolog"

	"go-loadbalancer/state"
)

// Options configure the admin handlers.
type Options struct {
	// Builder holds the current table and applies runtime changes; required.
	Builder *state.Builder
	// Ready reports whether the data plane is serving (false while draining on shutdown).
	Ready func() bool
	Log   zerolog.Logger
}

// New returns the admin port's handler.
func New(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case o.Builder.Store.Load() == nil:
			writeJSON(w, http.StatusServiceUnavailable, `{"status":"no config"}`)
		case o.Ready != nil && !o.Ready():
			writeJSON(w, http.StatusServiceUnavailable, `{"status":"draining"}`)
		default:
			writeJSON(w, http.StatusOK, `{"status":"ready"}`)
		}
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body + "\n"))
}
