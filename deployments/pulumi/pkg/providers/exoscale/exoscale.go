// Package exoscale is Exoscale — not written yet. It creates nothing: Regions() is empty and stack
// validation refuses philotes:provider=exoscale with the reason below, so no stack can pretend to
// run there.
package exoscale

import "github.com/philotes/philotes/deployments/pulumi/pkg/providers"

// Reason says what is missing (checked against the Go module proxy on 2026-12-04).
const Reason = "its Go SDK github.com/pulumiverse/pulumi-exoscale/sdk v0.66.1 resolves, but the private network, SKS or instance pool, load balancer and SOS bucket resources are not written"

// New returns the unsupported provider.
func New() providers.CloudProvider {
	return providers.Unsupported{Provider: "exoscale", Reason: Reason}
}
