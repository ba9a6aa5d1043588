// Package k8s holds the Kubernetes manifests and their test: a module of its own, so that
// the Kubernetes API types the test decodes into do not become dependencies of the load
// balancer. scripts/test.sh runs it.
package k8s
