package proxy

import (
	"errors"

	"github.com/valyala/fasthttp"
)

// Errors the handler itself produces.
var (
	errNoConfig   = errors.New("no configuration loaded")
	errBadFraming = errors.New("ambiguous request framing")
	errNoBackend  = errors.New("no backend available")
)

// reply is a prebuilt error response: status and short JSON body that never names a
// backend or an address.
type reply struct {
	status     int
	body       []byte
	retryAfter bool
}

func newReply(status int, msg string, retryAfter bool) reply {
	return reply{status: status, body: []byte(`{"error":"` + msg + `"}` + "\n"), retryAfter: retryAfter}
}

var (
	replyBadGateway     = newReply(fasthttp.StatusBadGateway, "bad gateway", false)
	replyUnavailable    = newReply(fasthttp.StatusServiceUnavailable, "no backend available", true)
	replyBusy           = newReply(fasthttp.StatusServiceUnavailable, "backends at capacity", true)
	replyNoConfig       = newReply(fasthttp.StatusServiceUnavailable, "not configured", true)
	replyTimeout        = newReply(fasthttp.StatusGatewayTimeout, "gateway timeout", false)
	replyBodyTooLarge   = newReply(fasthttp.StatusRequestEntityTooLarge, "request body too large", false)
	replyHeaderTooLarge = newReply(fasthttp.StatusRequestHeaderFieldsTooLarge, "request header fields too large", false)
	replyBadRequest     = newReply(fasthttp.StatusBadRequest, "bad request", false)
	replyReadTimeout    = newReply(fasthttp.StatusRequestTimeout, "request timeout", false)
	replyUnauthorized   = newReply(fasthttp.StatusUnauthorized, "unauthorized", false)    // WWW-Authenticate set by the caller
	replyRateLimited    = newReply(fasthttp.StatusTooManyRequests, "rate limited", false) // Retry-After set by the caller

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
	case errBadFraming, errClientBody:
		return &replyBadRequest
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

// serverError is the fasthttp.Server ErrorHandler: requests fasthttp could not parse.
// The connection is closed after the reply, since the framing of what follows is unknown.
func serverError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		writeReply(ctx, &replyHeaderTooLarge)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeReply(ctx, &replyBodyTooLarge)
	case isTimeout(err):
		writeReply(ctx, &replyReadTimeout)
	default:
		writeReply(ctx, &replyBadRequest)
	}
	ctx.SetConnectionClose()
}
