package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// syscallEvents are the tracepoints counted per request: every system call, and the
// ones a proxy's request path is made of.
var syscallEvents = []struct{ event, label string }{
	{"raw_syscalls:sys_enter", "all"},
	{"syscalls:sys_enter_read", "read"},
	{"syscalls:sys_enter_write", "write"},
	{"syscalls:sys_enter_recvfrom", "recvfrom"},
	{"syscalls:sys_enter_sendto", "sendto"},
	{"syscalls:sys_enter_readv", "readv"},
	{"syscalls:sys_enter_writev", "writev"},
	{"syscalls:sys_enter_epoll_wait", "epoll_wait"},
	{"syscalls:sys_enter_epoll_pwait", "epoll_pwait"},
	{"syscalls:sys_enter_futex", "futex"},
}

// syscallRow is one target's system calls per request under wrk.
type syscallRow struct {
	target   string
	perReq   map[string]float64
	requests int64
}

// perfWorks reports whether perf can count syscall tracepoints here.
func perfWorks() bool {
	if !haveTool("perf") {
		return false
	}
	return exec.Command("perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true").Run() == nil
}

// countSyscalls runs wrk against t with perf stat counting the system calls of t's
// process tree. It is a pass of its own: the counting costs the proxy a little on every
// system call, so it never overlaps a CPU measurement.
func countSyscalls(ctx context.Context, o *options, t *target, conns int) (syscallRow, error) {
	var pids []string
	for _, p := range treePIDs(t.proc.pid()) {
		pids = append(pids, strconv.Itoa(p))
	}
	var evs []string
	for _, e := range syscallEvents {
		evs = append(evs, e.event)
	}
	out := filepath.Join(o.out, "syscalls-"+strings.ReplaceAll(t.name, "#", "-")+".csv")
	perf := exec.Command("perf", "stat", "-x,", "-o", out, "-e", strings.Join(evs, ","), "-p", strings.Join(pids, ","))
	perf.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := perf.Start(); err != nil {
		return syscallRow{}, fmt.Errorf("cannot start perf stat: %w", err)
	}
	time.Sleep(200 * time.Millisecond) // perf attaches
	w, err := runWrk(ctx, t.load(o), conns, o.duration, t.url())
	t.truncateLog()
	_ = perf.Process.Signal(syscall.SIGINT)
	_ = perf.Wait()
	if err != nil {
		return syscallRow{}, err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return syscallRow{}, fmt.Errorf("cannot read perf output: %w", err)
	}
	row := syscallRow{target: t.name, perReq: map[string]float64{}, requests: w.requests}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		n, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue // "<not counted>" or a comment
		}
		for _, e := range syscallEvents {
			if f[2] == e.event {
				row.perReq[e.label] = n / float64(w.requests)
			}
		}
	}
	return row, nil
}
