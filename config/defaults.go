package config

import (
	"strconv"
	"time"
)

// Default returns a configuration holding every default (docs/config.md) and no pools. It
// does not validate on its own (a config needs a pool); add pools and call ApplyDefaults.
func Default() *Config {
	c := &Config{}
	c.ApplyDefaults()
	return c
}

// Demo returns the -demo configuration: the defaults and one pool "demo" with
// the three in-process backends on 127.0.0.1:8081, :8082 and :8083 weighted 3:2:1.
func Demo() *Config {
	c := &Config{
		Pools: []Pool{{
			Name: "demo",
			Backends: []Backend{
				{URL: "http://127.0.0.1:8081", Weight: 3, Region: "eu"},
				{URL: "http://127.0.0.1:8082", Weight: 2, Region: "us"},
				{URL: "http://127.0.0.1:8083", Weight: 1, Region: "us"},
			},
			HealthCheck: HealthCheck{Path: "/health"},
		}},
		// The demo's /lb is load balanced with sticky sessions: a client that keeps the
		// cookie stays on its backend; one that does not sees the 3:2:1 split.
		Sticky: Sticky{Enabled: true},
	}
	c.ApplyDefaults()
	return c
}

// ApplyDefaults fills in the defaults of docs/config.md. For a parsed config only keys that the
// file leaves out (or sets to null) get their default: an explicit "weight: 0" or
// "attempts: 0" is kept, so that it is validated or honoured. For a config built in code
// every zero field gets its default. Calling it again changes nothing.
func (c *Config) ApplyDefaults() {
	s := c.src
	setDefault(s, &c.Listen, "listen", ":8080")
	setDefault(s, &c.Admin.Listen, "admin.listen", "127.0.0.1:9901")

	sv := &c.Server
	setDefault(s, &sv.ReadTimeout, "server.read_timeout", 30*time.Second)
	setDefault(s, &sv.WriteTimeout, "server.write_timeout", 30*time.Second)
	setDefault(s, &sv.IdleTimeout, "server.idle_timeout", 90*time.Second)
	setDefault(s, &sv.MaxHeaderBytes, "server.max_header_bytes", 16384)
	setDefault(s, &sv.MaxBodyBytes, "server.max_body_bytes", 10485760)
	setDefault(s, &sv.ShutdownTimeout, "server.shutdown_timeout", 15*time.Second)
	setDefault(s, &sv.MaxHeaders, "server.max_headers", 100)
	setDefault(s, &sv.EscapedSlashes, "server.escaped_slashes", "reject")
	setDefault(s, &sv.DrainGrace, "server.drain_grace", 3*time.Second)
	setDefault(s, &sv.RequestBufferBytes, "server.request_buffer_bytes", 1<<20)
	setDefault(s, &sv.MinRequestBodyRate, "server.min_request_body_rate", 1024)
	setDefault(s, &sv.RequestBodyGrace, "server.request_body_grace", 10*time.Second)

	for i := range c.Pools {
		c.Pools[i].applyDefaults(s, indexPath("pools", i), i)
		c.Pools[i].ResponseHeaderBytes = sv.MaxHeaderBytes
	}

	setDefaultTrue(&c.Geo.PreferLocal)
	setDefault(s, &c.Sticky.Cookie, "sticky.cookie", "lb_sticky")
	setDefault(s, &c.Sticky.TTL, "sticky.ttl", 30*time.Minute)
	setDefault(s, &c.Sticky.NewHeaderSessionsPerSecond, "sticky.new_header_sessions_per_second", 100)
	setDefault(s, &c.Redis.URL, "redis.url", "redis://127.0.0.1:6379/0")
	setDefault(s, &c.Redis.ClientCacheTTL, "redis.client_cache_ttl", 60*time.Second)

	rl := &c.RateLimit
	setDefault(s, &rl.Key, "rate_limit.key", "ip")
	setDefault(s, &rl.Rate, "rate_limit.rate", 100)
	setDefault(s, &rl.Burst, "rate_limit.burst", 200)
	setDefault(s, &rl.Scope, "rate_limit.scope", "local")

	setDefaultList(s, &c.Auth.JWT.Algorithms, "auth.jwt.algorithms", "RS256")

	setDefault(s, &c.Tracing.SampleRatio, "tracing.sample_ratio", 0.01)
	setDefault(s, &c.Tracing.ServiceName, "tracing.service_name", "go-loadbalancer")

	setDefault(s, &c.Log.Level, "log.level", "info")
	setDefaultTrue(&c.Log.AccessLog)
	setDefault(s, &c.Log.Query, "log.query", QueryRedact)
}

func (p *Pool) applyDefaults(s *source, path string, index int) {
	if p.Name == "" {
		p.Name = "pool" + strconv.Itoa(index)
		if index == 0 {
			p.Name = "default"
		}
	}
	at := func(key string) string { return joinPath(path, key) }
	setDefault(s, &p.Balance, at("balance"), BalanceSmoothWeighted)
	for i := range p.Backends {
		setDefault(s, &p.Backends[i].Weight, at(indexPath("backends", i)+".weight"), 1)
	}
	for i := range p.Standby {
		setDefault(s, &p.Standby[i].Weight, at(indexPath("standby", i)+".weight"), 1)
	}
	setDefaultTrue(&p.Discovery.Consul.PassingOnly)
	setDefault(s, &p.Discovery.Consul.Scheme, at("discovery.consul.scheme"), "http")

	hc := &p.HealthCheck
	setDefault(s, &hc.Path, at("health_check.path"), "/health")
	setDefault(s, &hc.Interval, at("health_check.interval"), 2*time.Second)
	setDefault(s, &hc.Timeout, at("health_check.timeout"), time.Second)
	setDefault(s, &hc.Rise, at("health_check.rise"), 2)
	setDefault(s, &hc.Fall, at("health_check.fall"), 3)
	setDefault(s, &hc.ExpectStatus, at("health_check.expect_status"), "200-399")

	cb := &p.CircuitBreaker
	setDefault(s, &cb.ConsecutiveFailures, at("circuit_breaker.consecutive_failures"), 5)
	setDefault(s, &cb.FailureRatio, at("circuit_breaker.failure_ratio"), 0.5)
	setDefault(s, &cb.MinRequests, at("circuit_breaker.min_requests"), 20)
	setDefault(s, &cb.Window, at("circuit_breaker.window"), 10*time.Second)
	setDefault(s, &cb.OpenFor, at("circuit_breaker.open_for"), 5*time.Second)
	setDefault(s, &cb.HalfOpenProbes, at("circuit_breaker.half_open_probes"), 3)
	setDefault(s, &cb.MaxEjectionPercent, at("circuit_breaker.max_ejection_percent"), 50)

	setDefault(s, &p.Retry.Attempts, at("retry.attempts"), 2)
	setDefaultList(s, &p.Retry.On, at("retry.on"), "connect", "502", "503", "504")
	setDefault(s, &p.Retry.BudgetRatio, at("retry.budget_ratio"), 0.2)

	setDefault(s, &p.Timeouts.Connect, at("timeouts.connect"), time.Second)
	setDefault(s, &p.Timeouts.Response, at("timeouts.response"), 30*time.Second)
	setDefault(s, &p.Timeouts.TunnelIdle, at("timeouts.tunnel_idle"), time.Hour)
	setDefault(s, &p.MaxConnsPerBackend, at("max_conns_per_backend"), 1024)

	setDefault(s, &p.Autoscale.MinActive, at("autoscale.min_active"), 1)
	setDefault(s, &p.Autoscale.Cooldown, at("autoscale.cooldown"), 30*time.Second)
}

// setDefault sets *p to v when *p is zero and the file does not set path.
func setDefault[T comparable](s *source, p *T, path string, v T) {
	var zero T
	if *p == zero && !s.has(path) {
		*p = v
	}
}

// setDefaultList sets *p to vs when *p is nil and the file does not set path (an explicit
// empty list is kept).
func setDefaultList(s *source, p *[]string, path string, vs ...string) {
	if *p == nil && !s.has(path) {
		*p = vs
	}
}

// setDefaultTrue makes a nil *bool point to true.
func setDefaultTrue(p **bool) {
	if *p == nil {
		t := true
		*p = &t
	}
}
