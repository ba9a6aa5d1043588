package sticky

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"go-loadbalancer/internal/logbuf"
)

// The real redis-server these tests run comes from go-loadbalancer/internal/testredis.

// testTimeout is the Redis call budget of the stores these tests make, unless a test sets
// one. A call that overruns it is an outage; a round trip on a loaded machine under the race
// detector can overrun DefaultTimeout, and that outage (one more than a test counts, or a
// Fallback where it expects a hit) would be none the test made. The tests make their outages
// by killing redis-server, which refuses at once: no timeout is needed to see them.
const testTimeout = 5 * time.Second

// newRedisStore returns a Redis store for url, closed in t.Cleanup, with its log captured.
func newRedisStore(t testing.TB, url string, o Options) (*Redis, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	o.RedisURL = url
	if o.Timeout == 0 {
		o.Timeout = testTimeout
	}
	o.Log = zerolog.New(logs)
	r, err := NewRedis(o)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(r.Close)
	return r, logs
}
