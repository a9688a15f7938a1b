// Package network plans a stack's private addressing and its firewall: which addresses the
// nodes get on the private network, and which ports are open to which sources from the
// internet. It is plain data; providers turn it into their own resources.
package network

import (
	"fmt"
	"net/netip"
)

// Defaults for a stack's private network. K3s' pod (10.42.0.0/16) and service (10.43.0.0/16)
// ranges must not overlap them.
const (
	DefaultCIDR       = "10.0.0.0/16"
	DefaultSubnetCIDR = "10.0.1.0/24"
)

// Plan is the private addressing of a cluster: the server's address, each pool's addresses
// (one per node up to the pool's maximum, so growing a pool never renumbers a node) and the
// load balancer's.
type Plan struct {
	Subnet        netip.Prefix
	Server        netip.Addr
	LoadBalancer  netip.Addr
	PoolAddresses map[string][]netip.Addr
}

// PoolSize is what the address plan needs to know of a node pool.
type PoolSize struct {
	Name string
	Max  int
}

// PlanAddresses gives the server the subnet's 2nd address (the 1st is the gateway on
// Hetzner and most clouds), the load balancer the last usable one, and pools consecutive
// ranges from the 11th on.
func PlanAddresses(subnetCIDR string, pools []PoolSize) (*Plan, error) {
	subnet, err := netip.ParsePrefix(subnetCIDR)
	if err != nil {
		return nil, fmt.Errorf("subnet %q is not a CIDR: %w", subnetCIDR, err)
	}
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() {
		return nil, fmt.Errorf("subnet %q must be IPv4", subnetCIDR)
	}
	size := 1 << (32 - subnet.Bits())
	need := 10
	for _, p := range pools {
		need += p.Max
	}
	// Last two addresses: the load balancer and the broadcast address.
	if need+2 > size {
		return nil, fmt.Errorf("subnet %s has %d addresses, too few for %d nodes", subnet, size, need-10)
	}
	base := subnet.Addr()
	at := func(i int) netip.Addr {
		a := base
		for range i {
			a = a.Next()
		}
		return a
	}
	plan := &Plan{
		Subnet:        subnet,
		Server:        at(2),
		LoadBalancer:  at(size - 2),
		PoolAddresses: map[string][]netip.Addr{},
	}
	next := 11
	for _, p := range pools {
		var addrs []netip.Addr
		for range p.Max {
			addrs = append(addrs, at(next))
			next++
		}
		plan.PoolAddresses[p.Name] = addrs
	}
	return plan, nil
}

// Contains reports whether the subnet lies inside the network CIDR.
func Contains(networkCIDR, subnetCIDR string) error {
	n, err := netip.ParsePrefix(networkCIDR)
	if err != nil {
		return fmt.Errorf("%q is not a CIDR: %w", networkCIDR, err)
	}
	s, err := netip.ParsePrefix(subnetCIDR)
	if err != nil {
		return fmt.Errorf("%q is not a CIDR: %w", subnetCIDR, err)
	}
	if s.Bits() < n.Bits() || !n.Contains(s.Addr()) {
		return fmt.Errorf("subnet %s is not inside network %s", subnetCIDR, networkCIDR)
	}
	return nil
}
