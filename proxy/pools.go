package proxy

import "sync"

// scratch is a per-request byte buffer for values that must be joined before fasthttp
// copies them into its own header storage.
type scratch struct{ b []byte }

var scratchPool = sync.Pool{New: func() any { return &scratch{b: make([]byte, 0, 256)} }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(s *scratch) {
	if cap(s.b) > 64<<10 {
		return // do not keep a buffer a huge header grew
	}
	s.b = s.b[:0]
	scratchPool.Put(s)
}

var sessionPool = sync.Pool{New: func() any { return new(session) }}

func getSession() *session { return sessionPool.Get().(*session) }

func putSession(s *session) {
	if s == nil {
		return
	}
	*s = session{}
	sessionPool.Put(s)
}

var tryRecordPool = sync.Pool{New: func() any { return new(tryRecord) }}

func getTryRecord() *tryRecord { return tryRecordPool.Get().(*tryRecord) }

func putTryRecord(r *tryRecord) {
	*r = tryRecord{}
	tryRecordPool.Put(r)
}
