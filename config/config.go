// Package config loads and validates the load balancer's YAML configuration; every key is
// described in docs/config.md.
//
// Decoding is strict: an unknown key is an error. Every error names the file and the line
// of the offending key ("lb.yaml:12: pools[0].backends[1].weight: weight must be between 1
// and 10000"), and all problems are reported at once, as Errors. A missing key is reported
// on the line of the mapping that should hold it.
//
// Parse (and Load) decode, fill in defaults (docs/config.md; a key the file leaves out gets
// its default, a key the file sets to zero keeps it and is validated) and Validate. Relative
// file paths in the file (tls.*_file, pools[].upstream_tls.*_file, admin.token_file,
// sticky.secret_file, sticky.previous_secret_file,
// geo.mmdb_file, auth.jwt.jwks_file, auth.jwt.hmac_secret_file) are resolved against the
// directory of the config file at parse time, so they do not depend on the working
// directory; paths from environment variables are used as given.
//
// Environment overrides (flag > env > file > default) are applied by ApplyEnv;
// the caller then runs Validate again, whose errors for values that came from the
// environment name the variable ("environment: LOG_LEVEL: ...").
//
// A Config is immutable once loaded (and ApplyEnv applied): callers must not modify it.
package config

import "time"

// Config is the whole file. The zero value is not valid; use Load or Default.
type Config struct {
	Listen    string      `yaml:"listen"`
	Admin     Admin       `yaml:"admin"`
	TLS       TLS         `yaml:"tls"`
	Server    Server      `yaml:"server"`
	Pools     []Pool      `yaml:"pools"`
	Routes    []Route     `yaml:"routes"`
	Geo       Geo         `yaml:"geo"`
	Sticky    Sticky      `yaml:"sticky"`
	Redis     Redis       `yaml:"redis"`
	RateLimit RateLimit   `yaml:"rate_limit"`
	Auth      Auth        `yaml:"auth"`
	Tracing   Tracing     `yaml:"tracing"`
	Log       Log         `yaml:"log"`
	Env       EnvSettings `yaml:"-"` // feature switches from the environment (docs/config.md#environment-variables)

	// File is the path the config was loaded from ("" for a built-in config).
	File string `yaml:"-"`

	src     *source           // where each key was in File; nil for a config built in code
	envFrom map[string]string // key path -> environment variable that set it (ApplyEnv)
}

// EnvSettings holds the switches that exist only as environment variables
// (REDIS_ENABLED, TRAFFIC_POLICIES_ENABLED, CONSUL_*). MTLS_* set the pools' upstream_tls
// instead.
type EnvSettings struct {
	RedisEnabled bool
	// TrafficPoliciesOff is TRAFFIC_POLICIES_ENABLED=false: the routes are ignored and
	// every request goes to the first pool. Unset or true applies them.
	TrafficPoliciesOff bool
	ConsulEnabled      bool
	ConsulAddr         string
}

// Admin configures the admin, dashboard and metrics listener (docs/behaviour.md#admin-port).
type Admin struct {
	Listen    string `yaml:"listen"`
	TokenFile string `yaml:"token_file"`
	Token     string `yaml:"-"` // from ADMIN_TOKEN or token_file
	Pprof     bool   `yaml:"pprof"`
	// AllowedHosts are host names (no port) the admin port answers besides IP literals,
	// localhost and the listen host; a request with another Host gets 421.
	AllowedHosts []string `yaml:"allowed_hosts"`
}

// TLS configures TLS on the front listener; ClientCAFile turns on client certificate
// verification (mTLS).
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the front listener serves TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Server holds the front listener's limits and timeouts.
type Server struct {
	ReadTimeout     time.Duration `yaml:"read_timeout"`
	WriteTimeout    time.Duration `yaml:"write_timeout"`
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes  int           `yaml:"max_header_bytes"`
	MaxBodyBytes    int64         `yaml:"max_body_bytes"`
	TrustedProxies  []string      `yaml:"trusted_proxies"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxHeaders is the most header lines a request may have (431 beyond).
	MaxHeaders int `yaml:"max_headers"`
	// EscapedSlashes is what a percent-encoded '/', '\' or '.' in a request path gets:
	// reject (400), keep or unescape (docs/behaviour.md#request-processing).
	EscapedSlashes string `yaml:"escaped_slashes"`
	// DrainGrace is how long, on SIGTERM, responses carry Connection: close before idle
	// keep-alive connections are closed (at most: it ends once no client connection is open);
	// part of ShutdownTimeout.
	DrainGrace time.Duration `yaml:"drain_grace"`
	// MaxConns caps open client connections; 0 derives it from RLIMIT_NOFILE
	// (docs/config.md#server).
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerIP caps open client connections per peer address; 0 means no cap.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// MaxTunnels caps open WebSocket tunnels and streamed uploads; 0 means MaxConns/2.
	MaxTunnels int `yaml:"max_tunnels"`
	// RequestBufferBytes: request bodies up to this size are read whole before a backend
	// is chosen; larger ones stream.
	RequestBufferBytes int64 `yaml:"request_buffer_bytes"`
	// MinRequestBodyRate (bytes/s; 0 turns it off) is what a request body must average
	// over each RequestBodyGrace period, or the request ends with 408.
	MinRequestBodyRate int64         `yaml:"min_request_body_rate"`
	RequestBodyGrace   time.Duration `yaml:"request_body_grace"`
}

// Balance names a pool's picking algorithm.
const (
	BalanceSmoothWeighted = "smooth_weighted"
	BalanceLeastInflight  = "least_inflight"
)

// Pool is a named group of backends with its balancing, health checking, breaker and
// retry settings.
type Pool struct {
	Name               string         `yaml:"name"`
	Balance            string         `yaml:"balance"`
	Backends           []Backend      `yaml:"backends"`
	Standby            []Backend      `yaml:"standby"`
	Discovery          Discovery      `yaml:"discovery"`
	HealthCheck        HealthCheck    `yaml:"health_check"`
	CircuitBreaker     CircuitBreaker `yaml:"circuit_breaker"`
	Retry              Retry          `yaml:"retry"`
	Timeouts           Timeouts       `yaml:"timeouts"`
	MaxConnsPerBackend int            `yaml:"max_conns_per_backend"`
	UpstreamTLS        UpstreamTLS    `yaml:"upstream_tls"`
	Autoscale          Autoscale      `yaml:"autoscale"`
	// ResponseHeaderBytes is the largest response head a backend may send: ApplyDefaults
	// sets it to server.max_header_bytes, so a backend that echoes a request head the
	// proxy accepted still fits.
	ResponseHeaderBytes int `yaml:"-"`
}

// Backend is one upstream server. URL is "http://host[:port]" or "https://host[:port]".
type Backend struct {
	URL    string `yaml:"url"`
	Weight int    `yaml:"weight"`
	Region string `yaml:"region"`
}

// Discovery configures sources of backends other than the file.
type Discovery struct {
	Consul ConsulDiscovery `yaml:"consul"`
}

// ConsulDiscovery takes a pool's backends from a Consul service.
type ConsulDiscovery struct {
	Service     string `yaml:"service"`
	Tag         string `yaml:"tag"`
	PassingOnly *bool  `yaml:"passing_only"`
	// Scheme is how discovered backends are reached: http (default) or https (then the
	// pool's upstream_tls applies, client certificate included).
	Scheme string `yaml:"scheme"`
}

// HealthCheck configures active health checks of a pool's backends.
type HealthCheck struct {
	Path         string        `yaml:"path"`
	Interval     time.Duration `yaml:"interval"`
	Timeout      time.Duration `yaml:"timeout"`
	Rise         int           `yaml:"rise"`
	Fall         int           `yaml:"fall"`
	ExpectStatus string        `yaml:"expect_status"`
}

// CircuitBreaker configures the per-backend circuit breaker.
type CircuitBreaker struct {
	ConsecutiveFailures int           `yaml:"consecutive_failures"`
	FailureRatio        float64       `yaml:"failure_ratio"`
	MinRequests         int           `yaml:"min_requests"`
	Window              time.Duration `yaml:"window"`
	OpenFor             time.Duration `yaml:"open_for"`
	HalfOpenProbes      int           `yaml:"half_open_probes"`
	// MaxEjectionPercent caps the share of a pool's backends whose breakers may be open at
	// once (Envoy's max_ejection_percent); one backend may always be ejected.
	MaxEjectionPercent int `yaml:"max_ejection_percent"`
}

// Retry configures retries on another backend; Attempts counts retries after the first
// try.
type Retry struct {
	Attempts    int      `yaml:"attempts"`
	On          []string `yaml:"on"`
	BudgetRatio float64  `yaml:"budget_ratio"`
}

// Timeouts bounds connecting to a backend and waiting for its response.
type Timeouts struct {
	Connect  time.Duration `yaml:"connect"`
	Response time.Duration `yaml:"response"`
	// TunnelIdle closes a WebSocket tunnel with no traffic either way for this long.
	TunnelIdle time.Duration `yaml:"tunnel_idle"`
}

// UpstreamTLS configures TLS (and client certificates, mTLS) towards https backends.
type UpstreamTLS struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// Autoscale configures bringing standby backends in and out.
type Autoscale struct {
	TargetInflightPerBackend int           `yaml:"target_inflight_per_backend"`
	MinActive                int           `yaml:"min_active"`
	Cooldown                 time.Duration `yaml:"cooldown"`
}

// Route is one traffic policy: requests that Match go to Pool or are Split between pools.
type Route struct {
	Match Match        `yaml:"match"`
	Pool  string       `yaml:"pool"`
	Split []SplitEntry `yaml:"split"`
}

// Match selects requests for a Route; empty fields match everything.
type Match struct {
	PathPrefix string            `yaml:"path_prefix"`
	Host       string            `yaml:"host"`
	Method     string            `yaml:"method"`
	Headers    map[string]string `yaml:"headers"`
	Regions    []string          `yaml:"regions"`
}

// SplitEntry is one pool of a weighted traffic split.
type SplitEntry struct {
	Pool   string `yaml:"pool"`
	Weight int    `yaml:"weight"`
}

// Geo configures how a client's region is found.
type Geo struct {
	Header      string              `yaml:"header"`
	CIDRs       map[string][]string `yaml:"cidrs"`
	MMDBFile    string              `yaml:"mmdb_file"`
	PreferLocal *bool               `yaml:"prefer_local"`
}

// Sticky configures sticky sessions.
type Sticky struct {
	Enabled bool          `yaml:"enabled"`
	Cookie  string        `yaml:"cookie"`
	Header  string        `yaml:"header"`
	TTL     time.Duration `yaml:"ttl"`
	// NewHeaderSessionsPerSecond caps how many new header-keyed sessions an instance
	// stores per second; over it a new session is placed by rendezvous hashing and not
	// stored. With ttl it bounds the session keys an instance can make a store hold.
	NewHeaderSessionsPerSecond int `yaml:"new_header_sessions_per_second"`
	// SecretFile holds the key that signs session cookies and makes their backend
	// references; PreviousSecretFile the key it replaced (still accepted during a rotation).
	SecretFile         string `yaml:"secret_file"`
	PreviousSecretFile string `yaml:"previous_secret_file"`
	// Secret and PreviousSecret are the keys, from STICKY_SECRET / STICKY_PREVIOUS_SECRET or
	// else the files (surrounding white space trimmed); nil when neither is set.
	Secret         []byte `yaml:"-"`
	PreviousSecret []byte `yaml:"-"`
}

// MinSecretLen is the shortest sticky secret accepted (128 bits).
const MinSecretLen = 16

// Redis configures the Redis connection used when REDIS_ENABLED is set.
type Redis struct {
	URL            string        `yaml:"url"`
	ClientCacheTTL time.Duration `yaml:"client_cache_ttl"`
}

// RateLimit configures request rate limiting (token bucket).
type RateLimit struct {
	Enabled bool    `yaml:"enabled"`
	Key     string  `yaml:"key"`
	Rate    float64 `yaml:"rate"`
	Burst   int     `yaml:"burst"`
	Scope   string  `yaml:"scope"`
}

// Auth configures request authentication.
type Auth struct {
	JWT JWT `yaml:"jwt"`
}

// JWT configures JWT bearer token verification.
type JWT struct {
	Enabled        bool              `yaml:"enabled"`
	Algorithms     []string          `yaml:"algorithms"`
	JWKSFile       string            `yaml:"jwks_file"`
	JWKSURL        string            `yaml:"jwks_url"`
	HMACSecretFile string            `yaml:"hmac_secret_file"`
	Issuer         string            `yaml:"issuer"`
	Audience       string            `yaml:"audience"`
	SkipPaths      []string          `yaml:"skip_paths"`
	ForwardClaims  map[string]string `yaml:"forward_claims"`
	// RequireExp refuses tokens without an exp claim (default true): such a token would
	// never expire.
	RequireExp *bool `yaml:"require_exp"`
	// ForwardToken sends the Authorization header on to the backend (default true, as
	// before); false removes it once the token is verified (Envoy's default).
	ForwardToken *bool `yaml:"forward_token"`
}

// RequireExpOn reports whether auth.jwt.require_exp is on (default true).
func (j JWT) RequireExpOn() bool { return j.RequireExp == nil || *j.RequireExp }

// ForwardTokenOn reports whether auth.jwt.forward_token is on (default true).
func (j JWT) ForwardTokenOn() bool { return j.ForwardToken == nil || *j.ForwardToken }

// Tracing configures OpenTelemetry tracing.
type Tracing struct {
	Enabled      bool    `yaml:"enabled"`
	OTLPEndpoint string  `yaml:"otlp_endpoint"`
	SampleRatio  float64 `yaml:"sample_ratio"`
	ServiceName  string  `yaml:"service_name"`
}

// Log configures logging.
type Log struct {
	Level     string `yaml:"level"`
	AccessLog *bool  `yaml:"access_log"`
	// Query is how the access log shows query strings: "redact" (the default; parameter
	// names kept, values replaced by *), "full" or "off".
	Query string `yaml:"query"`
	// Sample2xx is the share of 2xx responses that get an access log line (0..1; nil
	// means 1, every one). Other statuses are always logged.
	Sample2xx *float64 `yaml:"sample_2xx"`
}

// Access log query modes (Log.Query).
const (
	QueryRedact = "redact"
	QueryFull   = "full"
	QueryOff    = "off"
)

// Sample2xxRatio returns sample_2xx, 1 when unset.
func (l Log) Sample2xxRatio() float64 {
	if l.Sample2xx == nil {
		return 1
	}
	return *l.Sample2xx
}

// AccessLogOn reports whether access logging is enabled (default true).
func (l Log) AccessLogOn() bool { return l.AccessLog == nil || *l.AccessLog }
