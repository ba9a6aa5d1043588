package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// idleRow is one target's memory per idle keep-alive connection.
type idleRow struct {
	name          string
	conns         int
	before, after int64 // RSS of the target's process tree, bytes
}

func (r idleRow) perConn() float64 { return float64(r.after-r.before) / float64(r.conns) }

// measureIdle starts each target afresh, opens n keep-alive connections to it that have
// each carried one request (so every per-connection buffer a request needs was touched),
// and records how much the target's resident memory grew (VmRSS of its process tree: for
// nginx the master and worker, for HAProxy its one process). The connections are held
// while RSS settles (two equal readings 200 ms apart, at most 5 s), then closed.
func measureIdle(ctx context.Context, o *options, e *env, rep *report, kinds []string) error {
	for _, k := range kinds {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		name := k + "-idle"
		t, err := e.startTarget(name, k)
		if err != nil {
			return err
		}
		// One request first, so the one-off costs (upstream pool, first buffers) are in
		// the baseline, not spread over the idle connections.
		if err := waitReady(t); err != nil {
			return err
		}
		before := settledRSS(t.proc.pid())
		conns, err := openIdle(t.addr, o.idle)
		if err != nil {
			closeAll(conns)
			t.proc.stop()
			return fmt.Errorf("%s: %w", t.name, err)
		}
		after := settledRSS(t.proc.pid())
		closeAll(conns)
		t.proc.stop()
		row := idleRow{name: k, conns: len(conns), before: before, after: after}
		rep.idle = append(rep.idle, row)
		o.progress("%s: %d idle connections, RSS %d → %d KiB, %.1f KiB each", k, row.conns, before>>10, after>>10, row.perConn()/1024)
	}
	return nil
}

// openIdle opens n connections to addr, sends one GET on each and reads its answer.
func openIdle(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return conns, fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
			return conns, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return conns, fmt.Errorf("connection %d: %w", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			return conns, fmt.Errorf("connection %d: status %d, close %v", i, resp.StatusCode, resp.Close)
		}
		_ = c.SetDeadline(time.Time{})
	}
	return conns, nil
}

func closeAll(cs []net.Conn) {
	for _, c := range cs {
		c.Close()
	}
}

// settledRSS returns the RSS of pid's process tree once two readings 200 ms apart agree
// within 1 %, or the last reading after 5 s.
func settledRSS(pid int) int64 {
	prev := treeRSS(pid)
	for range 25 {
		time.Sleep(200 * time.Millisecond)
		cur := treeRSS(pid)
		if d := cur - prev; d*100 <= cur && -d*100 <= cur {
			return cur
		}
		prev = cur
	}
	return prev
}

// treeRSS sums VmRSS of pid and its descendants, in bytes.
func treeRSS(pid int) int64 {
	var total int64
	for _, p := range treePIDs(pid) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}
