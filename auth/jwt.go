// Package auth verifies JWT bearer tokens at the edge (config auth.jwt): signature against
// an allow-list of algorithms (never "none", and an HMAC secret is never tried for an
// asymmetric algorithm or a public key for an HMAC one), issuer, audience and time claims,
// with keys from a JWKS file, a JWKS URL (refreshed in the background) or an HMAC secret.
// Built on github.com/go-jose/go-jose/v4, whose parser itself requires the allow-list.
package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/rs/zerolog"

	"go-loadbalancer/config"
	"go-loadbalancer/internal/reqpath"
)

// Leeway is the clock skew allowed on exp, nbf and iat.
const Leeway = 30 * time.Second

// Errors Verify returns; their text is safe to show a client (RFC 6750 error_description).
var (
	ErrMissing   = errors.New("missing bearer token")
	ErrMalformed = errors.New("malformed token")
	ErrAlgorithm = errors.New("token algorithm not allowed")
	ErrSignature = errors.New("invalid token signature")
	ErrClaims    = errors.New("token expired, not yet valid, or for another issuer or audience")
	ErrNoExpiry  = errors.New("token has no exp claim")
)

// Verifier checks tokens. Safe for concurrent use.
type Verifier struct {
	algs      []jose.SignatureAlgorithm
	algNames  []string
	hmac      []byte
	keys      atomic.Pointer[jose.JSONWebKeySet]
	expected  jwt.Expected
	skip      [][]byte
	forward   []ClaimHeader
	jwksURL   string
	client    *http.Client
	log       zerolog.Logger
	stop      context.CancelFunc
	refreshed atomic.Int64
	// requireExp refuses tokens without exp (auth.jwt.require_exp, default true).
	requireExp   bool
	forwardToken bool // auth.jwt.forward_token
	cache        *cache
}

// ClaimHeader forwards a claim's value to the backend in a header.
type ClaimHeader struct {
	Claim  string
	Header string
}

// Options configure New.
type Options struct {
	Config  config.JWT
	Client  *http.Client  // for jwks_url; nil means a client with a 5 s timeout
	Refresh time.Duration // jwks_url refresh period; 0 means 5 minutes
	Log     zerolog.Logger
}

// New loads the keys and returns a Verifier; with jwks_url it fetches the set now (an
// error if that fails) and then every Refresh in the background until Close.
func New(o Options) (*Verifier, error) {
	c := o.Config
	v := &Verifier{
		expected: jwt.Expected{Issuer: c.Issuer},
		jwksURL:  c.JWKSURL,
		algNames: c.Algorithms,
		client:   o.Client,
		log:      o.Log,

		requireExp:   c.RequireExpOn(),
		forwardToken: c.ForwardTokenOn(),
		cache:        newCache(DefaultCacheSize),
	}
	for _, p := range c.SkipPaths {
		v.skip = append(v.skip, []byte(p))
	}
	if c.Audience != "" {
		v.expected.AnyAudience = jwt.Audience{c.Audience}
	}
	for _, a := range c.Algorithms {
		v.algs = append(v.algs, jose.SignatureAlgorithm(a))
	}
	for claim, header := range c.ForwardClaims {
		v.forward = append(v.forward, ClaimHeader{Claim: claim, Header: header})
	}
	if c.HMACSecretFile != "" {
		secret, err := LoadHMACSecret(c.HMACSecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.hmac_secret_file: %w", err)
		}
		v.hmac = secret
	}
	if c.JWKSFile != "" {
		set, err := LoadJWKS(c.JWKSFile, c.Algorithms)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.jwks_file: %w", err)
		}
		v.keys.Store(set)
	}
	if c.JWKSURL != "" {
		if v.client == nil {
			v.client = &http.Client{Timeout: 5 * time.Second}
		}
		if err := v.fetch(context.Background()); err != nil {
			return nil, fmt.Errorf("auth.jwt.jwks_url: %w", err)
		}
		refresh := o.Refresh
		if refresh <= 0 {
			refresh = 5 * time.Minute
		}
		ctx, cancel := context.WithCancel(context.Background())
		v.stop = cancel
		go v.refreshLoop(ctx, refresh)
	}
	if v.hmac == nil && v.keys.Load() == nil {
		return nil, errors.New("cannot verify JWTs: set auth.jwt.jwks_file, jwks_url or hmac_secret_file")
	}
	return v, nil
}

// Close stops the background JWKS refresh.
func (v *Verifier) Close() {
	if v.stop != nil {
		v.stop()
	}
}

// MinHMACSecret is the shortest HMAC secret accepted, in bytes (RFC 7518 §3.2: a key at
// least as long as the hash output, 256 bits for HS256).
const MinHMACSecret = 32

// LoadHMACSecret reads an HMAC secret file (surrounding white space trimmed) and checks
// its length.
func LoadHMACSecret(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", file, config.PathErr(err))
	}
	secret := []byte(strings.TrimSpace(string(b)))
	if len(secret) < MinHMACSecret {
		return nil, fmt.Errorf("cannot use %q: the secret is %d bytes; it must be at least %d", file, len(secret), MinHMACSecret)
	}
	return secret, nil
}

// LoadJWKS reads a JWKS file and checks it as ParseJWKS does.
func LoadJWKS(file string, algorithms []string) (*jose.JSONWebKeySet, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", file, config.PathErr(err))
	}
	set, err := ParseJWKS(b, algorithms)
	if err != nil {
		return nil, fmt.Errorf("cannot use %q: %w", file, err)
	}
	return set, nil
}

// ParseJWKS parses a JWKS document (RFC 7517 §5): every key must be a public key, and
// when algorithms name a public-key algorithm at least one key must be usable with one of
// them — a set of EC keys under algorithms: [RS256] could verify no token.
func ParseJWKS(b []byte, algorithms []string) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("the key set is empty")
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("key %q is not a public key", k.KeyID)
		}
	}
	var public []string
	for _, a := range algorithms {
		if !strings.HasPrefix(a, "HS") {
			public = append(public, a)
		}
	}
	if len(public) == 0 {
		return &set, nil
	}
	for _, k := range set.Keys {
		for _, a := range public {
			if keyFits(k, a) {
				return &set, nil
			}
		}
	}
	return nil, fmt.Errorf("no key in the set can verify %s", strings.Join(public, ", "))
}

// keyFits reports whether k can verify signatures of algorithm alg: its type matches and,
// when the key names an algorithm ("alg"), it is alg.
func keyFits(k jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch k.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// FetchJWKS gets a JWKS document from url (at most 1 MiB) and checks it as ParseJWKS does.
func FetchJWKS(ctx context.Context, client *http.Client, url string, algorithms []string) (*jose.JSONWebKeySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot fetch %q: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot fetch %q: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cannot fetch %q: status %d", url, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("cannot fetch %q: %w", url, err)
	}
	set, err := ParseJWKS(b, algorithms)
	if err != nil {
		return nil, fmt.Errorf("cannot use %q: %w", url, err)
	}
	return set, nil
}

func (v *Verifier) fetch(ctx context.Context) error {
	set, err := FetchJWKS(ctx, v.client, v.jwksURL, v.algNames)
	if err != nil {
		return err
	}
	v.keys.Store(set)
	v.refreshed.Add(1)
	return nil
}

// refreshLoop re-fetches the key set; a failure keeps the keys it has (logged).
func (v *Verifier) refreshLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := v.fetch(ctx); err != nil && ctx.Err() == nil {
				v.log.Warn().Err(err).Msg("jwt: key refresh failed; the previous keys stay in use")
			}
		}
	}
}

// Skip reports whether path — the request's canonical path
// (docs/behaviour.md#request-processing) — is one of skip_paths and needs no token. A skip path matches on whole segments:
// "/public" matches "/public" and "/public/x", never "/publicity".
func (v *Verifier) Skip(path []byte) bool {
	for _, p := range v.skip {
		if reqpath.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// ForwardToken reports whether the Authorization header goes on to the backend
// (auth.jwt.forward_token, default true).
func (v *Verifier) ForwardToken() bool { return v.forwardToken }

// Forward lists the claims to copy into request headers.
func (v *Verifier) Forward() []ClaimHeader { return v.forward }

// Cached returns the claims of the token in an Authorization header value when the token
// was verified before and is still valid at now (see cache): no signature check, no
// allocation. ok is false when the token must go through Verify. The claims are shared
// with every request bearing the token: read-only.
func (v *Verifier) Cached(authorization []byte, now time.Time) (claims map[string]any, ok bool) {
	raw, ok := bearerBytes(authorization)
	if !ok {
		return nil, false
	}
	claims = v.cache.get(raw, v.keys.Load(), now.UnixNano())
	return claims, claims != nil
}

// Verify checks the value of an Authorization header ("Bearer <token>") at now and returns
// the token's claims (read-only, see Cached). A token Cached answers costs nothing more; any
// other is parsed and its signature checked, and cached when valid, until its exp (plus
// Leeway) and at most MaxCacheAge.
func (v *Verifier) Verify(authorization []byte, now time.Time) (map[string]any, error) {
	if claims, ok := v.Cached(authorization, now); ok {
		return claims, nil
	}
	return v.verify(authorization, now)
}

// verify is Verify without the cache lookup: the full check, whose result is cached.
func (v *Verifier) verify(authorization []byte, now time.Time) (map[string]any, error) {
	raw, ok := bearer(authorization)
	if !ok {
		return nil, ErrMissing
	}
	keys := v.keys.Load() // the set this verification uses: the cache entry is tied to it
	tok, err := jwt.ParseSigned(raw, v.algs)
	if err != nil {
		if strings.Contains(err.Error(), "unexpected signature algorithm") {
			return nil, ErrAlgorithm
		}
		return nil, ErrMalformed
	}
	if len(tok.Headers) != 1 {
		return nil, ErrMalformed
	}
	h := tok.Headers[0]
	var std jwt.Claims
	all := map[string]any{}
	if err := tok.Claims(v.key(h, keys), &std, &all); err != nil {
		return nil, ErrSignature
	}
	if err := std.ValidateWithLeeway(v.expected.WithTime(now), Leeway); err != nil {
		return nil, ErrClaims
	}
	until := now.Add(MaxCacheAge)
	if std.Expiry != nil {
		if exp := std.Expiry.Time().Add(Leeway); exp.Before(until) {
			until = exp
		}
	} else if v.requireExp {
		return nil, ErrNoExpiry
	}
	v.cache.put(raw, all, keys, until.UnixNano(), now.UnixNano())
	return all, nil
}

// key returns the verification key for a token header: the HMAC secret for HS*, else the
// JWKS key with the token's kid (or the only key when there is no kid). A key of the wrong
// kind for the algorithm fails verification in go-jose.
func (v *Verifier) key(h jose.Header, set *jose.JSONWebKeySet) any {
	if strings.HasPrefix(h.Algorithm, "HS") {
		if v.hmac == nil {
			return struct{}{} // no secret configured: verification fails
		}
		return v.hmac
	}
	if set == nil {
		return struct{}{}
	}
	if h.KeyID != "" {
		if ks := set.Key(h.KeyID); len(ks) > 0 {
			return ks[0]
		}
		return struct{}{}
	}
	if len(set.Keys) == 1 {
		return set.Keys[0]
	}
	return struct{}{}
}

// bearer returns the token of an Authorization header value "Bearer <token>" (the scheme
// in any case, RFC 9110 §11.1), as a string.
func bearer(v []byte) (string, bool) {
	raw, ok := bearerBytes(v)
	return string(raw), ok
}

// bearerBytes is bearer without the copy: a sub-slice of v. Allocation-free.
func bearerBytes(v []byte) ([]byte, bool) {
	const prefix = "bearer "
	if len(v) <= len(prefix) || !strings.EqualFold(string(v[:len(prefix)]), prefix) {
		return nil, false
	}
	raw := bytes.TrimSpace(v[len(prefix):])
	return raw, len(raw) > 0
}

// ClaimString renders a claim value for a header: strings as they are, others as JSON.
func ClaimString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}
