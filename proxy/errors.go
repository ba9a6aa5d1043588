package proxy

import (
	"errors"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Errors the handler itself produces.
var (
	errNoConfig   = errors.New("no configuration loaded")
	errBadFraming = errors.New("ambiguous request framing")
	errNoBackend  = errors.New("no backend available")
)

// reply is a prebuilt error response: status and short JSON body that never names a
// backend or an address. A reply with a reason is a client error (what the client sent
// is at fault): it is counted in lb_client_errors_total and closes the connection.
type reply struct {
	status     int
	body       []byte
	retryAfter bool
	reason     clientReason
}

func newReply(status int, msg string, retryAfter bool) reply {
	return reply{status: status, body: []byte(`{"error":"` + msg + `"}` + "\n"), retryAfter: retryAfter}
}

// clientReply is the reply for a client error of reason, with reason's status.
func clientReply(reason clientReason, msg string) reply {
	r := newReply(clientReasons[reason].status, msg, false)
	r.reason = reason
	return r
}

var (
	replyBadGateway   = newReply(fasthttp.StatusBadGateway, "bad gateway", false)
	replyUnavailable  = newReply(fasthttp.StatusServiceUnavailable, "no backend available", true)
	replyBusy         = newReply(fasthttp.StatusServiceUnavailable, "backends at capacity", true)
	replyNoConfig     = newReply(fasthttp.StatusServiceUnavailable, "not configured", true)
	replyTimeout      = newReply(fasthttp.StatusGatewayTimeout, "gateway timeout", false)
	replyInternal     = newReply(fasthttp.StatusInternalServerError, "internal error", false)
	replyUnauthorized = newReply(fasthttp.StatusUnauthorized, "unauthorized", false)    // WWW-Authenticate set by the caller
	replyRateLimited  = newReply(fasthttp.StatusTooManyRequests, "rate limited", false) // Retry-After set by the caller

	replyBadRequest = clientReply(reasonMalformed, "bad request")
	replyBadFraming = clientReply(reasonFraming, "bad request")
	// Which one would the backend read? Authorization is no list (RFC 9110 §11.6.2).
	replyTwoAuthorizations = clientReply(reasonFraming, "more than one Authorization header")
	replyBadTarget         = clientReply(reasonTarget, "invalid request target")
	replyEscapedPath       = clientReply(reasonEscaped, "encoded slash, backslash or dot in path")
	replyBadHost           = clientReply(reasonHost, "invalid host")
	replyClientBody        = clientReply(reasonBody, "incomplete request body")
	replyBodyTooLarge      = clientReply(reasonBodyTooLarge, "request body too large")
	replyHeaderTooLarge    = clientReply(reasonHeaderTooLarge, "request header fields too large")
	replyTooManyHeaders    = clientReply(reasonTooManyHeaders, "too many header fields")
	replyReadTimeout       = clientReply(reasonTimeout, "request timeout")
	replyBadVersion        = clientReply(reasonVersion, "http version not supported")

	retryAfterName  = []byte("Retry-After")
	retryAfterValue = []byte("1")
	contentTypeJSON = []byte("application/json")
)

// errorReply is the one place an error becomes what the client sees.
func errorReply(err error) *reply {
	switch err {
	case errNoBackend:
		return &replyUnavailable
	case errNoConns:
		return &replyBusy
	case errNoConfig:
		return &replyNoConfig
	case errRespTimeout:
		return &replyTimeout
	case errBodyLimit:
		return &replyBodyTooLarge
	case errBadFraming:
		return &replyBadFraming
	case errClientBody:
		return &replyClientBody
	}
	return &replyBadGateway
}

// writeError replaces whatever response was started with err's reply.
func writeError(ctx *fasthttp.RequestCtx, err error) {
	writeReply(ctx, errorReply(err))
}

func writeReply(ctx *fasthttp.RequestCtx, r *reply) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(r.status)
	resp.Header.SetContentTypeBytes(contentTypeJSON)
	if r.retryAfter {
		resp.Header.SetCanonical(retryAfterName, retryAfterValue)
	}
	resp.SetBodyRaw(r.body)
}

// clientReason is why a request is a client error (the reason label of
// lb_client_errors_total); 0 is not a client error.
type clientReason uint8

const (
	reasonNone clientReason = iota
	reasonMalformed
	reasonFraming
	reasonTarget
	reasonEscaped
	reasonHost
	reasonBody
	reasonBodyTooLarge
	reasonHeaderTooLarge
	reasonTooManyHeaders
	reasonTimeout
	reasonVersion
	numClientReasons
)

// clientReasons gives each reason its label and the status the client is answered with.
var clientReasons = [numClientReasons]struct {
	name   string
	status int
}{
	reasonMalformed:      {"malformed", fasthttp.StatusBadRequest},                         // fasthttp could not parse the request
	reasonFraming:        {"framing", fasthttp.StatusBadRequest},                           // bad header syntax or ambiguous framing
	reasonTarget:         {"target", fasthttp.StatusBadRequest},                            // request target not origin- or absolute-form, or invalid path
	reasonEscaped:        {"escaped_path", fasthttp.StatusBadRequest},                      // escaped '/', '\' or '.' with escaped_slashes: reject
	reasonHost:           {"host", fasthttp.StatusBadRequest},                              // missing, repeated or invalid Host or authority
	reasonBody:           {"body", fasthttp.StatusBadRequest},                              // the body ended early or stalled
	reasonBodyTooLarge:   {"body_too_large", fasthttp.StatusRequestEntityTooLarge},         // body over max_body_bytes
	reasonHeaderTooLarge: {"header_too_large", fasthttp.StatusRequestHeaderFieldsTooLarge}, // header block over max_header_bytes
	reasonTooManyHeaders: {"too_many_headers", fasthttp.StatusRequestHeaderFieldsTooLarge}, // more than max_headers lines
	reasonTimeout:        {"timeout", fasthttp.StatusRequestTimeout},                       // request not received within read_timeout
	reasonVersion:        {"version", fasthttp.StatusHTTPVersionNotSupported},              // not HTTP/1.0 or HTTP/1.1
}

// ClientErrorReasons lists the reason labels of lb_client_errors_total.
func ClientErrorReasons() []string {
	names := make([]string, 0, numClientReasons-1)
	for _, r := range clientReasons[1:] {
		names = append(names, r.name)
	}
	return names
}

// ClientErrors returns how many client errors of reason (one of ClientErrorReasons) the
// proxy answered. Safe for concurrent use.
func (p *Proxy) ClientErrors(reason string) uint64 {
	for i, r := range clientReasons {
		if i > 0 && r.name == reason {
			return p.clientErrs[i].Load()
		}
	}
	return 0
}

// reject answers the request with r. A client error is counted, logged (sampled, at
// debug level) and closes the connection with a lingering close, so that a client still
// sending reads the answer rather than a reset. It never touches a backend's breaker,
// health or retry budget: no backend was involved.
func (p *Proxy) reject(ctx *fasthttp.RequestCtx, r *reply) {
	writeReply(ctx, r)
	if r.reason == reasonNone {
		return
	}
	n := p.clientErrs[r.reason].Add(1)
	if n == 1 || n%100 == 0 {
		p.log.Debug().Str("reason", clientReasons[r.reason].name).Int("status", r.status).Uint64("seen", n).Msg("client error")
	}
	ctx.SetConnectionClose()
	lingerOnClose(ctx.Conn())
}

// serverError is the fasthttp.Server ErrorHandler: requests fasthttp could not parse.
// The connection is closed after the reply, since the framing of what follows is unknown.
func (p *Proxy) serverError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		p.reject(ctx, &replyHeaderTooLarge)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		p.reject(ctx, &replyBodyTooLarge)
	case errors.Is(err, errBareLF):
		p.reject(ctx, &replyBadFraming)
	case isTimeout(err):
		p.reject(ctx, &replyReadTimeout)
	case strings.Contains(err.Error(), "missing required host header"):
		// fasthttp's own check (an unexported error): HTTP/1.1 needs a Host (RFC 9112 §3.2).
		p.reject(ctx, &replyBadHost)
	default:
		p.reject(ctx, &replyBadRequest)
	}
	// The handler never ran and fasthttp has not timed the request; if it parsed the head
	// and then failed to read the body, it reset the request: put back what the log shows.
	start := time.Now()
	if sc := scanned(ctx.Conn()); sc != nil {
		start = sc.restoreHead(ctx, start)
	}
	p.finish(ctx, p.tables.cur.Load(), start, nil)
}
