// Package hetzner is Philotes on Hetzner Cloud (pulumi-hcloud): a private network, a K3s
// server and agent pools from cloud-init, a firewall that opens only what the stack config
// says, a placement group, a load balancer in front of ingress-nginx, and the lake's bucket
// on Hetzner Object Storage through an S3 provider.
package hetzner

import (
	"math"

	"github.com/philotes/philotes/deployments/pulumi/pkg/providers"
)

// Prices. Hetzner changed its prices on 2026-04-01 and again (for new orders) on 2026-06-15,
// and published figures disagree. The authoritative list is the Cloud API,
// `GET /v1/server_types` and `GET /v1/load_balancer_types` (prices per location, net and
// gross); check it before trusting an estimate to the euro.
const (
	// PriceDate is when the figures below were read.
	PriceDate = "2026-12-01"
	// ServerPriceSource is where the server types' specs and hourly prices come from. The
	// monthly figure is hourly × 730 h rounded up to the cent: an upper bound of the monthly
	// cap Hetzner bills.
	ServerPriceSource = "docs.cnap.tech/compute/providers/hetzner (hourly prices, read 2026-12-01) × 730 h; authoritative: Hetzner Cloud API GET /v1/server_types"
	// EstimateSource is where the prices marked estimated come from: Hetzner's 2025 price
	// list raised by the ~30% April 2026 increase reported by cloudtally.eu ("most compute
	// up 30-37%"), since no post-increase figure was found.
	EstimateSource = "Hetzner 2025 price list + ~30% (April 2026 increase, cloudtally.eu); estimated — check the Cloud Console"
	hoursPerMonth  = 730
)

func monthly(hourly float64) float64 { return math.Ceil(hourly*hoursPerMonth*100) / 100 }

func serverType(name, arch string, vcpu int, mem float64, disk int, hourly float64) providers.InstanceType {
	return providers.InstanceType{
		Name: name, Arch: arch, VCPU: vcpu, MemoryGB: mem, DiskGB: disk,
		MonthlyEUR: monthly(hourly), PriceDate: PriceDate, PriceSource: ServerPriceSource,
	}
}

// instanceTypes are the server types that can be ordered today. The cx22/cx32/cx42/cpx11/
// cpx21 generation was deprecated on 2025-10-16 and cannot be ordered since early 2026, so
// it is not here and validation refuses it.
var instanceTypes = []providers.InstanceType{
	serverType("cx23", "x86", 2, 4, 40, 0.006),
	serverType("cx33", "x86", 4, 8, 80, 0.011),
	serverType("cx43", "x86", 8, 16, 160, 0.021),
	serverType("cpx22", "x86", 3, 4, 80, 0.008),
	serverType("cpx32", "x86", 4, 8, 160, 0.016),
	serverType("cax11", "arm64", 2, 4, 40, 0.004),
	serverType("cax21", "arm64", 4, 8, 80, 0.007),
	serverType("cax31", "arm64", 8, 16, 160, 0.013),
}

// Retired server types, named in the refusal so the fix is obvious.
var retired = map[string]string{
	"cx22": "cx23", "cx32": "cx33", "cx42": "cx43", "cx52": "cx43",
	"cpx11": "cx23", "cpx21": "cpx22", "cpx31": "cpx32",
}

// ReplacementFor returns the current type to use instead of a retired one.
func ReplacementFor(name string) (string, bool) {
	r, ok := retired[name]
	return r, ok
}

// Monthly prices of what is not a server (estimated: see EstimateSource).
const (
	LoadBalancerType       = "lb11"
	LoadBalancerMonthlyEUR = 7.01 // lb11: €5.39 (2025) + ~30%
	PrimaryIPv4MonthlyEUR  = 0.65 // €0.50 (2025) + ~30%
	ObjectStorageBaseEUR   = 6.49 // base price incl. 1 TB stored and 1 TB egress: €4.99 (2025) + ~30%
)

// regions are Hetzner's EU locations; all three share the eu-central network zone and sell
// Object Storage (endpoint https://<location>.your-objectstorage.com).
var regions = []providers.Region{
	{Name: "fsn1", City: "Falkenstein", NetworkZone: "eu-central", ObjectStorage: true},
	{Name: "nbg1", City: "Nuremberg", NetworkZone: "eu-central", ObjectStorage: true},
	{Name: "hel1", City: "Helsinki", NetworkZone: "eu-central", ObjectStorage: true},
}

// ObjectStorageEndpoint is Hetzner's S3 endpoint for a location.
func ObjectStorageEndpoint(location string) string {
	return "https://" + location + ".your-objectstorage.com"
}
