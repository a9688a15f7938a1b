// Package ovhcloud is OVHcloud — not written yet. It creates nothing: Regions() is empty and stack
// validation refuses philotes:provider=ovhcloud with the reason below, so no stack can pretend to
// run there.
package ovhcloud

import "github.com/philotes/philotes/deployments/pulumi/pkg/providers"

// Reason says what is missing (checked against the Go module proxy on 2026-12-04).
const Reason = "its Go SDK github.com/ovh/pulumi-ovh/sdk/v2 is not served by the Go module proxy (v2.13.0 refused), and its resources are not written"

// New returns the unsupported provider.
func New() providers.CloudProvider {
	return providers.Unsupported{Provider: "ovhcloud", Reason: Reason}
}
