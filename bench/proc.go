package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ; 100 on every Linux
// architecture Go supports).
const clockTick = 10 * time.Millisecond

// cpuTime is user and kernel CPU time of a process tree, in clock ticks, and the time its
// threads ran, in nanoseconds.
type cpuTime struct{ user, sys, run time.Duration }

// total is the CPU time: run where the kernel reports it (schedstat), else user+sys. A run of
// a few milliseconds (a smoke test on a busy machine) is 0 or 1 tick in user+sys.
func (c cpuTime) total() time.Duration {
	if c.run != 0 {
		return c.run
	}
	return c.user + c.sys
}

func (c cpuTime) sub(o cpuTime) cpuTime {
	return cpuTime{c.user - o.user, c.sys - o.sys, c.run - o.run}
}

// treeCPU returns utime+stime of pid and all its live descendants (nginx's master and
// worker), and the time their threads ran. A descendant or thread that exited during the
// run loses its share; none of the measured servers forks or ends threads while serving.
func treeCPU(pid int) (cpuTime, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return cpuTime{}, err
	}
	type st struct {
		ppid      int
		user, sys int64
	}
	procs := map[int]st{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, u, s, err := readStat(p)
		if err != nil {
			continue // exited meanwhile
		}
		procs[p] = st{ppid, u, s}
	}
	root, ok := procs[pid]
	if !ok {
		return cpuTime{}, fmt.Errorf("cannot read cpu time of pid %d: process is gone", pid)
	}
	ticksU, ticksS := root.user, root.sys
	run := threadsRun(pid)
	// Descendants: walk up each process's parents (the tree is shallow).
	for p, s := range procs {
		for q, hops := s.ppid, 0; q > 1 && hops < 8; hops++ {
			if q == pid && p != pid {
				ticksU += s.user
				ticksS += s.sys
				run += threadsRun(p)
				break
			}
			q = procs[q].ppid
		}
	}
	return cpuTime{time.Duration(ticksU) * clockTick, time.Duration(ticksS) * clockTick, run}, nil
}

// threadsRun returns how long pid's live threads have run on a CPU: the first field of
// /proc/PID/task/TID/schedstat, in nanoseconds; 0 where the kernel does not report it.
func threadsRun(pid int) time.Duration {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var run time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(dir + t.Name() + "/schedstat")
		if err != nil {
			continue // exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		if ns, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			run += time.Duration(ns)
		}
	}
	return run
}

// treePIDs returns pid and its live descendants.
func treePIDs(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{pid}
	}
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, _, err := readStat(p); err == nil {
			parent[p] = ppid
		}
	}
	out := []int{pid}
	for p := range parent {
		for q, hops := parent[p], 0; q > 1 && hops < 8; q, hops = parent[q], hops+1 {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// readStat returns ppid, utime and stime (in clock ticks) of pid from /proc/PID/stat.
func readStat(pid int) (ppid int, utime, stime int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name may hold spaces and parentheses: fields start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("cannot parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, 0, fmt.Errorf("cannot parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, _ = strconv.Atoi(f[1])
	utime, _ = strconv.ParseInt(f[11], 10, 64)
	stime, _ = strconv.ParseInt(f[12], 10, 64)
	return ppid, utime, stime, nil
}

// procs tracks every process the harness started, so that they are all killed — by PID —
// however the harness ends (normal exit, error, or SIGINT/SIGTERM).
type procs struct {
	mu   sync.Mutex
	list []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// start runs argv pinned to cpus (a taskset list; "" for no pinning) with env added to
// the harness's environment; stderr goes to logDir/name.log, and stdout too unless
// stdout names a file to append it to (os.DevNull discards it: an access log at 50k
// lines/s). The child gets its own process group and is sent SIGKILL if the harness dies
// (PR_SET_PDEATHSIG).
func (ps *procs) start(name, cpus string, env []string, logDir, stdout string, argv ...string) (*proc, error) {
	args := argv
	if cpus != "" {
		args = append([]string{"taskset", "-c", cpus}, argv...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	logPath := filepath.Join(logDir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	var of *os.File
	if stdout != "" {
		// O_APPEND: the file can be truncated between runs (target.truncateLog).
		if of, err = os.OpenFile(stdout, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
			lf.Close()
			return nil, err
		}
		cmd.Stdout = of
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	closeFiles := func() {
		lf.Close()
		if of != nil {
			of.Close()
		}
	}
	if err := cmd.Start(); err != nil {
		closeFiles()
		return nil, fmt.Errorf("cannot start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); closeFiles(); close(p.done) }()
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group of p (which p leads: Setpgid), then SIGKILL
// after a second.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	pgid := p.pid()
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // any worker left behind by a master
}

func (ps *procs) stopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].stop()
	}
}

// pinSelf moves every thread of the harness onto cpu; threads created later inherit it.
func pinSelf(cpu int) error { return pinPID("self", cpu) }

// pinPID moves every thread of process pid ("self" for the harness) onto cpus; threads
// created later inherit it.
func pinPID(pid string, cpus ...int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	tasks, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) { // ESRCH: the thread exited
			return fmt.Errorf("cannot pin process %s to cpus %v: %w", pid, cpus, err)
		}
	}
	return nil
}

// raiseFileLimit lifts the harness's open-file limit to the hard limit: the open loop
// holds a connection per request in flight.
func raiseFileLimit() {
	var l unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &l)
	}
}
