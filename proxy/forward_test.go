package proxy

import (
	"errors"
	"testing"

	"go-loadbalancer/config"
)

// TestClassify: every error a try can end with, and a response's status, maps to one
// outcome; whether that outcome is the backend's failure (its breaker and failure count)
// or none of its doing is decided by the outcome alone.
func TestClassify(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name       string
		err        error
		status     int
		want       outcome
		failed     bool // counted against the backend
		notBackend bool // the breaker ticket is released, not recorded
	}{
		{"2xx", nil, 200, outcomeOK, false, false},
		{"4xx", nil, 404, outcomeOK, false, false},
		{"499", nil, 499, outcomeOK, false, false},
		{"500", nil, 500, outcome5xx, true, false},
		{"503", nil, 503, outcome5xx, true, false},
		{"connect", errConnect, 0, outcomeUnsent, true, false},
		{"connect timeout", errDialTimeout, 0, outcomeUnsent, true, false},
		{"busy", errNoConns, 0, outcomeBusy, false, true},
		{"body limit", errBodyLimit, 0, outcomeClient, false, true},
		{"client body", errClientBody, 0, outcomeClient, false, true},
		{"big head", errBigHead, 0, outcomeHeadTooBig, false, true},
		{"response timeout", errRespTimeout, 0, outcomeTimeout, true, false},
		{"write", errWrite, 0, outcomeSentFailure, true, false},
		{"reset", errReset, 0, outcomeSentFailure, true, false},
		{"bad response", errBadResponse, 0, outcomeSentFailure, true, false},
		{"unknown error", errors.New("other"), 0, outcomeSentFailure, true, false},
	} {
		oc := classify(c.err, c.status)
		if oc != c.want || oc.backendFailed() != c.failed || oc.notBackend() != c.notBackend {
			t.Errorf("%s: got outcome %d failed %t notBackend %t; want %d %t %t",
				c.name, oc, oc.backendFailed(), oc.notBackend(), c.want, c.failed, c.notBackend)
		}
		if oc.backendFailed() && oc.notBackend() {
			t.Errorf("%s: both the backend's failure and not the backend's", c.name)
		}
	}
}

// TestRetryDecision covers every branch of retryDecision.
func TestRetryDecision(t *testing.T) {
	t.Parallel()
	all := newRetryPolicy(config.Retry{Attempts: 2, On: []string{"connect", "timeout", "502", "503"}})
	none := newRetryPolicy(config.Retry{Attempts: 2})
	every5xx := newRetryPolicy(config.Retry{Attempts: 1, On: []string{"reset", "5xx"}})
	zero := newRetryPolicy(config.Retry{Attempts: 0, On: []string{"connect", "timeout", "5xx"}})
	const (
		idem, notIdem = true, false
		inMem, stream = true, false
	)
	for _, c := range []struct {
		name       string
		pol        *retryPolicy
		oc         outcome
		status     int
		idempotent bool
		replayable bool
		retries    int
		want       retryVerdict
	}{
		{"a response is passed on", &all, outcomeOK, 200, idem, inMem, 0, stopAnswered},
		{"a 4xx is passed on", &all, outcomeOK, 429, idem, inMem, 0, stopAnswered},
		{"a client failure is not retried", &all, outcomeClient, 0, idem, inMem, 0, stopNotBackend},
		{"a head over the limit is not retried", &all, outcomeHeadTooBig, 0, idem, inMem, 0, stopNotBackend},

		{"unsent: any method", &all, outcomeUnsent, 0, notIdem, stream, 0, retryUnsent},
		{"unsent without connect", &none, outcomeUnsent, 0, idem, inMem, 0, stopPolicy},
		{"unsent, attempts used", &all, outcomeUnsent, 0, idem, inMem, 2, stopAttempts},
		{"unsent, attempts 0", &zero, outcomeUnsent, 0, idem, inMem, 0, stopAttempts},

		{"busy: any method, any policy", &none, outcomeBusy, 0, notIdem, stream, 0, retryBusy},
		{"busy, attempts used", &none, outcomeBusy, 0, idem, inMem, 2, stopAttempts},

		{"sent: idempotent in memory", &all, outcomeSentFailure, 0, idem, inMem, 1, retrySent},
		{"sent: reset names it too", &every5xx, outcomeSentFailure, 0, idem, inMem, 0, retrySent},
		{"sent: a POST is never replayed", &all, outcomeSentFailure, 0, notIdem, inMem, 0, stopMethod},
		{"sent: a streamed body", &all, outcomeSentFailure, 0, idem, stream, 0, stopBody},
		{"sent without connect or reset", &none, outcomeSentFailure, 0, idem, inMem, 0, stopPolicy},
		{"sent, attempts used", &all, outcomeSentFailure, 0, idem, inMem, 2, stopAttempts},

		{"timeout", &all, outcomeTimeout, 0, idem, inMem, 0, retryTimeout},
		{"timeout without timeout", &every5xx, outcomeTimeout, 0, idem, inMem, 0, stopPolicy},
		{"timeout of a POST", &all, outcomeTimeout, 0, notIdem, inMem, 0, stopMethod},
		{"timeout of a streamed body", &all, outcomeTimeout, 0, idem, stream, 0, stopBody},
		{"timeout, attempts used", &all, outcomeTimeout, 0, idem, inMem, 2, stopAttempts},

		{"503 named", &all, outcome5xx, 503, idem, inMem, 0, retryStatus},
		{"500 not named", &all, outcome5xx, 500, idem, inMem, 0, stopPolicy},
		{"5xx names 599", &every5xx, outcome5xx, 599, idem, inMem, 0, retryStatus},
		{"5xx, attempts used", &every5xx, outcome5xx, 500, idem, inMem, 1, stopAttempts},
		{"503 of a POST", &all, outcome5xx, 503, notIdem, inMem, 0, stopMethod},
		{"503 of a streamed body", &all, outcome5xx, 503, idem, stream, 0, stopBody},
		{"a status over 599 is no retried 5xx", &every5xx, outcome5xx, 600, idem, inMem, 0, stopPolicy},
	} {
		got := retryDecision(c.pol, c.oc, c.status, c.idempotent, c.replayable, c.retries)
		if got != c.want {
			t.Errorf("%s: got verdict %d; want %d", c.name, got, c.want)
		}
	}
}

// TestRetryVerdicts: the stop verdicts end the request, the retry ones move it on.
func TestRetryVerdicts(t *testing.T) {
	t.Parallel()
	for _, v := range []retryVerdict{stopAnswered, stopNotBackend, stopPolicy, stopMethod, stopBody, stopAttempts} {
		if v.retry() {
			t.Errorf("verdict %d retries", v)
		}
	}
	for _, v := range []retryVerdict{retryUnsent, retryBusy, retrySent, retryTimeout, retryStatus} {
		if !v.retry() {
			t.Errorf("verdict %d does not retry", v)
		}
	}
}
