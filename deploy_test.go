package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"go-loadbalancer/internal/testtool"
)

// TestAlertRules: deploy/alerts.yaml is valid, and its promtool unit tests — each alert
// firing in the scenario it is for and quiet in the others, among them 5 of 35 tries
// failing while every client got 200 — pass.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := testtool.Need(t, "promtool", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "deploy"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// DEPLOYMENT.md names every alert of the file.
	rules, _ := os.ReadFile("deploy/alerts.yaml")
	doc, _ := os.ReadFile("DEPLOYMENT.md")
	for _, m := range regexp.MustCompile(`alert: (\w+)`).FindAllStringSubmatch(string(rules), -1) {
		if !strings.Contains(string(doc), "`"+m[1]+"`") {
			t.Errorf("DEPLOYMENT.md does not name the alert %s", m[1])
		}
	}
}

// TestDashboardAndAlertsUseExportedSeries: every metric a query of the Grafana dashboard
// or the alert rules names is in a scrape of a running go-loadbalancer.
func TestDashboardAndAlertsUseExportedSeries(t *testing.T) {
	t.Parallel()
	p, _ := startOne(t)
	httpGet(t, "http://"+p.addr+"/")
	resp, err := http.Get("http://" + p.adminAddr(t) + "/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	exported := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		exported[line[:strings.IndexAny(line, "{ ")]] = true
	}

	var queries []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && (k == "expr" || k == "definition") {
					queries = append(queries, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	b, err := os.ReadFile("deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("deploy/grafana-dashboard.json: %v", err)
	}
	walk(dash)
	rules, _ := os.ReadFile("deploy/alerts.yaml")
	for _, m := range regexp.MustCompile(`(?m)^\s+expr: \|?\s*\n?((?:.*\n)+?)\s+for:`).FindAllStringSubmatch(string(rules), -1) {
		queries = append(queries, m[1])
	}
	if len(queries) < 10 {
		t.Fatalf("found only %d queries; the test proves nothing", len(queries))
	}
	name := regexp.MustCompile(`\b(?:lb|go|process)_[a-z0-9_]+`)
	for _, q := range queries {
		for _, n := range name.FindAllString(q, -1) {
			if !exported[n] {
				t.Errorf("query %q uses %s, which a scrape does not have", q, n)
			}
		}
	}
}
