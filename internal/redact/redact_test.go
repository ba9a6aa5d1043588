package redact

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := URL(in); got != want {
			t.Fatalf("URL(%q) = %q; want %q", in, got, want)
		}
	}
	f("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0")
	f("redis://:hunter2@h:6379/0", "redis://xxxxx@h:6379/0")
	f("redis://u:hunter2@h:6379/0", "redis://xxxxx@h:6379/0")
	f("redis://u:hun@ter2@h:port/0", "redis://xxxxx@h:port/0") // does not parse: still hidden
	f("rediss://hunter2@h", "rediss://xxxxx@h")
	f("redis://h/0?x=a@b", "redis://h/0?x=a@b")
	f("not a url", "not a url")
}

func TestErr(t *testing.T) {
	_, err := url.Parse("redis://u:hunter2@h:port/0")
	if err == nil || !strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("url.Parse error %v: want it to quote the URL (the test's premise)", err)
	}
	if got := Err(err).Error(); strings.Contains(got, "hunter2") {
		t.Fatalf("Err: got %q; want no password", got)
	}
	plain := errors.New("x")
	if Err(plain) != plain {
		t.Fatal("Err changed an error that holds no URL")
	}
}

func TestTruncate(t *testing.T) {
	if got := Truncate("short", 10); got != "short" {
		t.Fatalf("got %q", got)
	}
	if got := Truncate(strings.Repeat("a", 3<<20), 8); got != "aaaaaaaa… (3145728 bytes)" {
		t.Fatalf("got %q", got)
	}
	if got := Truncate("ééé", 3); got != "é… (6 bytes)" {
		t.Fatalf("got %q; want the cut on a rune boundary", got)
	}
}
