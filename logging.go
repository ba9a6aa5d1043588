package main

import (
	"io"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// newLogger returns the process's logger; its level is zerolog's global level, which
// setLogLevel changes (at start and on reload, log.level).
func newLogger(w io.Writer, level string) zerolog.Logger {
	setLogLevel(level)
	// RFC 3339 in UTC with milliseconds, as the access log writes it; durations are
	// logged in ms under names that say so (timeout_ms).
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	zerolog.TimestampFunc = func() time.Time { return time.Now().UTC() }
	return zerolog.New(w).Level(zerolog.TraceLevel).With().Timestamp().Logger()
}

func setLogLevel(level string) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	zerolog.SetGlobalLevel(lvl)
}

// logWriter is stdout or stderr as a log sink: it counts failed writes (a closed pipe, a
// full disk) and reports the first on report, since a log that fails must not fail
// silently — nor end the process. Safe for concurrent use if w is.
type logWriter struct {
	w      io.Writer
	name   string
	errors *atomic.Uint64 // shared by the process's log writers: lb_log_write_errors_total
	report zerolog.Logger
	told   atomic.Bool
}

func (l *logWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if err != nil {
		l.errors.Add(1)
		if l.told.CompareAndSwap(false, true) {
			l.report.Error().Err(err).Str("output", l.name).
				Msg("cannot write the log; lines are lost, further failures are only counted (lb_log_write_errors_total)")
		}
	}
	return n, err
}

// logOutputs are the process's stdout (access log) and stderr (everything else).
type logOutputs struct {
	stdout, stderr *logWriter
	errors         atomic.Uint64
}

func newLogOutputs(stdout, stderr io.Writer) *logOutputs {
	o := &logOutputs{}
	report := zerolog.New(stderr).With().Timestamp().Logger()
	o.stdout = &logWriter{w: stdout, name: "stdout", errors: &o.errors, report: report}
	o.stderr = &logWriter{w: stderr, name: "stderr", errors: &o.errors, report: report}
	// A failed write is counted above; zerolog's default would print to stderr each time.
	zerolog.ErrorHandler = func(error) {}
	return o
}
