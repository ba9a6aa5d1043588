package proxy

import (
	"context"
	"time"
)

// Stop stops the server gracefully. It closes the listeners at once, then drains for
// grace: every response carries Connection: close, so a keep-alive client learns on its
// next response that it must reconnect (to another instance), instead of finding its idle
// connection closed just as it sends a request (Envoy's and HAProxy's drain). Then, as
// fasthttp's ShutdownWithContext, it closes the idle connections and waits for in-flight
// requests until ctx is done.
func (s *Server) Stop(ctx context.Context, grace time.Duration) error {
	s.draining.Store(true)
	s.mu.Lock()
	for _, l := range s.lns {
		_ = l.Close()
	}
	s.mu.Unlock()
	if grace > 0 {
		t := time.NewTimer(grace)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	return s.ShutdownWithContext(ctx)
}
