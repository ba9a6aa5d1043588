package admin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"go-loadbalancer/internal/testtool"
	"go-loadbalancer/state"
)

// TestDashboardInChromium loads the dashboard in headless Chromium: no console error,
// one row per backend, a drain made through the API shows within 3 s, the page's own
// Enable button (token from sessionStorage) undoes it. The screenshot is saved in the
// test's temp dir.
func TestDashboardInChromium(t *testing.T) {
	t.Parallel()
	chromium := needTool(t, "chromium", "chromium")
	l := startLB(t, 3, lbOptions{token: "t"})
	l.get(t, "/", 60)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1600, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()

	var mu sync.Mutex
	var problems []string
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				problems = append(problems, fmt.Sprintf("console.%s: %d args", ev.Type, len(ev.Args)))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, fmt.Sprintf("exception: %+v", ev.ExceptionDetails))
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				problems = append(problems, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		}
	}
	if err := chromedp.Listen(ctx, listen); err != nil {
		t.Fatalf("cannot start Chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, runtime.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(l.admin+"/")); err != nil {
		t.Fatalf("cannot load the dashboard: %v", err)
	}
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return v
	}
	poll := func(d time.Duration, what, js, want string) {
		t.Helper()
		deadline := time.Now().Add(d)
		var got string
		for {
			got = eval(js)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("timed out after %v waiting for %s: got %q; want %q; page problems: %v; status %q", d, what, got, want,
					problems, eval(`document.getElementById("live").textContent`))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	poll(10*time.Second, "one row per backend", `String(document.querySelectorAll("#backends tbody tr.backend").length)`, "3")
	id := l.backendID(1)
	row := `document.querySelector('tr[data-id="` + id + `"]')`
	poll(5*time.Second, "the breaker column", row+`.querySelector(".breaker").textContent`, "closed")
	poll(5*time.Second, "traffic in the pool card", `String(document.querySelector(".pool .num").textContent)`, "3 / 3")
	poll(5*time.Second, "a p99 latency", `String(/^[0-9.]+$/.test(`+row+`.querySelector(".p99").textContent))`, "true")

	code, _, body := do(t, "POST", l.admin+"/api/backends/"+id+"/drain", "t", "")
	if code != 200 {
		t.Fatalf("drain: got %d %s", code, body)
	}
	poll(3*time.Second, "the drain on the page", row+`.querySelector(".state").textContent`, "drained")
	poll(time.Second, "the Enable button", row+`.querySelector("button.toggle").textContent`, "Enable")

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if dir := os.Getenv("DASHBOARD_SCREENSHOT_DIR"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "dashboard.png"), png, 0o644)
	}

	// The page's own button, with the token kept in sessionStorage, enables it again.
	eval(`sessionStorage.setItem("lbToken", "t"); "ok"`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`tr[data-id="`+id+`"] button.toggle`))); err != nil {
		t.Fatal(err)
	}
	testtool.WaitFor(t, 3*time.Second, "the Enable button to take effect", func() bool { return !l.builder.Store.Load().Backend(id).Drained })
	poll(3*time.Second, "the enable on the page", row+`.querySelector(".state").textContent`, "up")

	// A breaker that went open, half-open and closed again within a moment shows as open
	// (dashed, "now closed") for 10 s, its strip holds all three states, and the backend's
	// full id is in the page at this width.
	be := l.builder.Store.Load().Pools[0].Backends[2]
	l.reg.BreakerChanged(be, state.BreakerClosed, state.BreakerOpen, "test")
	l.reg.BreakerChanged(be, state.BreakerOpen, state.BreakerHalfOpen, "test")
	l.reg.BreakerChanged(be, state.BreakerHalfOpen, state.BreakerClosed, "test")
	row2 := `document.querySelector('tr[data-id="` + be.ID + `"]')`
	poll(3*time.Second, "the recent open breaker", row2+`.querySelector(".breaker").textContent + "/" + `+row2+`.querySelector(".breaker").classList.contains("recent")`, "open/true")
	poll(time.Second, "what it is now", row2+`.querySelector(".breaker").parentNode.querySelector(".sub").textContent`, "now closed")
	poll(time.Second, "the breaker strip", row2+`.querySelector("svg.btl").dataset.states`, "closed open half_open closed")
	poll(time.Second, "the full id", `(() => { const d = `+row2+`.querySelector("td.id div"); return d.textContent + "/" + (d.scrollWidth <= d.clientWidth) + "/" + d.title })()`,
		be.ID+"/true/"+be.ID)
	if dir := os.Getenv("DASHBOARD_SCREENSHOT_DIR"); dir != "" {
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "dashboard-breaker.png"), png, 0o644)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Fatalf("the dashboard logged %d problems:\n%s", len(problems), strings.Join(problems, "\n"))
	}
}
