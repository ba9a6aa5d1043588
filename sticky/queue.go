package sticky

import (
	"sync"
	"time"
)

// pinQueue holds the pins made while Redis is unreachable, one per key (a later pin of the
// same key replaces the earlier one), up to max keys. It is touched only during an outage
// and by the flush after it, never on a healthy request path, so a mutex is fine.
type pinQueue struct {
	mu   sync.Mutex
	max  int
	pins map[string]queuedPin
}

type queuedPin struct {
	backendID string
	expires   time.Time // the pin's own expiry: flushed with the TTL it has left
}

// add queues key → backendID until expires; it reports false when the queue is full.
func (q *pinQueue) add(key []byte, backendID string, expires time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if p, ok := q.pins[string(key)]; ok { // no allocation: map index by converted []byte
		if p.backendID != backendID || expires.After(p.expires) {
			q.pins[string(key)] = queuedPin{backendID, expires}
		}
		return true
	}
	if q.pins == nil {
		q.pins = make(map[string]queuedPin)
	}
	if len(q.pins) >= q.max {
		return false
	}
	q.pins[string(key)] = queuedPin{backendID, expires}
	return true
}

// take removes and returns every queued pin.
func (q *pinQueue) take() map[string]queuedPin {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.pins
	q.pins = nil
	return p
}

// putBack re-queues pins that could not be written, unless a newer pin of the same key was
// queued meanwhile or the queue is full; it returns how many were dropped.
func (q *pinQueue) putBack(pins map[string]queuedPin) (dropped int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pins == nil {
		q.pins = make(map[string]queuedPin, len(pins))
	}
	for k, p := range pins {
		if _, newer := q.pins[k]; newer {
			continue
		}
		if len(q.pins) >= q.max {
			dropped++
			continue
		}
		q.pins[k] = p
	}
	return dropped
}

func (q *pinQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pins)
}
