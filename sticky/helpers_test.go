package sticky

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"go-loadbalancer/internal/logbuf"
)

// The real redis-server these tests run comes from go-loadbalancer/internal/testredis.

// newRedisStore returns a Redis store for url, closed in t.Cleanup, with its log captured.
func newRedisStore(t testing.TB, url string, o Options) (*Redis, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	o.RedisURL = url
	o.Log = zerolog.New(logs)
	r, err := NewRedis(o)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(r.Close)
	return r, logs
}

// eventually polls cond every 5 ms until it is true or d has passed.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
