package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"go-loadbalancer/auth"
	"go-loadbalancer/config"
	"go-loadbalancer/geoip"
	"go-loadbalancer/tlsconf"
)

// preflight opens and parses every file the configuration names, with the loaders a start
// uses — certificates with their keys (and that they match), CA bundles, the GeoIP
// database, the JWT key set (from auth.jwt.jwks_url too) and HMAC secret — and reports each
// problem at the key that names the file ("lb.yaml:7: tls.client_ca_file: cannot read
// ..."). loadConfig runs it after Validate, so -check-config, a start and a reload all
// check the same things: a config -check-config passed does not fail to start on a file.
// (admin.token_file is read by config.ApplyEnv.)
func preflight(cfg *config.Config) config.Errors {
	var errs config.Errors
	fail := func(path string, err error) { errs = append(errs, cfg.ErrorAt(path, err)) }
	keyPair := func(path, cert, key string) {
		if cert == "" || key == "" {
			return // Validate reports a half pair
		}
		if _, err := os.Stat(key); err != nil {
			fail(path+".key_file", fmt.Errorf("cannot read %q: %w", key, config.PathErr(err)))
			return
		}
		if _, err := tlsconf.LoadKeyPair(cert, key); err != nil {
			fail(path+".cert_file", err)
		}
	}
	caFile := func(path, file string) {
		if file == "" {
			return
		}
		if _, err := tlsconf.LoadCertPool(file); err != nil {
			fail(path, err)
		}
	}

	keyPair("tls", cfg.TLS.CertFile, cfg.TLS.KeyFile)
	caFile("tls.client_ca_file", cfg.TLS.ClientCAFile)
	for i, p := range cfg.Pools {
		path := fmt.Sprintf("pools[%d].upstream_tls", i)
		keyPair(path, p.UpstreamTLS.CertFile, p.UpstreamTLS.KeyFile)
		caFile(path+".ca_file", p.UpstreamTLS.CAFile)
	}
	if f := cfg.Geo.MMDBFile; f != "" {
		if db, err := geoip.Open(f); err != nil {
			fail("geo.mmdb_file", err)
		} else {
			db.Close()
		}
	}
	if j := cfg.Auth.JWT; j.Enabled {
		if j.HMACSecretFile != "" {
			if _, err := auth.LoadHMACSecret(j.HMACSecretFile); err != nil {
				fail("auth.jwt.hmac_secret_file", err)
			}
		}
		if j.JWKSFile != "" {
			if _, err := auth.LoadJWKS(j.JWKSFile, j.Algorithms); err != nil {
				fail("auth.jwt.jwks_file", err)
			}
		}
		if j.JWKSURL != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := auth.FetchJWKS(ctx, http.DefaultClient, j.JWKSURL, j.Algorithms)
			cancel()
			if err != nil {
				fail("auth.jwt.jwks_url", err)
			}
		}
	}
	return errs
}
