package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go-loadbalancer/internal/redact"
	"go-loadbalancer/internal/reqpath"
)

// Validate checks c and returns every problem found, or nil. Errors carry the line of the
// offending key when c was parsed from a file; a problem with a value that came from an
// environment variable (see ApplyEnv) names that variable instead. Validate does not change
// c and may be called any number of times.
func (c *Config) Validate() Errors {
	v := &validator{c: c}
	v.listeners()
	v.tls("tls", c.TLS.CertFile, c.TLS.KeyFile)
	if c.TLS.ClientCAFile != "" && c.TLS.CertFile == "" {
		v.errorf("tls.client_ca_file", "client_ca_file needs cert_file and key_file (client certificates are verified only on a TLS listener)")
	}
	v.server()
	v.pools()
	v.routes()
	v.geo()
	v.sticky()
	v.redis()
	v.rateLimit()
	v.jwt()
	v.tracing()
	if !slices.Contains(logLevels, c.Log.Level) {
		v.errorf("log.level", "log level must be one of %s (got %q)", strings.Join(logLevels, ", "), c.Log.Level)
	}
	if q := c.Log.Query; q != QueryRedact && q != QueryFull && q != QueryOff && q != "" {
		v.errorf("log.query", "query must be %s, %s or %s (got %q)", QueryRedact, QueryFull, QueryOff, q)
	}
	if r := c.Log.Sample2xxRatio(); !(r >= 0 && r <= 1) {
		v.errorf("log.sample_2xx", "sample_2xx must be between 0 and 1 (got %v)", r)
	}
	return v.errs
}

var logLevels = []string{"trace", "debug", "info", "warn", "error"}

// jwtAlgorithms are the JWT signing algorithms auth.jwt.algorithms may name ("none" is
// never accepted).
var jwtAlgorithms = []string{
	"HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
	"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA",
}

type validator struct {
	c    *Config
	errs Errors
}

// errorf reports a problem with the value at path.
func (v *validator) errorf(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if name, ok := v.c.envFrom[path]; ok {
		v.errs = append(v.errs, envError(name, msg))
		return
	}
	v.errs = append(v.errs, Error{File: v.c.File, Line: v.c.src.line(path), Path: path, Msg: msg})
}

func (v *validator) positive(path string, d time.Duration) {
	if d <= 0 {
		v.errorf(path, "duration must be greater than 0 (got %s)", d)
	}
}

func (v *validator) atLeast(path string, n, lowest int) {
	if n < lowest {
		v.errorf(path, "must be at least %d (got %d)", lowest, n)
	}
}

func (v *validator) listeners() {
	c := v.c
	v.hostPort("listen", c.Listen)
	v.hostPort("admin.listen", c.Admin.Listen)
	if c.Listen == c.Admin.Listen && !strings.HasSuffix(c.Listen, ":0") {
		v.errorf("admin.listen", "admin.listen must differ from listen (both are %q)", c.Listen)
	}
	for i, h := range c.Admin.AllowedHosts {
		if h == "" || strings.ContainsAny(h, ":/ []@") {
			v.errorf(indexPath("admin.allowed_hosts", i), "%q is not a host name (no port, scheme or path)", h)
		}
	}
}

func (v *validator) hostPort(path, s string) {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		v.errorf(path, "%q is not host:port (for example \":8080\" or \"127.0.0.1:9901\")", s)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.errorf(path, "port %q of %q must be a number from 0 to 65535", port, s)
	}
}

// tls checks a certificate/key pair: both or neither.
func (v *validator) tls(path, cert, key string) {
	switch {
	case cert != "" && key == "":
		v.errorf(path+".key_file", "cert_file is set but key_file is not (set both or neither)")
	case cert == "" && key != "":
		v.errorf(path+".cert_file", "key_file is set but cert_file is not (set both or neither)")
	}
}

func (v *validator) server() {
	s := v.c.Server
	v.positive("server.read_timeout", s.ReadTimeout)
	v.positive("server.write_timeout", s.WriteTimeout)
	v.positive("server.idle_timeout", s.IdleTimeout)
	v.positive("server.shutdown_timeout", s.ShutdownTimeout)
	v.atLeast("server.max_header_bytes", s.MaxHeaderBytes, 1024)
	v.atLeast("server.max_headers", s.MaxHeaders, 1)
	if _, ok := reqpath.ParseEscaped(s.EscapedSlashes); !ok {
		v.errorf("server.escaped_slashes", "escaped_slashes must be reject, keep or unescape (got %q)", s.EscapedSlashes)
	}
	if s.DrainGrace < 0 || s.ShutdownTimeout > 0 && s.DrainGrace >= s.ShutdownTimeout {
		v.errorf("server.drain_grace", "must be at least 0 and less than server.shutdown_timeout (got %s; shutdown_timeout %s)", s.DrainGrace, s.ShutdownTimeout)
	}
	v.atLeast("server.max_conns", s.MaxConns, 0)
	v.atLeast("server.max_conns_per_ip", s.MaxConnsPerIP, 0)
	v.atLeast("server.max_tunnels", s.MaxTunnels, 0)
	if s.RequestBufferBytes < 0 {
		v.errorf("server.request_buffer_bytes", "must be at least 0 (got %d)", s.RequestBufferBytes)
	}
	if s.MinRequestBodyRate < 0 {
		v.errorf("server.min_request_body_rate", "must be at least 0 (got %d)", s.MinRequestBodyRate)
	}
	v.positive("server.request_body_grace", s.RequestBodyGrace)
	if s.MaxBodyBytes <= 0 {
		v.errorf("server.max_body_bytes", "must be greater than 0 (got %d)", s.MaxBodyBytes)
	}
	for i, p := range s.TrustedProxies {
		if _, err := parseNet(p); err != nil {
			v.errorf(indexPath("server.trusted_proxies", i), "%v", err)
		}
	}
}

// TrustedNets returns the trusted proxies as prefixes; a single IP becomes a /32 or /128.
// Entries that do not parse are skipped (Validate reports them).
func (s Server) TrustedNets() []netip.Prefix {
	nets := make([]netip.Prefix, 0, len(s.TrustedProxies))
	for _, p := range s.TrustedProxies {
		if n, err := parseNet(p); err == nil {
			nets = append(nets, n)
		}
	}
	return nets
}

// parseNet parses a CIDR ("10.0.0.0/8") or an IP ("10.1.2.3", "::1").
func parseNet(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a valid CIDR", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not a valid IP address or CIDR", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

var poolNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func (v *validator) pools() {
	if len(v.c.Pools) == 0 {
		v.errorf("pools", "no pools configured")
		return
	}
	names := map[string]int{}
	for i, p := range v.c.Pools {
		path := indexPath("pools", i)
		if !poolNameRE.MatchString(p.Name) {
			v.errorf(path+".name", "pool name %q may hold only letters, digits, '_', '.' and '-'", p.Name)
		} else if j, dup := names[p.Name]; dup {
			v.errorf(path+".name", "duplicate pool name %q (also pools[%d])", p.Name, j)
		} else {
			names[p.Name] = i
		}
		v.pool(path, p)
	}
}

func (v *validator) pool(path string, p Pool) {
	at := func(key string) string { return joinPath(path, key) }
	if p.Balance != BalanceSmoothWeighted && p.Balance != BalanceLeastInflight {
		v.errorf(at("balance"), "balance must be %s or %s (got %q)", BalanceSmoothWeighted, BalanceLeastInflight, p.Balance)
	}
	if len(p.Backends) == 0 && p.Discovery.Consul.Service == "" {
		v.errorf(at("backends"), "pool %q has no backends (list them as backends: [{url: ...}])", p.Name)
	}
	// Only once the environment is applied (ApplyEnv leaves envFrom non-nil): Parse
	// validates the file alone, and CONSUL_ENABLED is not in the file.
	if p.Discovery.Consul.Service != "" && !v.c.Env.ConsulEnabled && v.c.envFrom != nil {
		v.errorf(at("discovery.consul.service"), "Consul discovery needs CONSUL_ENABLED=true (and CONSUL_ADDR unless Consul is at 127.0.0.1:8500)")
	}
	seen := map[string]string{} // address -> path of the first backend with it
	for i, b := range p.Backends {
		v.backend(indexPath(at("backends"), i), b, seen)
	}
	for i, b := range p.Standby {
		v.backend(indexPath(at("standby"), i), b, seen)
	}

	hc := p.HealthCheck
	if !strings.HasPrefix(hc.Path, "/") {
		v.errorf(at("health_check.path"), "path must start with / (got %q)", hc.Path)
	}
	v.positive(at("health_check.interval"), hc.Interval)
	v.positive(at("health_check.timeout"), hc.Timeout)
	if hc.Timeout > 0 && hc.Interval > 0 && hc.Timeout >= hc.Interval {
		v.errorf(at("health_check.timeout"), "timeout (%s) must be shorter than interval (%s)", hc.Timeout, hc.Interval)
	}
	v.atLeast(at("health_check.rise"), hc.Rise, 1)
	v.atLeast(at("health_check.fall"), hc.Fall, 1)
	if _, err := ParseStatusRanges(hc.ExpectStatus); err != nil {
		v.errorf(at("health_check.expect_status"), "%v", err)
	}

	cb := p.CircuitBreaker
	v.atLeast(at("circuit_breaker.consecutive_failures"), cb.ConsecutiveFailures, 1)
	if r := cb.FailureRatio; !(r > 0 && r <= 1) {
		v.errorf(at("circuit_breaker.failure_ratio"), "failure_ratio must be greater than 0 and at most 1 (got %v)", r)
	}
	v.atLeast(at("circuit_breaker.min_requests"), cb.MinRequests, 1)
	v.positive(at("circuit_breaker.window"), cb.Window)
	v.positive(at("circuit_breaker.open_for"), cb.OpenFor)
	v.atLeast(at("circuit_breaker.half_open_probes"), cb.HalfOpenProbes, 1)
	if e := cb.MaxEjectionPercent; e < 0 || e > 100 {
		v.errorf(at("circuit_breaker.max_ejection_percent"), "max_ejection_percent must be between 0 and 100 (got %d)", e)
	}

	r := p.Retry
	if r.Attempts < 0 || r.Attempts > 10 {
		v.errorf(at("retry.attempts"), "attempts must be between 0 and 10 (got %d)", r.Attempts)
	}
	for i, on := range r.On {
		if !validRetryOn(on) {
			v.errorf(indexPath(at("retry.on"), i), "unknown retry condition %q (use connect, timeout, reset, 5xx or a 5xx status code such as \"503\")", on)
		}
	}
	if b := r.BudgetRatio; !(b >= 0 && b <= 1) {
		v.errorf(at("retry.budget_ratio"), "budget_ratio must be between 0 and 1 (got %v)", b)
	}

	v.positive(at("timeouts.connect"), p.Timeouts.Connect)
	v.positive(at("timeouts.response"), p.Timeouts.Response)
	v.positive(at("timeouts.tunnel_idle"), p.Timeouts.TunnelIdle)
	v.atLeast(at("max_conns_per_backend"), p.MaxConnsPerBackend, 1)
	v.tls(at("upstream_tls"), p.UpstreamTLS.CertFile, p.UpstreamTLS.KeyFile)
	if sc := p.Discovery.Consul.Scheme; sc != "http" && sc != "https" {
		v.errorf(at("discovery.consul.scheme"), "scheme must be http or https (got %q)", sc)
	}
	v.mtlsNeedsTLS(path, p)

	as := p.Autoscale
	v.atLeast(at("autoscale.target_inflight_per_backend"), as.TargetInflightPerBackend, 0)
	v.atLeast(at("autoscale.min_active"), as.MinActive, 1)
	v.positive(at("autoscale.cooldown"), as.Cooldown)
}

// mtlsNeedsTLS reports every plain-http backend of a pool that has a client certificate
// (upstream_tls.cert_file, or MTLS_ENABLED): the certificate is only ever sent over TLS,
// so such a backend would get the traffic in plain text, silently.
func (v *validator) mtlsNeedsTLS(path string, p Pool) {
	if p.UpstreamTLS.CertFile == "" || p.UpstreamTLS.KeyFile == "" {
		return // no client certificate (half a pair is reported by tls)
	}
	source := "upstream_tls.cert_file is set"
	if name, ok := v.c.envFrom[joinPath(path, "upstream_tls.cert_file")]; ok {
		source = name + " sets a client certificate (MTLS_ENABLED=true)"
	}
	plain := func(list string, bs []Backend) {
		for i, b := range bs {
			if u, err := url.Parse(b.URL); err == nil && strings.EqualFold(u.Scheme, "http") {
				v.errorf(indexPath(joinPath(path, list), i)+".url", "pool %q: %s, but backend %q is plain http:// and would get the traffic unencrypted; use https://", p.Name, source, b.URL)
			}
		}
	}
	plain("backends", p.Backends)
	plain("standby", p.Standby)
	if p.Discovery.Consul.Service != "" && p.Discovery.Consul.Scheme == "http" {
		v.errorf(joinPath(path, "discovery.consul.scheme"), "pool %q: %s, but its Consul backends are reached over plain http; set discovery.consul.scheme: https", p.Name, source)
	}
}

func (v *validator) backend(path string, b Backend, seen map[string]string) {
	if b.Weight < 1 || b.Weight > 10000 {
		v.errorf(path+".weight", "weight must be between 1 and 10000")
	}
	urlPath := path + ".url"
	if b.URL == "" {
		v.errorf(urlPath, "url is required (for example url: \"http://10.0.0.1:8080\")")
		return
	}
	if err := checkBackendURL(b.URL); err != nil {
		v.errorf(urlPath, "%v", err)
		return
	}
	addr, tls := b.Addr()
	key := addr
	if tls {
		key = "https://" + addr
	}
	if first, dup := seen[key]; dup {
		v.errorf(urlPath, "duplicate backend %q (same address as %s)", b.URL, first)
		return
	}
	seen[key] = path[strings.LastIndexByte(path, '.')+1:]
}

// checkBackendURL accepts "http://host[:port][/]" and "https://host[:port][/]".
func checkBackendURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("invalid url %q: %v", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("url %q: scheme must be http or https", s)
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("url %q has no host", s)
	case u.User != nil:
		return fmt.Errorf("url %q must not contain a user name or password", s)
	case u.Path != "" && u.Path != "/":
		return fmt.Errorf("url %q must not have a path (got %q)", s, u.Path)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("url %q must not have a query", s)
	case u.Fragment != "":
		return fmt.Errorf("url %q must not have a fragment", s)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("url %q: port must be from 1 to 65535", s)
		}
	}
	return nil
}

// Addr returns the backend's "host:port", with the scheme's default port (80 or 443) when
// the URL has none, and whether it is reached over TLS (https). It returns "" for a URL
// that does not parse; Validate rejects those.
func (b Backend) Addr() (addr string, tls bool) {
	u, err := url.Parse(b.URL)
	if err != nil || u.Hostname() == "" {
		return "", false
	}
	tls = u.Scheme == "https"
	port := u.Port()
	if port == "" {
		port = "80"
		if tls {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port), tls
}

func validRetryOn(s string) bool {
	switch s {
	case "connect", "timeout", "reset", "5xx":
		return true
	}
	if len(s) != 3 || s[0] != '5' {
		return false
	}
	return s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9'
}

// ParseStatusRanges parses a comma-separated list of HTTP status codes and inclusive
// ranges, such as "200-399" or "200,204,300-308", into [low, high] pairs. Codes are 100-599.
func ParseStatusRanges(s string) ([][2]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New(`empty status list (use codes or ranges such as "200-399")`)
	}
	var ranges [][2]int
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := statusCode(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = statusCode(hi); err != nil {
				return nil, err
			}
		}
		if a > b {
			return nil, fmt.Errorf("status range %q is backwards", part)
		}
		ranges = append(ranges, [2]int{a, b})
	}
	return ranges, nil
}

func statusCode(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil || len(s) != 3 || n < 100 || n > 599 {
		return 0, fmt.Errorf("%q is not an HTTP status code 100-599 (use codes or ranges such as \"200-399\")", s)
	}
	return n, nil
}

func (v *validator) routes() {
	pools := map[string]bool{}
	for _, p := range v.c.Pools {
		pools[p.Name] = true
	}
	for i, r := range v.c.Routes {
		path := indexPath("routes", i)
		if (r.Pool != "") == (len(r.Split) > 0) {
			v.errorf(path, "a route needs exactly one of pool or split")
		}
		if r.Pool != "" && !pools[r.Pool] {
			v.errorf(path+".pool", "unknown pool %q", r.Pool)
		}
		for j, s := range r.Split {
			sp := indexPath(path+".split", j)
			if !pools[s.Pool] {
				v.errorf(sp+".pool", "unknown pool %q", s.Pool)
			}
			v.atLeast(sp+".weight", s.Weight, 1)
		}
		if pp := r.Match.PathPrefix; pp != "" {
			v.canonicalPath(path+".match.path_prefix", pp)
		}
	}
}

// canonicalPath checks a path prefix that requests are matched against: it must be a
// canonical path (docs/behaviour.md#request-processing), or no request could ever match it.
func (v *validator) canonicalPath(path, p string) {
	if !strings.HasPrefix(p, "/") {
		v.errorf(path, "must start with / (got %q)", p)
		return
	}
	c, err := reqpath.Canonical(nil, []byte(p), reqpath.EscapedKeep)
	switch {
	case err != nil:
		v.errorf(path, "%q is not a valid path: %v", p, err)
	case string(c) != p:
		v.errorf(path, "%q is not in canonical form; requests are matched as %q", p, c)
	}
}

func (v *validator) geo() {
	for _, region := range slices.Sorted(maps.Keys(v.c.Geo.CIDRs)) {
		for i, s := range v.c.Geo.CIDRs[region] {
			if _, err := parseNet(s); err != nil {
				v.errorf(indexPath("geo.cidrs."+region, i), "%v", err)
			}
		}
	}
}

func (v *validator) sticky() {
	s := v.c.Sticky
	if !isToken(s.Cookie) {
		v.errorf("sticky.cookie", "cookie name %q is not a valid cookie name (RFC 6265 token)", s.Cookie)
	}
	if s.Header != "" && !isToken(s.Header) {
		v.errorf("sticky.header", "header %q is not a valid header name", s.Header)
	}
	v.positive("sticky.ttl", s.TTL)
	v.atLeast("sticky.new_header_sessions_per_second", s.NewHeaderSessionsPerSecond, 1)
}

// isToken reports whether s is an HTTP token (RFC 7230), the syntax of header and cookie
// names.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

func (v *validator) redis() {
	r := v.c.Redis
	u, err := url.Parse(r.URL)
	switch {
	// The URL may hold a password: it is printed redacted.
	case err != nil:
		v.errorf("redis.url", "invalid url %q: %v", redact.URL(r.URL), redact.Err(err))
	case u.Scheme != "redis" && u.Scheme != "rediss":
		v.errorf("redis.url", "url %q: scheme must be redis or rediss", redact.URL(r.URL))
	case u.Host == "":
		v.errorf("redis.url", "url %q has no host", redact.URL(r.URL))
	}
	v.positive("redis.client_cache_ttl", r.ClientCacheTTL)
}

func (v *validator) rateLimit() {
	rl := v.c.RateLimit
	kind, name, hasName := strings.Cut(rl.Key, ":")
	switch {
	case rl.Key == "ip":
	case kind == "header" && hasName && isToken(name):
	case kind == "claim" && hasName && name != "":
	default:
		v.errorf("rate_limit.key", "key must be ip, header:NAME or claim:NAME (got %q)", rl.Key)
	}
	if rl.Scope != "local" && rl.Scope != "redis" {
		v.errorf("rate_limit.scope", "scope must be local or redis (got %q)", rl.Scope)
	}
	if !(rl.Rate > 0) || math.IsInf(rl.Rate, 0) {
		v.errorf("rate_limit.rate", "rate must be greater than 0 (got %v)", rl.Rate)
	}
	v.atLeast("rate_limit.burst", rl.Burst, 1)
}

func (v *validator) jwt() {
	j := v.c.Auth.JWT
	if j.Enabled && len(j.Algorithms) == 0 {
		v.errorf("auth.jwt.algorithms", "list at least one algorithm (allowed: %s)", strings.Join(jwtAlgorithms, ", "))
	}
	hmac, public := false, false
	for i, alg := range j.Algorithms {
		if !slices.Contains(jwtAlgorithms, alg) {
			v.errorf(indexPath("auth.jwt.algorithms", i), "algorithm %q is not allowed (allowed: %s)", alg, strings.Join(jwtAlgorithms, ", "))
		}
		if strings.HasPrefix(alg, "HS") {
			hmac = true
		} else {
			public = true
		}
	}
	for i, p := range j.SkipPaths {
		v.canonicalPath(indexPath("auth.jwt.skip_paths", i), p)
	}
	if !j.Enabled {
		return
	}
	if hmac && j.HMACSecretFile == "" {
		v.errorf("auth.jwt.algorithms", "HMAC algorithms need auth.jwt.hmac_secret_file")
	}
	if public && j.JWKSFile == "" && j.JWKSURL == "" {
		v.errorf("auth.jwt.algorithms", "%s need auth.jwt.jwks_file or jwks_url", "public-key algorithms")
	}
	if u := j.JWKSURL; u != "" && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
		v.errorf("auth.jwt.jwks_url", "jwks_url must be an http(s) URL (got %q)", u)
	}
}

// tracing checks the tracing section; otlp_endpoint is checked whenever it is set.
func (v *validator) tracing() {
	t := v.c.Tracing
	if r := t.SampleRatio; !(r >= 0 && r <= 1) {
		v.errorf("tracing.sample_ratio", "sample_ratio must be between 0 and 1 (got %v)", r)
	}
	if t.OTLPEndpoint != "" {
		u, err := url.Parse(t.OTLPEndpoint)
		switch {
		case err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Hostname() == "":
			v.errorf("tracing.otlp_endpoint", "otlp_endpoint must be an OTLP/HTTP collector URL such as http://127.0.0.1:4318 (got %q)", t.OTLPEndpoint)
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			v.errorf("tracing.otlp_endpoint", "otlp_endpoint must not have a query, fragment or user (got %q)", t.OTLPEndpoint)
		}
	}
	if !t.Enabled {
		return
	}
	if t.OTLPEndpoint == "" {
		v.errorf("tracing.enabled", "tracing needs tracing.otlp_endpoint, an OTLP/HTTP collector such as http://127.0.0.1:4318")
	}
	if t.ServiceName == "" {
		v.errorf("tracing.service_name", "service_name must not be empty")
	}
}
