package sticky

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The real redis-server these tests run comes from go-loadbalancer/internal/testredis.

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// count returns how many log lines have the given level.
func (b *syncBuffer) count(level string) int {
	return strings.Count(b.String(), `"level":"`+level+`"`)
}

// newRedisStore returns a Redis store for url, closed in t.Cleanup, with its log captured.
func newRedisStore(t testing.TB, url string, o Options) (*Redis, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
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
