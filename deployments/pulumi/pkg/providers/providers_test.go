package providers_test

import (
	"strings"
	"testing"

	"github.com/philotes/philotes/deployments/pulumi/pkg/providers"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers/contabo"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers/exoscale"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers/hetzner"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers/ovhcloud"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers/scaleway"
)

// TestUnsupportedProvidersSaySo: a cloud that is not written offers no region and no
// instance type, and every Create* refuses, naming the fix.
func TestUnsupportedProvidersSaySo(t *testing.T) {
	for _, p := range []providers.CloudProvider{ovhcloud.New(), scaleway.New(), exoscale.New(), contabo.New()} {
		if p.Supported() || len(p.Regions()) != 0 || len(p.InstanceTypes()) != 0 || len(p.FixedCosts(3)) != 0 {
			t.Errorf("%s claims support", p.Name())
		}
		_, err := p.CreateNetwork(nil, providers.NetworkSpec{})
		if err == nil || !strings.Contains(err.Error(), `provider "`+p.Name()+`" is not supported yet`) || !strings.Contains(err.Error(), "set philotes:provider to hetzner") {
			t.Errorf("%s: %v", p.Name(), err)
		}
		if _, err := p.CreateCluster(nil, providers.ClusterSpec{}, nil); err == nil {
			t.Errorf("%s created a cluster", p.Name())
		}
		if _, err := p.CreateLoadBalancer(nil, providers.LoadBalancerSpec{}, nil, nil); err == nil {
			t.Errorf("%s created a load balancer", p.Name())
		}
		if _, err := p.CreateObjectStorage(nil, providers.ObjectStorageSpec{}); err == nil {
			t.Errorf("%s created a bucket", p.Name())
		}
	}
}

// TestHetznerCatalogue: only orderable server types, each with a dated, sourced price, and
// EU locations with object storage.
func TestHetznerCatalogue(t *testing.T) {
	h := hetzner.New()
	if !h.Supported() || providers.RegionNames(h) != "fsn1, hel1, nbg1" {
		t.Errorf("regions %s", providers.RegionNames(h))
	}
	for _, r := range h.Regions() {
		if !r.ObjectStorage || r.NetworkZone != "eu-central" {
			t.Errorf("region %+v", r)
		}
	}
	for _, it := range h.InstanceTypes() {
		if _, retired := hetzner.ReplacementFor(it.Name); retired {
			t.Errorf("%s is retired", it.Name)
		}
		if it.MonthlyEUR <= 0 || it.VCPU <= 0 || it.MemoryGB <= 0 || it.PriceDate == "" || it.PriceSource == "" {
			t.Errorf("%+v lacks a price, size, date or source", it)
		}
	}
	for _, name := range []string{"cx23", "cx33", "cx43", "cpx22", "cpx32", "cax11"} {
		if _, ok := providers.FindInstanceType(h, name); !ok {
			t.Errorf("%s missing", name)
		}
	}
	for _, old := range []string{"cx22", "cpx21", "cx32"} {
		if _, ok := providers.FindInstanceType(h, old); ok {
			t.Errorf("retired %s offered", old)
		}
	}
	// Prices grow with size within a family.
	price := func(n string) float64 { it, _ := providers.FindInstanceType(h, n); return it.MonthlyEUR }
	if !(price("cx23") < price("cx33") && price("cx33") < price("cx43")) {
		t.Error("cx prices do not grow with size")
	}
	lines := h.FixedCosts(4)
	if len(lines) != 3 || lines[1].Count != 4 {
		t.Errorf("fixed costs %+v", lines)
	}
	for _, l := range lines {
		if !l.Estimated || l.Source == "" {
			t.Errorf("%+v should be marked estimated with a source", l)
		}
	}
	if hetzner.ObjectStorageEndpoint("hel1") != "https://hel1.your-objectstorage.com" {
		t.Error(hetzner.ObjectStorageEndpoint("hel1"))
	}
}
