package discovery

import (
	"testing"

	"github.com/hashicorp/consul/api"
)

// TestConsulBackendsScheme: discovery.consul.scheme decides how discovered backends are
// reached — https makes them TLS backends (with the pool's upstream_tls, client certificate
// included); they were always plain http before.
func TestConsulBackendsScheme(t *testing.T) {
	t.Parallel()
	entries := []*api.ServiceEntry{{Service: &api.AgentService{Address: "10.0.0.5", Port: 8443}}}
	for _, scheme := range []string{"http", "https"} {
		bs, skipped := consulBackends(entries, scheme)
		if want := scheme + "://10.0.0.5:8443"; skipped != 0 || len(bs) != 1 || bs[0].URL != want {
			t.Fatalf("scheme %s: got %+v (%d skipped); want one backend %s", scheme, bs, skipped, want)
		}
	}
}
