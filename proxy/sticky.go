package proxy

import (
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
	"go-loadbalancer/state"
	"go-loadbalancer/sticky"
)

// stickyConf is a table's sticky-session settings, built once with the table.
type stickyConf struct {
	on     bool
	header []byte            // session key header; nil: cookie sessions
	spec   sticky.CookieSpec // cookie sessions
	// ttl is this table's sticky.ttl, passed with every pin: the store is made once at
	// startup, and a reload that changes sticky.ttl must change the pins' TTL as it changes
	// the cookie's Max-Age.
	ttl time.Duration
	// newPerSec is sticky.new_header_sessions_per_second.
	newPerSec int64
}

func newStickyConf(c *config.Config) stickyConf {
	s := stickyConf{on: c.Sticky.Enabled, ttl: c.Sticky.TTL, newPerSec: int64(c.Sticky.NewHeaderSessionsPerSecond)}
	if c.Sticky.Header != "" {
		s.header = []byte(c.Sticky.Header)
	}
	s.spec = sticky.CookieSpec{Name: c.Sticky.Cookie, MaxAge: c.Sticky.TTL, Secure: c.TLS.Enabled()}
	return s
}

// pinAction is what the session store must learn once a backend has answered.
type pinAction uint8

const (
	pinNone  pinAction = iota
	pinNew             // first placement of the session
	pinMove            // the session moves to another backend
	pinCheck           // pinned: re-pin only if a retry ended elsewhere
)

// stickyRefs resolves the backend references of session cookies (sticky.Signer.Ref) for
// one table and one signer: built once, on the first cookie request after the table or the
// signer changed (the Redis store adopts a shared key once), then read-only.
type stickyRefs struct {
	signer *sticky.Signer
	byRef  map[string]refTarget // reference under any of the signer's keys → backend
	cur    map[string]string    // backend ID → its reference under the signing key
}

// refTarget is the backend a reference stands for and the index of the key that made it.
type refTarget struct {
	b   *state.Backend
	key int
}

// stickyRefs returns the reference maps of table t for signer s. Slow path the first time
// for a table and signer: it computes one HMAC per backend and key, and allocates the maps.
func (d *tableData) stickyRefs(t *state.Table, s *sticky.Signer) *stickyRefs {
	if r := d.refs.Load(); r != nil && r.signer == s {
		return r
	}
	bs := t.Backends()
	r := &stickyRefs{signer: s, byRef: make(map[string]refTarget, len(bs)*s.Keys()), cur: make(map[string]string, len(bs))}
	for _, b := range bs {
		for k := s.Keys() - 1; k >= 0; k-- { // the signing key's entry wins a (2^-96) clash
			ref := s.Ref(k, b.ID)
			r.byRef[ref] = refTarget{b: b, key: k}
			if k == 0 {
				r.cur[b.ID] = ref
			}
		}
	}
	d.refs.Store(r)
	return r
}

// session is one request's sticky-session state, taken from sessionPool (pools.go) by
// Proxy.session and given back with putSession when the request is done; the key and
// cookie are copied out of the request header, which the client may rewrite.
type session struct {
	active     bool
	key        []byte
	keyBuf     [sticky.MaxKeyLen]byte
	cookie     sticky.Cookie
	cookieBuf  [sticky.CookieLen + 2]byte
	hasCookie  bool // cookie mode with a cookie that parsed and verified
	cookieMode bool
	refs       *stickyRefs // cookie mode
	hint       refTarget   // what the cookie's reference resolved to; b nil if nothing
	pinned     string      // backend ID the session is on (store pin or cookie), "" if none
	action     pinAction
	preferred  *state.Backend
}

// session returns the request's sticky session, begun (stickyBegin), or nil when sticky
// sessions are off. Slow path: the session's key escapes into the store's interface, so
// its buffers come from a pool rather than the caller's stack; release it with putSession.
func (p *Proxy) session(ctx *fasthttp.RequestCtx, t *state.Table, pool *state.Pool, ext *tableData, now int64) *session {
	if !ext.sticky.on || p.sticky == nil {
		return nil
	}
	s := getSession()
	p.stickyBegin(ctx, t, pool, ext, now, s)
	return s
}

// admit returns the session's backend and its breaker ticket, or nil when there is no
// session, no preferred backend, or its breaker refuses the request. Nil-safe.
func (s *session) admit(now int64) (*state.Backend, state.Ticket) {
	if s == nil || s.preferred == nil {
		return nil, state.TicketRejected
	}
	if t := s.preferred.Stats.Breaker.Acquire(now); t != state.TicketRejected {
		return s.preferred, t
	}
	return nil, state.TicketRejected
}

// stickyBegin finds the request's session and the backend it should go to (s.preferred,
// nil to pick normally), following the sequence in package sticky's doc.
//
// A cookie session is carried by its cookie: the signed reference names its backend, so a
// new session writes nothing to the store, and any instance sharing the key places it
// alike. The store holds only what the cookie cannot say: a session moved to another
// backend (its pin overrides the cookie until the client holds the re-issued one) and
// header-keyed sessions.
func (p *Proxy) stickyBegin(ctx *fasthttp.RequestCtx, t *state.Table, pool *state.Pool, ext *tableData, now int64, s *session) {
	req := &ctx.Request
	sc := &ext.sticky
	usable := func(b *state.Backend) bool {
		return b != nil && b.Pool == pool.Name && b.Healthy && !b.Drained && b.Stats.Breaker.Ready(now)
	}
	if sc.header == nil {
		s.active, s.cookieMode = true, true
		s.refs = ext.stickyRefs(t, p.sticky.Signer())
		raw := req.Header.Cookie(sc.spec.Name)
		// The cookie is copied first: its parsed parts must outlive header rewrites.
		var ok bool
		if len(raw) <= len(s.cookieBuf) {
			s.cookie, ok = sticky.ParseCookie(append(s.cookieBuf[:0], raw...))
		}
		if !ok || !s.refs.signer.Verify(s.cookie) {
			// A new session (or a forged or foreign cookie, which is treated as none): its
			// id is made now, its backend by the picker, and its cookie alone carries it.
			s.key = sticky.AppendSessionID(s.keyBuf[:0])
			return
		}
		s.hasCookie = true
		s.key = s.cookie.SID
		s.hint = s.refs.byRef[string(s.cookie.Ref)]
		var b *state.Backend
		if id, o := p.sticky.Lookup(s.key, now); o == sticky.CacheHit || o == sticky.RedisHit {
			s.pinned, b = id, t.Backend(id) // the session was moved: the store wins
		} else if s.hint.b != nil {
			s.pinned, b = s.hint.b.ID, s.hint.b
		}
		if b != nil && b.Pool != pool.Name {
			s.elsewhere(pool, usable)
		} else if usable(b) {
			s.preferred, s.action = b, pinCheck
		} else {
			// Unhealthy, open, drained or gone: the session moves, and the move is stored
			// (queued while Redis is down) so every instance follows it.
			s.action = pinMove
		}
		return
	}
	k := req.Header.PeekBytes(sc.header)
	if len(k) == 0 || len(k) > sticky.MaxKeyLen {
		return
	}
	s.key = append(s.keyBuf[:0], k...)
	s.active = true
	id, o := p.sticky.Lookup(s.key, now)
	switch o {
	case sticky.CacheHit, sticky.RedisHit:
		s.pinned = id
		if b := t.Backend(id); b != nil && b.Pool != pool.Name {
			s.elsewhere(pool, usable)
		} else if usable(b) {
			s.preferred = b
			s.action = pinCheck
		} else {
			s.action = pinMove // unhealthy, open, drained or gone: the session moves
		}
	case sticky.Miss:
		if p.newSessions.take(now, sc.newPerSec) {
			s.action = pinNew
			break
		}
		// Over sticky.new_header_sessions_per_second: placed like the fallback, not stored,
		// so clients inventing keys cannot grow the store past rate × ttl. The session is
		// stored by a later request when the budget allows (it may move once then).
		s.rendezvous(pool, usable)
	case sticky.Fallback:
		s.rendezvous(pool, usable)
		// No pin: the session goes back to its Redis pin when Redis does.
	}
}

// rendezvous places the session by rendezvous hashing of its key among the pool's usable
// backends (every instance agrees), leaving s.preferred nil when none is usable.
func (s *session) rendezvous(pool *state.Pool, usable func(*state.Backend) bool) {
	bs := pool.Backends
	if i := sticky.Rendezvous(s.key, bs, backendID, func(i int) bool { return usable(bs[i]) }); i >= 0 {
		s.preferred = bs[i]
	}
}

// perSecond is a budget of events per wall-clock second, shared by every request without
// a lock: the first taker in a new second resets the count. Takers racing that reset may
// get a few extra events in the second; the bound stays about n per second.
type perSecond struct {
	sec atomic.Int64 // the second (Unix) the count is for
	n   atomic.Int64
}

// take reports whether one more event fits in the budget of n per second at now (Unix ns).
func (b *perSecond) take(now, n int64) bool {
	sec := now / int64(time.Second)
	if cur := b.sec.Load(); cur != sec && b.sec.CompareAndSwap(cur, sec) {
		b.n.Store(0)
	}
	return b.n.Add(1) <= n
}

// elsewhere handles a session whose cookie or pin names a backend of another pool: routes
// send one client to several pools, and the session belongs to the pool that placed it.
// In this pool it is placed by rendezvous hashing of its key (stable, like the fallback
// without Redis); nothing is stored and the cookie is left as it is (the session is not
// active, so stickyEnd does not run) — it would otherwise move, and be written and
// re-issued, on every request that alternates between the pools.
func (s *session) elsewhere(pool *state.Pool, usable func(*state.Backend) bool) {
	s.active, s.action = false, pinNone
	s.rendezvous(pool, usable)
}

func backendID(b *state.Backend) string { return b.ID }

// stickyEnd records where the session landed (b answered) and refreshes the cookie: a new
// session's, one that names another backend, or one made with a previous key.
func (p *Proxy) stickyEnd(ctx *fasthttp.RequestCtx, sc *stickyConf, s *session, b *state.Backend) {
	switch {
	case s.action == pinNew:
		p.sticky.Pin(s.key, b.ID, sc.ttl)
	case s.action == pinMove, s.action == pinCheck && s.pinned != b.ID:
		p.sticky.Repin(s.key, b.ID, sc.ttl)
	}
	if s.cookieMode && (!s.hasCookie || s.hint.b != b || s.hint.key != 0) {
		ref, ok := s.refs.cur[b.ID]
		if !ok {
			ref = s.refs.signer.Ref(0, b.ID) // b is not in the table the refs were built from
		}
		sc2 := getScratch()
		sc2.b = sc.spec.AppendSetCookie(sc2.b[:0], s.refs.signer, s.key, ref)
		ctx.Response.Header.AddBytesV("Set-Cookie", sc2.b)
		putScratch(sc2)
	}
}
