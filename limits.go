package main

import (
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"go-loadbalancer/config"
	"go-loadbalancer/metrics"
	"go-loadbalancer/proxy"
)

// survive makes the process outlive what it cannot control: a closed stdout or stderr pipe
// (`go-loadbalancer | head`) and a low descriptor limit. Called once at start.
//
// SIGPIPE: the Go runtime ends a program that writes to a broken pipe on descriptor 1 or 2
// unless SIGPIPE is handled or ignored (os/signal, "SIGPIPE"); ignored, the write fails with
// EPIPE instead, which logWriter counts.
func survive(log zerolog.Logger) (nofile uint64) {
	signal.Ignore(syscall.SIGPIPE)
	return raiseNoFile(log)
}

// raiseNoFile raises the soft RLIMIT_NOFILE to the hard limit (a proxy holds two
// descriptors per proxied connection; distributions default the soft limit to 1024), logs
// both, and returns the soft limit in force.
func raiseNoFile(log zerolog.Logger) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn().Err(err).Msg("cannot read RLIMIT_NOFILE")
		return 0
	}
	soft := lim.Cur
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			log.Warn().Err(err).Uint64("soft", lim.Cur).Uint64("hard", lim.Max).Msg("cannot raise the descriptor limit")
		} else {
			soft = lim.Max
		}
	}
	log.Info().Uint64("soft_was", lim.Cur).Uint64("soft", soft).Uint64("hard", lim.Max).Msg("descriptor limit (RLIMIT_NOFILE)")
	return soft
}

// Descriptors kept out of the default server.max_conns: listeners, admin connections, logs,
// Redis, Consul, health checks.
const reservedFDs = 128

// defaultMaxConns is server.max_conns when the config leaves it 0: half of the descriptors
// left after reservedFDs, since each client connection may hold one upstream connection
// (a tunnel always does), and at least 64.
func defaultMaxConns(nofile uint64) int {
	if nofile <= reservedFDs+128 {
		return 64
	}
	return int(min((nofile-reservedFDs)/2, 1<<30))
}

// serverLimits returns s with server.max_conns derived from the descriptor limit when the
// config leaves it 0, and server.max_tunnels from max_conns likewise; it logs both.
func serverLimits(s config.Server, nofile uint64, log zerolog.Logger) config.Server {
	if s.MaxConns == 0 {
		s.MaxConns = defaultMaxConns(nofile)
	}
	if s.MaxTunnels == 0 {
		s.MaxTunnels = max(s.MaxConns/2, 1)
	}
	log.Info().Int("max_conns", s.MaxConns).Int("max_conns_per_ip", s.MaxConnsPerIP).Int("max_tunnels", s.MaxTunnels).
		Msg("client connection limits")
	return s
}

// registerServerMetrics exposes the data-plane server's and the logs' counters.
func registerServerMetrics(reg *metrics.Registry, srv *proxy.Server, out *logOutputs) {
	st := &srv.Stats
	reg.GaugeFunc("lb_connections_open", "Client connections open now.", func() uint64 { return uint64(max(st.Conns.Load(), 0)) })
	reg.CounterFunc("lb_panics_total", "Request handler panics, answered with 500.", st.Panics.Load)
	reg.CounterFunc("lb_accept_errors_total", "Failed accepts of client connections (retried after a pause).", st.AcceptErrors.Load)
	reg.CounterFunc(`lb_conns_rejected_total{limit="max_conns"}`, "Client connections closed at once over a limit.", st.ConnsOverLimit.Load)
	reg.CounterFunc(`lb_conns_rejected_total{limit="max_conns_per_ip"}`, "Client connections closed at once over a limit.", st.ConnsOverPerIP.Load)
	reg.CounterFunc("lb_tunnels_rejected_total", "WebSocket upgrades and streamed uploads refused over server.max_tunnels (503).", st.TunnelsOverLimit.Load)
	reg.GaugeFunc("lb_tunnels_open", "WebSocket tunnels and streamed uploads open now (server.max_tunnels).", func() uint64 { return uint64(max(st.Tunnels.Load(), 0)) })
	reg.CounterFunc("lb_log_write_errors_total", "Failed writes of the logs to stdout or stderr.", out.errors.Load)
}
