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

// outcome classifies one try.
type outcome uint8

const (
	outcomeOK          outcome = iota // a response below 500
	outcomeUnsent                     // failed before the request was sent: connect error or timeout
	outcomeSentFailure                // failed after (part of) the request was sent
	outcomeTimeout                    // the response did not come in time
	outcome5xx                        // the backend answered a 5xx status
	outcomeBusy                       // the backend's connection limit was reached
	outcomeClient                     // the client's body failed or was too large: not the backend
	outcomeHeadTooBig                 // the response head was over the limit: 502, not retried
)

// classify names the outcome of a try that ended with err (nil: a response with status).
func classify(err error, status int) outcome {
	switch err {
	case nil:
		if status >= 500 {
			return outcome5xx
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

// notBackend reports whether the try says nothing about the backend: a full connection
// pool, a failing client, or a response head over the limit. A head over the limit is
// answered 502 but neither retried nor counted against the backend: the request may be
// its cause (a backend echoing a long X-Request-Id), and another backend would answer the
// same; counting it would let any client open the breakers.
func (oc outcome) notBackend() bool {
	return oc == outcomeBusy || oc == outcomeClient || oc == outcomeHeadTooBig
}

// backendFailed reports whether the try counts as the backend's failure (its breaker and
// lb_backend failures): no response for a reason of its own, or a 5xx.
func (oc outcome) backendFailed() bool {
	return oc == outcomeUnsent || oc == outcomeSentFailure || oc == outcomeTimeout || oc == outcome5xx
}

// retryVerdict is retryDecision's answer: whether to try another backend, and why.
type retryVerdict uint8

const (
	stopAnswered   retryVerdict = iota // a response below 500: passed on
	stopNotBackend                     // the client's body failed, or the response head was over the limit: no backend would fare better
	stopPolicy                         // retry.on does not name this outcome (connect, timeout, the status)
	stopMethod                         // sent, and the method is not idempotent (RFC 9110 §9.2.2): never replayed
	stopBody                           // sent, and the body is not kept in memory (streamed): it cannot be sent again
	stopAttempts                       // retry.attempts retries were made already

	retryUnsent  // nothing was sent (connect failure), retry.on has connect
	retryBusy    // the backend's connection limit: nothing was sent, always moved on
	retrySent    // failed after sending, retry.on has connect or reset, replayable
	retryTimeout // no response in time, retry.on has timeout, replayable
	retryStatus  // a 5xx retry.on names, replayable
)

// retry reports whether the verdict is to try another backend.
func (v retryVerdict) retry() bool { return v >= retryUnsent }

// retryDecision decides, from one try's outcome (and status, for a 5xx), whether the
// request may go to another backend (docs/behaviour.md#retries). It is pure: whether one is left, and whether the
// pool's retry budget (retry.budget_ratio) allows it, forward finds out after — in that
// order, so the budget is charged only for a retry that happens.
//   - A failure before the request was sent (connect error with retry.on connect, or the
//     connection limit) is retried for any method.
//   - A failure after it was sent (with connect or reset), a timeout (with timeout), or a
//     5xx retry.on names only when the method is idempotent (RFC 9110 §9.2.2) and the
//     body is in memory to be sent again: a POST is never replayed.
//   - At most pol.attempts retries: retries counts those already made.
func retryDecision(pol *retryPolicy, oc outcome, status int, idempotent, replayable bool, retries int) retryVerdict {
	var v retryVerdict
	switch oc {
	case outcomeOK:
		return stopAnswered
	case outcomeClient, outcomeHeadTooBig:
		return stopNotBackend
	case outcomeBusy:
		v = retryBusy
	case outcomeUnsent:
		if !pol.onConnect {
			return stopPolicy
		}
		v = retryUnsent
	case outcomeSentFailure:
		if !pol.onConnect {
			return stopPolicy
		}
		v = retrySent
	case outcomeTimeout:
		if !pol.onTimeout {
			return stopPolicy
		}
		v = retryTimeout
	case outcome5xx:
		if !pol.retriesStatus(status) {
			return stopPolicy
		}
		v = retryStatus
	}
	if v == retrySent || v == retryTimeout || v == retryStatus {
		// Sent: only a request that can be sent again, unchanged.
		switch {
		case !idempotent:
			return stopMethod
		case !replayable:
			return stopBody
		}
	}
	if retries >= pol.attempts {
		return stopAttempts
	}
	return v
}

// forward sends the request to a backend of pool — the sticky session's, or pick's — and
// on a failure retryDecision allows, to another one not tried yet, while one is left and
// the pool's retry budget allows it. The last try's answer (or error) goes to the client.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, pool *state.Pool, region []byte, ext *tableData, now int64) {
	t := ext.table
	req := &ctx.Request
	pol := &ext.pools[pool.Index]
	pool.Stats.CountRequest(now)
	idempotent := isIdempotent(req)
	replayable := idempotent && bufferBody(req) // a POST's body is never buffered for it
	sess := p.session(ctx, t, pool, ext, now)   // nil: no sticky session
	defer putSession(sess)
	rt := p.requestTrace(ctx) // nil unless the request is traced
	if rt != nil {
		rt.Pool(pool.Name)
	}
	// HTTP/1.0 may come without a Host; such a request goes with its backend's address.
	noHost := len(req.Header.Host()) == 0
	b, ticket := choose(sess, t.Geo, pool, region, now)
	if b == nil {
		writeError(ctx, errNoBackend)
		return
	}
	var tried state.Tried
	for retries := 0; ; retries++ {
		var oc outcome
		var err error
		oc, now, err = p.try(ctx, ext, b, ticket, rt, noHost)
		if retryDecision(pol, oc, ctx.Response.StatusCode(), idempotent, replayable, retries).retry() {
			// The next backend is found before this answer is dropped: with none left, the
			// client gets the backend's own answer (a 503 with its Retry-After, say), not
			// one we make up. The budget is charged only for a retry that happens.
			tried = tried.With(b.Index)
			if nb, nt := pick(t.Geo, pool, region, tried, now); nb != nil {
				if pool.Stats.AllowRetry(now, pol.budgetRatio) {
					if err == nil {
						_ = ctx.Response.CloseBodyStream() // closes a streamed body's connection
						ctx.Response.Reset()
					}
					b, ticket = nb, nt
					continue
				}
				nb.Stats.Breaker.Release(nt)
			}
		}
		p.relay(ctx, ext, sess, b, err)
		return
	}
}

// try sends the request to b once, through b's client (ticket is b's breaker ticket),
// and settles the try: b's counters, its breaker (Record, or Release when the outcome is
// not the backend's), the access log's try record, the trace span, the error log. It
// returns the outcome, the time the try ended, and its error (nil: b's response is in
// ctx.Response).
func (p *Proxy) try(ctx *fasthttp.RequestCtx, ext *tableData, b *state.Backend, ticket state.Ticket, rt *tracing.Request, noHost bool) (outcome, int64, error) {
	req, resp := &ctx.Request, &ctx.Response
	u := ext.upstream(b)
	rec := p.noteBackend(ctx, ext, b)
	req.URI().SetSchemeBytes(u.scheme)
	if noHost {
		req.URI().SetHost(u.host) // fasthttp writes it as the Host header
	}
	st := b.Stats
	var span *tracing.Try
	if rt != nil {
		span = startTry(rt, req, b.ID)
	}
	st.Inflight.Add(1)
	st.Requests.Add(1)
	var sent int64
	if rec != nil {
		sent = time.Now().UnixNano()
	}
	err := u.hc.Do(req, resp)
	st.Inflight.Add(-1)
	now := time.Now().UnixNano()
	if rec != nil {
		rec.tried(now-sent, err)
	}
	if span != nil {
		endTry(span, err, resp)
	}

	status := 0
	if err == nil {
		status = resp.StatusCode()
	}
	oc := classify(err, status)
	failed := oc.backendFailed()
	if oc.notBackend() {
		st.Breaker.Release(ticket) // a full pool or a failing client is not the backend failing
	} else {
		st.Breaker.Record(now, ticket, failed)
	}
	if failed {
		st.Failures.Add(1)
	}
	if err != nil && (failed || oc == outcomeHeadTooBig) {
		p.logUpstreamError(b, u, err) // a head over the limit is logged, not counted
	}
	return oc, now, err
}

// relay answers the client with the last try's outcome: b's response, cleaned of what
// must not pass (cleanResponse) and with the sticky session's cookie, or err's reply.
func (p *Proxy) relay(ctx *fasthttp.RequestCtx, ext *tableData, sess *session, b *state.Backend, err error) {
	resp := &ctx.Response
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
}

// pick returns a backend of pool not in tried, with its breaker ticket, for a client in
// region (nil: unknown or geo off): with geo.prefer_local, one in that region while one
// is usable (state.Pool.PickLocal), otherwise any (state.Pool.Pick); nil when none can
// take the request. Requests and upgrades both pick through it.
func pick(geo *state.Geo, pool *state.Pool, region []byte, tried state.Tried, now int64) (*state.Backend, state.Ticket) {
	if len(region) > 0 && geo.PreferLocal() {
		return pool.PickLocal(region, tried, now)
	}
	return pool.Pick(tried, now)
}

// choose returns the first backend for a request or upgrade: its sticky session's when
// that one's breaker admits it (sess nil: no session), else pick's.
func choose(sess *session, geo *state.Geo, pool *state.Pool, region []byte, now int64) (*state.Backend, state.Ticket) {
	if b, ticket := sess.admit(now); b != nil {
		return b, ticket
	}
	return pick(geo, pool, region, 0, now)
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
