package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// pprofOverlay is compiled into a profiling build of go-loadbalancer with go build -overlay,
// so the repository's main package is profiled as it is, without a pprof endpoint in the
// product: it serves net/http/pprof on GOLB_BENCH_PPROF when that is set.
const pprofOverlay = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("GOLB_BENCH_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
`

// profileLB builds go-loadbalancer with the pprof overlay and profiles each of
// o.profileKinds in turn (profileOne).
func profileLB(ctx context.Context, o *options, e *env, rep *report, root string) error {
	o.progress("building go-loadbalancer with pprof (overlay) for -profile")
	src := filepath.Join(o.out, "zz_bench_pprof.go")
	if err := os.WriteFile(src, []byte(pprofOverlay), 0o644); err != nil {
		return err
	}
	ov, _ := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(root, "zz_bench_pprof.go"): src}})
	ovPath := filepath.Join(o.out, "overlay.json")
	if err := os.WriteFile(ovPath, ov, 0o644); err != nil {
		return err
	}
	bin := filepath.Join(o.out, "go-loadbalancer-pprof")
	if err := goBuild(ctx, root, bin, ovPath); err != nil {
		return err
	}
	for _, kind := range o.profileKinds {
		if err := profileOne(ctx, o, e, rep, bin, kind); err != nil {
			return err
		}
	}
	return nil
}

// profileOne starts the profiling build as kind, loads it with wrk -c50 and records a CPU
// profile over the middle of the run.
func profileOne(ctx context.Context, o *options, e *env, rep *report, bin, kind string) error {
	o.progress("profiling %s for %v", kind, o.profile)
	port, err := freePort()
	if err != nil {
		return err
	}
	pprofAddr := "127.0.0.1:" + strconv.Itoa(port)
	pe := *e
	pe.lbBin = bin
	pe.extraLBEnv = []string{"GOLB_BENCH_PPROF=" + pprofAddr}
	t, err := pe.startTarget(kind+"-pprof", kind)
	if err != nil {
		return err
	}
	defer t.proc.stop()
	defer t.truncateLog()

	const conns = 50
	// Warm up, then profile the middle of a run 2 s longer than the profile.
	if _, err := runWrk(ctx, t.load(o), conns, time.Second, t.url()); err != nil {
		return err
	}
	secs := max(1, int(o.profile/time.Second))
	type wrkOut struct {
		r   wrkResult
		err error
	}
	done := make(chan wrkOut, 1)
	cpu0, err := treeCPU(t.proc.pid())
	if err != nil {
		return err
	}
	go func() {
		r, err := runWrk(ctx, t.load(o), conns, time.Duration(secs+2)*time.Second, t.url())
		done <- wrkOut{r, err}
	}()
	time.Sleep(time.Second)
	file := filepath.Join(o.out, kind+"-cpu.pprof")
	perr := fetchProfile(ctx, "http://"+pprofAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), file, secs)
	w := <-done
	cpu1, _ := treeCPU(t.proc.pid())
	if w.err != nil {
		return w.err
	}
	if perr != nil {
		return perr
	}
	top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=35", bin, file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w: %s", err, top)
	}
	rep.profiles = append(rep.profiles, &profileResult{
		target: kind, conns: conns, duration: time.Duration(secs) * time.Second, rps: w.r.rps,
		cpu: cpu1.sub(cpu0), requests: w.r.requests, top: trimPprofHeader(string(top)), file: file,
	})
	return nil
}

func fetchProfile(ctx context.Context, url, file string, secs int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs+20)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot fetch the cpu profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("cannot fetch the cpu profile: status %d", resp.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// trimPprofHeader drops pprof's File/Build ID/Type lines, keeping Duration and the table.
func trimPprofHeader(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Build ID:") || strings.HasPrefix(line, "Type:") || strings.HasPrefix(line, "Time:") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}
