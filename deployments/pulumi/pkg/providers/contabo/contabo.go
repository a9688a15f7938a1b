// Package contabo is Contabo — not written yet. It creates nothing: Regions() is empty and stack
// validation refuses philotes:provider=contabo with the reason below, so no stack can pretend to
// run there.
package contabo

import "github.com/philotes/philotes/deployments/pulumi/pkg/providers"

// Reason says what is missing (checked against the Go module proxy on 2026-12-04).
const Reason = "the community SDK github.com/lbialy/pulumi-contabo/sdk/v2 is not served by the Go module proxy, and a native provider over Contabo's REST API is not written"

// New returns the unsupported provider.
func New() providers.CloudProvider {
	return providers.Unsupported{Provider: "contabo", Reason: Reason}
}
