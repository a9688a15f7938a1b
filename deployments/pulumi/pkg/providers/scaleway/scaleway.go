// Package scaleway is Scaleway — not written yet. It creates nothing: Regions() is empty and stack
// validation refuses philotes:provider=scaleway with the reason below, so no stack can pretend to
// run there.
package scaleway

import "github.com/philotes/philotes/deployments/pulumi/pkg/providers"

// Reason says what is missing (checked against the Go module proxy on 2026-12-04).
const Reason = "its Go SDK github.com/pulumiverse/pulumi-scaleway/sdk v1.53.0 resolves, but the network, Kapsule or instance, load balancer and bucket resources are not written"

// New returns the unsupported provider.
func New() providers.CloudProvider {
	return providers.Unsupported{Provider: "scaleway", Reason: Reason}
}
