// Package testotel runs a real OpenTelemetry Collector for tests: one process per test with
// the OTLP receiver (HTTP and gRPC) on random loopback ports and a file exporter writing
// every span it receives into the test's temp dir, killed when the test ends.
//
// The collector is the one scripts/install-deps.sh builds with the official builder
// (v0.165.0). When it is not built the test is skipped — except under CI=true, where it
// fails. Every method must be called from the test's goroutine.
package testotel

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"go-loadbalancer/internal/logbuf"
	"go-loadbalancer/internal/otlptest"
	"go-loadbalancer/internal/testtool"
)

// Version is the collector release the tests run; see scripts/install-deps.sh.
const Version = "0.165.0"

// Collector is a running collector.
type Collector struct {
	t         testing.TB
	httpPort  int
	grpcPort  int
	spansFile string
	cmd       *exec.Cmd
	out       *logbuf.Buffer
}

// Start runs a collector until the test ends and waits (up to 30 s) until its OTLP/HTTP
// receiver accepts connections.
func Start(t testing.TB) *Collector {
	t.Helper()
	bin := testtool.Built(t, "otelcol-"+Version+"/otelcol-golb", "otelcol")
	dir := t.TempDir()
	c := &Collector{t: t, httpPort: testtool.ServicePort(t), grpcPort: testtool.ServicePort(t), spansFile: filepath.Join(dir, "spans.pb"),
		out: &logbuf.Buffer{}}
	// format proto: each export is one ExportTraceServiceRequest-compatible TracesData,
	// preceded by its length (4 bytes, big endian). Internal metrics are off, so that the
	// collector opens no fixed port (8888).
	cfg := `receivers:
  otlp:
    protocols:
      http: { endpoint: "127.0.0.1:` + strconv.Itoa(c.httpPort) + `" }
      grpc: { endpoint: "127.0.0.1:` + strconv.Itoa(c.grpcPort) + `" }
exporters:
  file:
    path: "` + c.spansFile + `"
    format: proto
    flush_interval: 20ms
service:
  telemetry:
    metrics: { level: none }
    logs: { level: warn }
  pipelines:
    traces: { receivers: [otlp], exporters: [file] }
`
	cfgFile := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(bin, "--config=file:"+cfgFile)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("cannot start the collector: %v", err)
	}
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(c.httpPort), 100*time.Millisecond)
		if err == nil {
			conn.Close()
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector did not come up: %v\n%s", err, c.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// HTTPEndpoint is the OTLP/HTTP receiver's base URL, the form of tracing.otlp_endpoint.
func (c *Collector) HTTPEndpoint() string { return "http://127.0.0.1:" + strconv.Itoa(c.httpPort) }

// GRPCAddr is the OTLP/gRPC receiver's "127.0.0.1:<port>".
func (c *Collector) GRPCAddr() string { return "127.0.0.1:" + strconv.Itoa(c.grpcPort) }

// Spans returns the spans the collector has written to its file so far.
func (c *Collector) Spans() []otlptest.Span {
	c.t.Helper()
	raw, err := os.ReadFile(c.spansFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		c.t.Fatal(err)
	}
	var spans []otlptest.Span
	for len(raw) >= 4 {
		n := int(binary.BigEndian.Uint32(raw))
		if len(raw) < 4+n {
			break // a record still being written
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(raw[4:4+n], &req); err != nil {
			c.t.Fatalf("collector file %s: %v", c.spansFile, err)
		}
		spans = append(spans, otlptest.Flatten(&req)...)
		raw = raw[4+n:]
	}
	return spans
}

// WaitSpans waits (up to d) until at least n spans have been written, and returns them.
func (c *Collector) WaitSpans(n int, d time.Duration) []otlptest.Span {
	c.t.Helper()
	var spans []otlptest.Span
	testtool.WaitFor(c.t, d, strconv.Itoa(n)+" spans in the collector's file", func() bool {
		spans = c.Spans()
		return len(spans) >= n
	})
	return spans
}

// Log returns what the collector printed (warnings and errors).
func (c *Collector) Log() string { return strings.TrimSpace(c.out.String()) }
