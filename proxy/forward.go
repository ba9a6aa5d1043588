package proxy

import (
	"time"

	"github.com/valyala/fasthttp"

	"go-loadbalancer/config"
	"go-loadbalancer/state"
	"go-loadbalancer/tracing"
)

// retryPolicy is a pool's retry settings, decoded once per table.
type retryPolicy struct {
	attempts    int
	budgetRatio float64
	onConnect   bool      // connection refused, reset or closed before a response
	onTimeout   bool      // response timeout
	onStatus    [6]uint64 // bit (code-500) of onStatus[0..]: 5xx codes that are retried
}

func newRetryPolicy(r config.Retry) retryPolicy {
	p := retryPolicy{attempts: r.Attempts, budgetRatio: r.BudgetRatio}
	for _, on := range r.On {
		switch on {
		case "connect", "reset":
			p.onConnect = true
		case "timeout":
			p.onTimeout = true
		case "5xx":
			p.onStatus[0] = ^uint64(0)
			p.onStatus[1] = ^uint64(0)
		default:
			if len(on) == 3 && on[0] == '5' {
				code := int(on[1]-'0')*10 + int(on[2]-'0')
				p.onStatus[code/64] |= 1 << (code % 64)
			}
		}
	}
	return p
}

func (p *retryPolicy) retriesStatus(code int) bool {
	c := code - 500
	return c >= 0 && c < 100 && p.onStatus[c/64]&(1<<(c%64)) != 0
}

// outcome classifies one attempt.
type outcome uint8

const (
	outcomeOK          outcome = iota // a response to pass on (2xx-4xx, or a 5xx not retried)
	outcomeUnsent                     // failed before the request was sent: safe to retry
	outcomeSentFailure                // failed after (part of) the request was sent
	outcomeTimeout                    // the response did not come in time
	outcomeStatus                     // the backend answered a 5xx the policy retries
	outcomeBusy                       // the backend's connection limit was reached
	outcomeClient                     // the client's body failed or was too large: not the backend
	outcomeHeadTooBig                 // the response head was over the limit: 502, not retried
)

func classify(err error, resp *fasthttp.Response, pol *retryPolicy) outcome {
	switch err {
	case nil:
		if pol.retriesStatus(resp.StatusCode()) {
			return outcomeStatus
		}
		return outcomeOK
	case errConnect, errDialTimeout:
		return outcomeUnsent
	case errNoConns:
		return outcomeBusy
	case errBodyLimit, errClientBody:
		return outcomeClient
	case errBigHead:
		return outcomeHeadTooBig
	case errRespTimeout:
		return outcomeTimeout
	}
	return outcomeSentFailure
}

// forward sends the request to a backend of pool, retrying on a different backend when
// the policy, the request and the pool's retry budget all allow it:
//   - a failure before the request was sent (connect error, connection limit) is retried
//     for any method;
//   - a failure after it was sent, a timeout, or a retried 5xx status only for idempotent
//     methods (RFC 9110 §9.2.2) whose body can be sent again — a POST is never replayed.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, t *state.Table, pool *state.Pool, region []byte, ext *tableData, now int64) {
	local := len(region) > 0 && t.Geo.PreferLocal()
	req, resp := &ctx.Request, &ctx.Response
	pol := &ext.pools[pool.Index]
	pool.Stats.CountRequest(now)
	replayable := isIdempotent(req) && bufferBody(req)
	sess := p.session(ctx, t, pool, ext, now) // nil: no sticky session
	defer putSession(sess)
	rt := p.requestTrace(ctx) // nil unless the request is traced
	if rt != nil {
		rt.Pool(pool.Name)
	}
	// HTTP/1.0 may come without a Host; such a request goes with its backend's address.
	noHost := len(req.Header.Host()) == 0
	var tried state.Tried
	pick := func() (*state.Backend, state.Ticket) {
		if local {
			return pool.PickLocal(region, tried, now)
		}
		return pool.Pick(tried, now)
	}
	b, ticket := sess.admit(now)
	if b == nil {
		if b, ticket = pick(); b == nil {
			writeError(ctx, errNoBackend)
			return
		}
	}
	for attempt := 0; ; attempt++ {
		u := b.Upstream.(*upstream)
		rec := p.noteBackend(ctx, b)
		req.URI().SetSchemeBytes(u.scheme)
		if noHost {
			req.URI().SetHost(u.host) // fasthttp writes it as the Host header
		}
		st := b.Stats
		var try *tracing.Try
		if rt != nil {
			try = startTry(rt, req, b.ID)
		}
		st.Inflight.Add(1)
		st.Requests.Add(1)
		var sent int64
		if rec != nil {
			sent = time.Now().UnixNano()
		}
		err := u.hc.Do(req, resp)
		st.Inflight.Add(-1)
		now = time.Now().UnixNano()
		if rec != nil {
			rec.tried(now-sent, err)
		}
		if try != nil {
			endTry(try, err, resp)
		}

		oc := classify(err, resp, pol)
		// A response head over the limit is answered 502 but neither retried nor counted
		// against the backend: the request may be its cause (a backend echoing a long
		// X-Request-Id), and another backend would answer the same; counting it would let
		// any client open the breakers. It is logged.
		notBackend := oc == outcomeBusy || oc == outcomeClient || oc == outcomeHeadTooBig
		failed := err != nil && !notBackend || err == nil && resp.StatusCode() >= 500
		if oc == outcomeHeadTooBig {
			p.logUpstreamError(b, err)
		}
		if notBackend {
			st.Breaker.Release(ticket) // a full pool or a failing client is not the backend failing
		} else {
			st.Breaker.Record(now, ticket, failed)
		}
		if failed {
			st.Failures.Add(1)
		}
		if failed && err != nil {
			p.logUpstreamError(b, err)
		}

		retry := false
		switch oc {
		case outcomeUnsent:
			retry = pol.onConnect
		case outcomeBusy:
			retry = true
		case outcomeSentFailure:
			retry = pol.onConnect && replayable
		case outcomeTimeout:
			retry = pol.onTimeout && replayable
		case outcomeStatus:
			retry = replayable
		}
		if retry && attempt < pol.attempts {
			// The next backend is found before this answer is dropped: with none left, the
			// client gets the backend's own answer (a 503 with its Retry-After, say), not
			// one we make up. The budget is charged only for a retry that happens.
			tried = tried.With(b.Index)
			if nb, nt := pick(); nb != nil {
				if pool.Stats.AllowRetry(now, pol.budgetRatio) {
					if err == nil {
						_ = resp.CloseBodyStream() // closes a streamed body's connection
						resp.Reset()
					}
					b, ticket = nb, nt
					continue
				}
				nb.Stats.Breaker.Release(nt)
			}
		}
		if err != nil {
			if err == errConnect || err == errDialTimeout {
				err = errNoBackend // every backend tried was unreachable
			}
			// A client error (the body too large or cut short) closes the connection: the
			// rest of the body is still on the wire.
			p.reject(ctx, errorReply(err))
			return
		}
		cleanResponse(resp)
		if resp.IsBodyStream() && ext.writeTimeout > 0 {
			// Slow path: a streamed body. write_timeout bounds each write, not the whole
			// response; a deadline set here is one fasthttp's server leaves alone.
			if w, ok := resp.BodyStream().(clientWatcher); ok {
				_ = ctx.SetWriteDeadline(time.Now().Add(ext.writeTimeout))
				w.watchClient(ctx.Conn(), ext.writeTimeout)
			}
		}
		if sess != nil && sess.active {
			p.stickyEnd(ctx, &ext.sticky, sess, b)
		}
		return
	}
}

// isIdempotent reports whether the method is idempotent (RFC 9110 §9.2.2).
func isIdempotent(req *fasthttp.Request) bool {
	h := &req.Header
	return h.IsGet() || h.IsHead() || h.IsPut() || h.IsDelete() || h.IsOptions() || h.IsTrace()
}

// bufferBody makes a body that fasthttp already read whole (Content-Length up to
// bufferLimit) a plain in-memory body, so that a retry can send it again; it reports
// whether the body is replayable. A larger or chunked body stays a stream: not replayable.
func bufferBody(req *fasthttp.Request) bool {
	if !req.IsBodyStream() {
		return true
	}
	cl := req.Header.ContentLength()
	if cl < 0 || cl > bufferLimit {
		return false
	}
	sc := getScratch()
	var err error
	sc.b, err = readAll(sc.b[:0], req.BodyStream(), cl)
	if err == nil {
		req.SetBody(sc.b)
	}
	putScratch(sc)
	return err == nil
}

// readAll appends exactly n bytes from r to dst.
func readAll(dst []byte, r interface{ Read([]byte) (int, error) }, n int) ([]byte, error) {
	start := len(dst)
	if cap(dst)-start < n {
		grown := make([]byte, start, start+n)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+n]
	read := 0
	for read < n {
		m, err := r.Read(dst[start+read:])
		read += m
		if err != nil && read < n {
			return dst[:start+read], err
		}
	}
	return dst, nil
}
