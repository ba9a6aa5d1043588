package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go-loadbalancer/internal/testtool"
)

// TestPromtoolChecksExposition runs `promtool check metrics` on a live /prometheus with
// traffic, drained and weighted backends: valid and no lint warning.
func TestPromtoolChecksExposition(t *testing.T) {
	t.Parallel()
	promtool := needTool(t, "promtool", "prometheus")
	l := startLB(t, 3, lbOptions{token: "t"})
	l.get(t, "/", 30)
	do(t, "POST", l.admin+"/api/backends/"+l.backendID(2)+"/drain", "t", "")
	_, _, text := do(t, "GET", l.admin+"/prometheus", "", "")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestPrometheusScrapes starts a real Prometheus server (loopback, temp storage, 1 s
// scrape interval) on /prometheus and asks its query API for lb_requests_total.
func TestPrometheusScrapes(t *testing.T) {
	t.Parallel()
	bin := needTool(t, "prometheus", "prometheus")
	l := startLB(t, 3, lbOptions{})
	l.get(t, "/", 30)

	dir := t.TempDir()
	target := strings.TrimPrefix(l.admin, "http://")
	cfg := "global: { scrape_interval: 1s, evaluation_interval: 1s }\n" +
		"scrape_configs:\n  - job_name: lb\n    metrics_path: /prometheus\n    static_configs: [ { targets: [\"" + target + "\"] } ]\n"
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testtool.ServicePort(t))
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	want := map[string]bool{}
	for i := range l.backends {
		want[l.backendID(i)] = true
	}
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[string]bool{}
		resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(`lb_requests_total{job="lb"}`))
		if err == nil {
			var r struct {
				Status string `json:"status"`
				Data   struct {
					Result []struct {
						Metric map[string]string `json:"metric"`
						Value  []any             `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			for _, s := range r.Data.Result {
				if s.Metric["pool"] == "web" && s.Metric["code"] == "200" && len(s.Value) == 2 && s.Value[1] != "0" {
					got[s.Metric["backend"]] = true
				}
			}
			b, _ := json.Marshal(r)
			last = string(b)
		} else {
			last = err.Error()
		}
		missing := 0
		for id := range want {
			if !got[id] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus has no lb_requests_total for %d of %d backends after 60 s; last answer: %s\nprometheus log:\n%s", missing, len(want), last, logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}
