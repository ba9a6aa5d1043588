package sticky

import (
	"testing"

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
