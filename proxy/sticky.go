package proxy

import (
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
}

func newStickyConf(c *config.Config) stickyConf {
	s := stickyConf{on: c.Sticky.Enabled, ttl: c.Sticky.TTL}
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

// session is one request's sticky-session state. It lives on forward's stack; the key
// and cookie are copied out of the request header, which the client may rewrite.
type session struct {
	active     bool
	key        []byte
	keyBuf     [sticky.MaxKeyLen]byte
	cookie     sticky.Cookie
	cookieBuf  [sticky.SessionIDLen + sticky.MaxBackendIDLen + 64]byte
	hasCookie  bool // cookie mode with a cookie that parsed
	cookieMode bool
	pinned     string // backend ID the store had, "" if none
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
	p.stickyBegin(ctx, t, pool, &ext.sticky, now, s)
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
func (p *Proxy) stickyBegin(ctx *fasthttp.RequestCtx, t *state.Table, pool *state.Pool, sc *stickyConf, now int64, s *session) {
	req := &ctx.Request
	if sc.header != nil {
		k := req.Header.PeekBytes(sc.header)
		if len(k) == 0 || len(k) > sticky.MaxKeyLen {
			return
		}
		s.key = append(s.keyBuf[:0], k...)
	} else {
		s.cookieMode = true
		raw := req.Header.Cookie(sc.spec.Name)
		// The cookie is copied first: its parsed parts must outlive header rewrites.
		var ok bool
		if len(raw) <= len(s.cookieBuf) {
			s.cookie, ok = sticky.ParseCookie(append(s.cookieBuf[:0], raw...))
		}
		if !ok {
			// A new session: its id is made now, its backend by the picker.
			s.active = true
			s.key = sticky.AppendSessionID(s.keyBuf[:0])
			s.action = pinNew
			return
		}
		s.hasCookie = true
		s.key = s.cookie.SID
	}
	s.active = true
	usable := func(b *state.Backend) bool {
		return b != nil && b.Pool == pool.Name && b.Healthy && !b.Drained && b.Stats.Breaker.Ready(now)
	}
	hinted := func() *state.Backend {
		if s.hasCookie && p.sticky.Signer().Verify(s.cookie) {
			if b := t.BackendByID(s.cookie.Backend); usable(b) {
				return b
			}
		}
		return nil
	}
	id, o := p.sticky.Lookup(s.key, now)
	switch o {
	case sticky.CacheHit, sticky.RedisHit:
		s.pinned = id
		if b := t.Backend(id); usable(b) {
			s.preferred = b
			s.action = pinCheck
		} else {
			s.action = pinMove // unhealthy, open, drained or gone: the session moves
		}
	case sticky.Miss:
		s.preferred = hinted()
		s.action = pinNew
	case sticky.Fallback:
		if s.cookieMode {
			if s.preferred = hinted(); s.preferred == nil {
				s.action = pinMove // queued by the store until Redis returns
			} else {
				// The hint stands in for the pin: if a retry ends on another backend, that
				// move is queued too, or Redis would send the session back afterwards.
				s.pinned = s.preferred.ID
				s.action = pinCheck
			}
			return
		}
		bs := pool.Backends
		if i := sticky.Rendezvous(s.key, bs, backendID, func(i int) bool { return usable(bs[i]) }); i >= 0 {
			s.preferred = bs[i]
		}
		// No pin: the session goes back to its Redis pin when Redis does.
	}
}

func backendID(b *state.Backend) string { return b.ID }

// stickyEnd records where the session landed (b answered) and refreshes the cookie.
func (p *Proxy) stickyEnd(ctx *fasthttp.RequestCtx, sc *stickyConf, s *session, b *state.Backend) {
	switch {
	case s.action == pinNew:
		p.sticky.Pin(s.key, b.ID, sc.ttl)
	case s.action == pinMove, s.action == pinCheck && s.pinned != b.ID:
		p.sticky.Repin(s.key, b.ID, sc.ttl)
	}
	if s.cookieMode && (!s.hasCookie || string(s.cookie.Backend) != b.ID) {
		var sid []byte
		if s.hasCookie {
			sid = s.cookie.SID
		} else {
			sid = s.key
		}
		sc2 := getScratch()
		sc2.b = sc.spec.AppendSetCookie(sc2.b[:0], p.sticky.Signer(), sid, b.ID)
		ctx.Response.Header.AddBytesV("Set-Cookie", sc2.b)
		putScratch(sc2)
	}
}
