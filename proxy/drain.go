package proxy

import (
	"context"
	"time"
)

// Stop stops the server gracefully. It closes the listeners at once, then drains for
// grace: every response carries Connection: close, so a keep-alive client learns on its
// next response that it must reconnect (to another instance), instead of finding its idle
// connection closed just as it sends a request (Envoy's and HAProxy's drain). The grace
// ends early once no client connection is open: with the listeners closed none can come,
// so there is nothing left to drain. Then, as fasthttp's ShutdownWithContext, it closes
// the idle connections and waits for in-flight requests until ctx is done.
func (s *Server) Stop(ctx context.Context, grace time.Duration) error {
	s.draining.Store(true)
	s.mu.Lock()
	for _, l := range s.lns {
		_ = l.Close()
	}
	s.mu.Unlock()
	if grace > 0 {
		s.drain(ctx, grace)
	}
	return s.ShutdownWithContext(ctx)
}

// drainPoll is how often the grace checks whether any client connection is still open.
const drainPoll = 20 * time.Millisecond

// drain waits for grace, for ctx, or until no client connection is open, whichever comes
// first.
func (s *Server) drain(ctx context.Context, grace time.Duration) {
	end := time.NewTimer(grace)
	defer end.Stop()
	poll := time.NewTicker(drainPoll)
	defer poll.Stop()
	for s.Stats.Conns.Load() > 0 {
		select {
		case <-end.C:
			return
		case <-ctx.Done():
			return
		case <-poll.C:
		}
	}
}
