// Package providers defines what every cloud must give Philotes — a private network, a K3s
// cluster from node pools, a load balancer in front of the ingress controller and an
// S3-compatible bucket for the lake — and the catalogue (regions, instance types with dated
// prices) that stack validation and the cost estimate read.
package providers

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// CloudProvider is one cloud. Create* register Pulumi resources; Regions and InstanceTypes are
// plain data, read before anything is created (validation, cost estimate).
type CloudProvider interface {
	// Name is the value of philotes:provider that selects this cloud.
	Name() string
	// Supported is false for a cloud whose resources are not written yet: its Regions() is
	// empty and config validation refuses it with Reason.
	Supported() bool
	// Regions lists where a stack may run (philotes:region). Empty when unsupported.
	Regions() []Region
	// InstanceTypes lists the machine sizes a node pool may name, with their dated prices.
	InstanceTypes() []InstanceType
	// FixedCosts are the monthly costs besides the nodes (load balancer, public IPs, object
	// storage) for a cluster of n nodes.
	FixedCosts(nodes int) []CostLine

	CreateNetwork(ctx *pulumi.Context, spec NetworkSpec) (*Network, error)
	CreateCluster(ctx *pulumi.Context, spec ClusterSpec, net *Network) (*Cluster, error)
	CreateLoadBalancer(ctx *pulumi.Context, spec LoadBalancerSpec, net *Network, cluster *Cluster) (*LoadBalancer, error)
	CreateObjectStorage(ctx *pulumi.Context, spec ObjectStorageSpec) (*ObjectStorage, error)
}

// Region is a place a stack can run.
type Region struct {
	Name string // the provider's own identifier, e.g. "fsn1"
	City string
	// NetworkZone groups regions that can share a private network (Hetzner: "eu-central").
	NetworkZone string
	// ObjectStorage is true where the provider sells S3-compatible storage in that region.
	ObjectStorage bool
}

// InstanceType is a machine size with the price the cost estimate uses.
type InstanceType struct {
	Name     string
	Arch     string // "x86" or "arm64"
	VCPU     int
	MemoryGB float64
	DiskGB   int
	// MonthlyEUR is the net monthly price (without VAT) in the EU regions.
	MonthlyEUR float64
	// PriceDate is when the price was read (YYYY-MM-DD); PriceSource where.
	PriceDate   string
	PriceSource string
}

// CostLine is one line of a monthly estimate.
type CostLine struct {
	Item       string  `json:"item"`
	Count      int     `json:"count"`
	UnitEUR    float64 `json:"unitEur"`
	PriceDate  string  `json:"priceDate"`
	Source     string  `json:"source"`
	Estimated  bool    `json:"estimated"`
	MonthlyEUR float64 `json:"monthlyEur"`
}

// NodePool is a group of identical nodes. The cluster starts with Min nodes; Max is the most
// the pool may grow to, and the budget check prices the pool at Max.
type NodePool struct {
	Name         string            `json:"name"`
	InstanceType string            `json:"instanceType"`
	Min          int               `json:"min"`
	Max          int               `json:"max"`
	Labels       map[string]string `json:"labels,omitempty"`
	// Taints as kubectl writes them: key=value:Effect.
	Taints []string `json:"taints,omitempty"`
}

// NetworkSpec is the private network of a stack.
type NetworkSpec struct {
	Name       string
	Region     string
	CIDR       string // e.g. 10.0.0.0/16
	SubnetCIDR string // e.g. 10.0.1.0/24, inside CIDR
	// AdminCIDRs may reach the Kubernetes API (6443); SSHCIDRs may reach port 22. Nothing
	// else is opened to the internet.
	AdminCIDRs []string
	SSHCIDRs   []string
	Labels     map[string]string
}

// ClusterSpec is the K3s cluster: one server (control plane) and agent pools.
type ClusterSpec struct {
	Name       string
	Region     string
	K3sVersion string
	Server     NodePool // Min = Max = 1
	Pools      []NodePool
	// SSHPublicKey is installed on every node (empty: the provider generates a key pair and
	// the program exports its private half as a secret).
	SSHPublicKey string
	Labels       map[string]string
}

// LoadBalancerSpec is the public entry point: HTTP and HTTPS to the ingress controller.
type LoadBalancerSpec struct {
	Name   string
	Region string
	Type   string
	// Ports maps a public port to the node port the ingress controller listens on.
	Ports  []PortMapping
	Labels map[string]string
}

// PortMapping is one load balancer service.
type PortMapping struct {
	Listen   int
	NodePort int
}

// ObjectStorageSpec is the lake's bucket.
type ObjectStorageSpec struct {
	Bucket          string
	Region          string
	AccessKeyID     pulumi.StringOutput // secret
	SecretAccessKey pulumi.StringOutput // secret
	// Protect keeps `pulumi destroy` from deleting the bucket.
	Protect bool
}

// Network is what CreateNetwork made.
type Network struct {
	ID         pulumi.IDOutput
	SubnetCIDR string
	Resources  []pulumi.Resource
}

// Cluster is what CreateCluster made.
type Cluster struct {
	// Kubeconfig for the admin, a secret.
	Kubeconfig pulumi.StringOutput
	// APIEndpoint is https://<public address>:6443.
	APIEndpoint     pulumi.StringOutput
	ServerPrivateIP string
	ServerPublicIP  pulumi.StringOutput
	// Ready resolves once the API answers; things installed in the cluster depend on it.
	Ready []pulumi.Resource
	// AgentIDs are the agent nodes (load balancer targets).
	Agents []pulumi.Resource
	// SSHPrivateKey is set (a secret) when the provider generated the key pair.
	SSHPrivateKey pulumi.StringOutput
	Generated     bool
}

// LoadBalancer is what CreateLoadBalancer made.
type LoadBalancer struct {
	IPv4 pulumi.StringOutput
}

// ObjectStorage is what CreateObjectStorage made.
type ObjectStorage struct {
	Bucket   pulumi.StringOutput
	Endpoint string
	Region   string
}

// FindInstanceType returns the named type from p's catalogue.
func FindInstanceType(p CloudProvider, name string) (InstanceType, bool) {
	for _, t := range p.InstanceTypes() {
		if t.Name == name {
			return t, true
		}
	}
	return InstanceType{}, false
}

// FindRegion returns the named region from p's catalogue.
func FindRegion(p CloudProvider, name string) (Region, bool) {
	for _, r := range p.Regions() {
		if r.Name == name {
			return r, true
		}
	}
	return Region{}, false
}

// InstanceTypeNames lists the catalogue's names, sorted, for error messages.
func InstanceTypeNames(p CloudProvider) string {
	var names []string
	for _, t := range p.InstanceTypes() {
		names = append(names, t.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// RegionNames lists the catalogue's regions, sorted, for error messages.
func RegionNames(p CloudProvider) string {
	var names []string
	for _, r := range p.Regions() {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Unsupported is a cloud whose resources are not written yet. It creates nothing: every
// Create* fails, Regions() is empty, and config validation refuses it with Reason.
type Unsupported struct {
	Provider string
	Reason   string
}

func (u Unsupported) Name() string                  { return u.Provider }
func (u Unsupported) Supported() bool               { return false }
func (u Unsupported) Regions() []Region             { return nil }
func (u Unsupported) InstanceTypes() []InstanceType { return nil }
func (u Unsupported) FixedCosts(int) []CostLine     { return nil }

func (u Unsupported) err() error {
	return fmt.Errorf("provider %q is not supported yet (%s); set philotes:provider to hetzner", u.Provider, u.Reason)
}

func (u Unsupported) CreateNetwork(*pulumi.Context, NetworkSpec) (*Network, error) {
	return nil, u.err()
}

func (u Unsupported) CreateCluster(*pulumi.Context, ClusterSpec, *Network) (*Cluster, error) {
	return nil, u.err()
}

func (u Unsupported) CreateLoadBalancer(*pulumi.Context, LoadBalancerSpec, *Network, *Cluster) (*LoadBalancer, error) {
	return nil, u.err()
}

func (u Unsupported) CreateObjectStorage(*pulumi.Context, ObjectStorageSpec) (*ObjectStorage, error) {
	return nil, u.err()
}

// Err is the refusal config validation reports for an unsupported provider.
func (u Unsupported) Err() error { return u.err() }
