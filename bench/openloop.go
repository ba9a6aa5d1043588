package main

import (
	"bytes"
	"io"
	"net/http"
	neturl "net/url"
	"slices"
	"strconv"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"github.com/valyala/fasthttp"
)

// openResult is one open-loop run at a fixed rate.
type openResult struct {
	sent, ok  int64   // after the warm-up
	okAll     int64   // successful responses including the warm-up (for CPU per request)
	achieved  float64 // responses per second over the run
	p50, p99  time.Duration
	p999, max time.Duration
	// behind is how far the generator itself fell behind its schedule at p99 (the send
	// delay); large values mean the load-generator core was saturated.
	behind time.Duration
	// sendP99 is the p99 of vegeta's own latency, from when the request was actually sent:
	// the server's share without the generator's lateness.
	sendP99 time.Duration
}

// runVegeta sends GET url at rate requests/s for d with the vegeta library, and measures
// each request's latency from when the schedule said it was due, not from when it was
// sent: a request that waited behind a stalled one counts its wait (no coordinated
// omission). vegeta's pacer sends request n at began + (n+1)/rate.
func runVegeta(url string, rate int, d time.Duration) openResult {
	// vegeta's attacker and pacer over a fasthttp transport: net/http's client costs too
	// much CPU to offer 30k requests/s from the one core the generator shares with the
	// backends. The transport's connections are closed after the run. Workers (and so
	// connections) are capped at 512: past that a saturated generator only opens more
	// connections and falls further behind. A request that waits for a worker is late, and
	// that wait is counted, since latency runs from the schedule.
	tr := newFastTransport(url)
	defer tr.hc.CloseIdleConnections()
	atk := vegeta.NewAttacker(
		vegeta.Client(&http.Client{Transport: tr}), // no Client.Timeout: it costs a timer and a goroutine per request; the transport times out
		vegeta.Workers(64),
		vegeta.MaxWorkers(512),
		vegeta.MaxBody(4096),
		vegeta.Redirects(vegeta.NoFollow),
	)
	targeter := vegeta.NewStaticTargeter(vegeta.Target{Method: "GET", URL: url})
	pacer := vegeta.ConstantPacer{Freq: rate, Per: time.Second}
	interval := time.Second / time.Duration(rate)

	began := time.Now()
	lat := make([]time.Duration, 0, int(float64(rate)*d.Seconds())+16)
	behind := make([]time.Duration, 0, cap(lat))
	sent := make([]time.Duration, 0, cap(lat))
	var r openResult
	// The first tenth of the run (at most 300 ms) opens the connections and is not counted.
	warm := began.Add(min(d/10, 300*time.Millisecond))
	var first, last time.Time
	for res := range atk.Attack(targeter, pacer, d, "") {
		if res.Error == "" && res.Code == 200 {
			r.okAll++
		}
		due := began.Add(time.Duration(res.Seq+1) * interval)
		if due.Before(warm) {
			continue
		}
		r.sent++
		late := max(0, res.Timestamp.Sub(due))
		behind = append(behind, late)
		if res.Error != "" || res.Code != 200 {
			continue
		}
		r.ok++
		lat = append(lat, res.Latency+late)
		sent = append(sent, res.Latency)
		if first.IsZero() || res.Timestamp.Before(first) {
			first = res.Timestamp
		}
		if end := res.End(); end.After(last) {
			last = end
		}
	}
	if span := last.Sub(first); span > 0 {
		r.achieved = float64(r.ok) / span.Seconds()
	}
	slices.Sort(lat)
	slices.Sort(behind)
	slices.Sort(sent)
	r.sendP99 = quantile(sent, 0.99)
	r.p50, r.p99, r.p999 = quantile(lat, 0.50), quantile(lat, 0.99), quantile(lat, 0.999)
	if len(lat) > 0 {
		r.max = lat[len(lat)-1]
	}
	r.behind = quantile(behind, 0.99)
	return r
}

// quantile of sorted xs (nearest rank); 0 for none.
func quantile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	i := int(q*float64(len(xs))+0.5) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// fastTransport is an http.RoundTripper on a fasthttp.HostClient, for vegeta. It sends
// the method and URL only (like wrk) and returns status and body.
type fastTransport struct{ hc *fasthttp.HostClient }

func newFastTransport(rawURL string) *fastTransport {
	u, _ := neturl.Parse(rawURL)
	return &fastTransport{hc: &fasthttp.HostClient{
		Addr: u.Host, MaxConns: 512, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		MaxIdemponentCallAttempts: 1, NoDefaultUserAgentHeader: true,
	}}
}

func (t *fastTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(r.Method)
	req.SetRequestURI(r.URL.String())
	if err := t.hc.Do(req, resp); err != nil {
		return nil, err
	}
	code := resp.StatusCode()
	body := bytes.Clone(resp.Body())
	return &http.Response{
		StatusCode: code, Status: strconv.Itoa(code), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r,
	}, nil
}
