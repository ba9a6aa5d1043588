package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run reports.
type wrkResult struct {
	requests int64
	elapsed  time.Duration
	rps      float64
	p50, p99 time.Duration
	errors   int64 // socket errors (connect, read, write, timeout) plus non-2xx/3xx responses
}

// wrkLoad is how wrk runs: where, with how many threads, and extra request headers.
type wrkLoad struct {
	cpus    string // taskset list
	threads int
	headers []string // e.g. "Connection: close" for a new connection per request
}

// runWrk runs wrk pinned to l.cpus against url.
func runWrk(ctx context.Context, l wrkLoad, conns int, d time.Duration, url string) (wrkResult, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-c", l.cpus, "wrk", "-t" + strconv.Itoa(max(l.threads, 1)), "-c" + strconv.Itoa(conns),
		"-d" + strconv.Itoa(secs) + "s", "--timeout", "2s", "--latency"}
	for _, h := range l.headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "taskset", args...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w: %s", url, err, tail(out, 500))
	}
	return parseWrk(string(out))
}

// parseWrk reads wrk 4's text output (with --latency).
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	sc := bufio.NewScanner(strings.NewReader(out))
	inDist := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Latency Distribution"):
			inDist = true
		case inDist && len(f) == 2 && strings.HasSuffix(f[0], "%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, err
			}
			switch f[0] {
			case "50%":
				r.p50 = d
			case "99%":
				r.p99 = d
			}
		case len(f) >= 5 && f[1] == "requests" && f[2] == "in":
			inDist = false
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("cannot parse wrk output %q: %w", line, err)
			}
			r.requests = n
			r.elapsed, err = parseWrkDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return r, err
			}
		case strings.HasPrefix(line, "Socket errors:"):
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for _, part := range strings.Split(strings.TrimPrefix(line, "Socket errors:"), ",") {
				kv := strings.Fields(part)
				if len(kv) == 2 {
					n, _ := strconv.ParseInt(kv[1], 10, 64)
					r.errors += n
				}
			}
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "Non-2xx or 3xx responses:")), 10, 64)
			r.errors += n
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			r.rps, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	if r.requests == 0 {
		return r, fmt.Errorf("cannot parse wrk output: no request count in %q", tail([]byte(out), 500))
	}
	return r, nil
}

// parseWrkDuration parses wrk's "1.23ms", "850.00us", "2.01s", "1.50m" and "10.00s".
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"m", time.Minute}, {"s", time.Second}, {"h", time.Hour}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				break
			}
			return time.Duration(math.Round(x * float64(u.unit))), nil
		}
	}
	return 0, fmt.Errorf("cannot parse wrk duration %q", s)
}
