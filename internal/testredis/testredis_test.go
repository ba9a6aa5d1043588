package testredis

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestParseCalls(t *testing.T) {
	f := func(info, cmd string, want int) {
		t.Helper()
		got, err := parseCalls(info, cmd)
		if err != nil {
			t.Fatalf("parseCalls(%q): %v", cmd, err)
		}
		if got != want {
			t.Fatalf("parseCalls(%q): got %d; want %d", cmd, got, want)
		}
	}
	info := "# Commandstats\r\ncmdstat_get:calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_getex:calls=7,usec=1\r\ncmdstat_set:calls=3,usec=9\r\n"
	f(info, "get", 12)
	f(info, "getex", 7)
	f(info, "set", 3)
	f(info, "del", 0)
	f("", "get", 0)
	if _, err := parseCalls("cmdstat_get:calls=x,usec=1", "get"); err == nil {
		t.Fatalf("parseCalls of a bad line: got nil error; want one")
	}
}

// TestKillAndRestartOnSamePort checks the life cycle the outage tests rely on: a killed
// server refuses connections, and Start brings it back on the same port, empty.
func TestKillAndRestartOnSamePort(t *testing.T) {
	s := Start(t)
	c := s.Client()
	ctx := context.Background()
	if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if v, ok := s.Get("k"); !ok || v != "v" {
		t.Fatalf("GET k: got %q, %v; want \"v\", true", v, ok)
	}
	if got := s.Calls("get"); got != 1 {
		t.Fatalf("Calls(get): got %d; want 1", got)
	}
	port := s.Port()
	s.Kill()
	if s.Running() {
		t.Fatalf("Running after Kill: got true; want false")
	}
	if conn, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatalf("dial %s after Kill: got a connection; want refused", s.Addr())
	}
	s.Kill() // a no-op
	s.Start()
	if s.Port() != port {
		t.Fatalf("port after restart: got %d; want %d", s.Port(), port)
	}
	// The shared client reconnects by itself; poll, since its first command may still see
	// the broken connection.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := c.Do(ctx, c.B().Ping().Build()).Error()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PING after restart: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := s.Get("k"); ok {
		t.Fatalf("GET k after restart: found; want an empty server (no persistence)")
	}
	if got := s.Calls("get"); got != 1 {
		t.Fatalf("Calls(get) after restart: got %d; want 1 (counts restart with the server)", got)
	}
}
