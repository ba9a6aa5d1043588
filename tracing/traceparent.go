package tracing

import "go.opentelemetry.io/otel/trace"

// parseTraceparent parses a W3C traceparent header value
// (https://www.w3.org/TR/trace-context/#traceparent-header): version "-" trace-id "-"
// parent-id "-" trace-flags, lower-case hex. A version other than 00 (but not ff) is read
// as 00, ignoring fields after the flags, as the specification asks. ok is false for a
// malformed value or an all-zero id. It does not allocate.
func parseTraceparent(tp []byte) (tid trace.TraceID, sid trace.SpanID, flags byte, ok bool) {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return tid, sid, 0, false
	}
	ver, vok := hexByte(tp[0], tp[1])
	switch {
	case !vok || ver == 0xff:
		return tid, sid, 0, false
	case ver == 0 && len(tp) != 55:
		return tid, sid, 0, false
	case ver > 0 && len(tp) > 55 && tp[55] != '-':
		return tid, sid, 0, false
	}
	if !decodeHex(tid[:], tp[3:35]) || !decodeHex(sid[:], tp[36:52]) {
		return tid, sid, 0, false
	}
	flags, fok := hexByte(tp[53], tp[54])
	if !fok || !tid.IsValid() || !sid.IsValid() {
		return tid, sid, 0, false
	}
	return tid, sid, flags, true
}

func decodeHex(dst, src []byte) bool {
	for i := range dst {
		b, ok := hexByte(src[2*i], src[2*i+1])
		if !ok {
			return false
		}
		dst[i] = b
	}
	return true
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := unhex(hi)
	l, ok2 := unhex(lo)
	return h<<4 | l, ok1 && ok2
}

// unhex accepts lower-case hex digits only (upper case is invalid in a traceparent).
func unhex(c byte) (byte, bool) {
	v := hexValue[c]
	return v, v != 0xff
}

// hexValue maps a lower-case hex digit to its value and every other byte to 0xff: a table
// lookup is several times faster than a switch over the 48 digits of a traceparent.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()

// appendTraceparent appends the version-00 traceparent of sc to dst.
func appendTraceparent(dst []byte, sc trace.SpanContext) []byte {
	const digits = "0123456789abcdef"
	tid, sid := sc.TraceID(), sc.SpanID()
	dst = append(dst, "00-"...)
	for _, b := range tid {
		dst = append(dst, digits[b>>4], digits[b&15])
	}
	dst = append(dst, '-')
	for _, b := range sid {
		dst = append(dst, digits[b>>4], digits[b&15])
	}
	f := byte(sc.TraceFlags())
	return append(dst, '-', digits[f>>4], digits[f&15])
}
