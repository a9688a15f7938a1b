// Package stack is the Pulumi program: it reads and validates the stack's config, prices it
// against its budget, asks the chosen cloud for a network, a K3s cluster, a load balancer
// and a bucket, installs the platform and Philotes in the cluster, and exports the outputs.
package stack

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/philotes/philotes/deployments/pulumi/pkg/cluster"
	"github.com/philotes/philotes/deployments/pulumi/pkg/network"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers/hetzner"
	"github.com/philotes/philotes/deployments/pulumi/pkg/storage"
)

// Namespace is the config namespace of this project's keys (philotes:region, ...).
const Namespace = "philotes"

// Keys every stack may set. A stack file naming any other philotes: key is refused.
var Keys = []string{
	"provider", "region", "budgetEur", "allowOverBudget", "k3sVersion", "server", "nodePools",
	"networkCidr", "subnetCidr", "adminCidrs", "sshCidrs", "sshPublicKey", "domain", "acmeEmail",
	"bucket", "objectStorageRegion", "protectData", "vault", "catalogUri", "chartPath",
	"workers", "ingressReplicas", "prometheusRetention",
	// secrets: `pulumi config set --secret`
	"s3AccessKeyId", "s3SecretAccessKey", "bufferUrl",
}

// SecretKeys must be set, and set as secrets.
var SecretKeys = []string{"s3AccessKeyId", "s3SecretAccessKey", "bufferUrl"}

// secretHelp tells where each secret comes from.
var secretHelp = map[string]string{
	"s3AccessKeyId":     "create an Object Storage access key in the Hetzner Cloud Console (Security → S3 credentials)",
	"s3SecretAccessKey": "it is shown once, next to the access key, when the key is created",
	"bufferUrl":         "the PostgreSQL URL of Philotes' control database (postgres://user:password@host:5432/philotes)",
}

// Workers bounds the worker deployment's KEDA autoscaling.
type Workers struct {
	MinReplicas int `json:"minReplicas"`
	MaxReplicas int `json:"maxReplicas"`
}

// Config is a validated stack config.
type Config struct {
	Stack               string
	Provider            providers.CloudProvider
	Region              string
	BudgetEUR           float64
	AllowOverBudget     bool
	K3sVersion          string
	Server              providers.NodePool
	Pools               []providers.NodePool
	NetworkCIDR         string
	SubnetCIDR          string
	AdminCIDRs          []string
	SSHCIDRs            []string
	SSHPublicKey        string
	Domain              string
	ACMEEmail           string
	Bucket              string
	ObjectStorageRegion string
	ProtectData         bool
	Vault               bool
	CatalogURI          string
	ChartPath           string // absolute
	Workers             Workers
	IngressReplicas     int
	PrometheusRetention string
	Estimate            Estimate
}

// Source is where config comes from: Pulumi's config (key "namespace:key"), whether a key
// was set as a secret, and the environment.
type Source struct {
	Get      func(key string) (string, bool)
	IsSecret func(key string) bool
	Env      func(key string) (string, bool)
	Stack    string
	// Root is the project directory (where Pulumi.yaml is); chartPath is relative to it.
	Root string
}

// Providers are the clouds philotes:provider can name.
var Providers = map[string]func() providers.CloudProvider{}

// RegisterProvider adds a cloud (done in registry.go).
func RegisterProvider(name string, mk func() providers.CloudProvider) { Providers[name] = mk }

func providerNames() string {
	var names []string
	for n := range Providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

var (
	labelKeyRE   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValueRE = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
	taintRE      = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?(=[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?:(NoSchedule|PreferNoSchedule|NoExecute)$`)
	poolNameRE   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)
	domainRE     = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}$`)
	retentionRE  = regexp.MustCompile(`^[0-9]+[hdwy]$`)
)

// DefaultChartPath is the Philotes umbrella chart, relative to the project directory.
const DefaultChartPath = "../kubernetes/helm/philotes"

// MaxSpreadServers is how many servers one Hetzner spread placement group takes.
const MaxSpreadServers = 10

// Load reads and validates the stack config. Every problem found is reported, each naming
// its key and the fix.
func Load(src Source) (*Config, error) {
	var errs []error
	bad := func(format string, a ...interface{}) { errs = append(errs, fmt.Errorf(format, a...)) }
	get := func(key string) (string, bool) {
		v, ok := src.Get(Namespace + ":" + key)
		if ok && strings.TrimSpace(v) == "" {
			return "", false
		}
		return v, ok
	}
	getObject := func(key string, into interface{}) bool {
		v, ok := get(key)
		if !ok {
			return false
		}
		if err := json.Unmarshal([]byte(v), into); err != nil {
			bad("philotes:%s: %v; see Pulumi.dev.yaml for its shape", key, err)
			return false
		}
		return true
	}
	getBool := func(key string) bool {
		v, ok := get(key)
		if !ok {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("philotes:%s: %q is not true or false", key, v)
		}
		return b
	}

	c := &Config{Stack: src.Stack}

	// The cloud.
	provName, ok := get("provider")
	if !ok {
		provName = "hetzner"
	}
	mk, known := Providers[provName]
	if !known {
		bad("philotes:provider: %q is not a provider Philotes knows; set it to one of %s", provName, providerNames())
		return nil, errors.Join(errs...)
	}
	c.Provider = mk()
	if u, isUnsupported := c.Provider.(providers.Unsupported); isUnsupported {
		return nil, fmt.Errorf("philotes:provider: %w", u.Err())
	}
	prov := c.Provider

	// Where.
	c.Region, ok = get("region")
	if !ok {
		bad("philotes:region is not set; set it to one of %s (pulumi config set philotes:region %s)", providers.RegionNames(prov), prov.Regions()[0].Name)
	} else if _, found := providers.FindRegion(prov, c.Region); !found {
		bad("philotes:region: %q is not a %s region; set it to one of %s", c.Region, prov.Name(), providers.RegionNames(prov))
	}
	var osSet bool
	c.ObjectStorageRegion, osSet = get("objectStorageRegion")
	if !osSet {
		c.ObjectStorageRegion = c.Region
	}
	// (An unknown philotes:region is reported once, above.)
	if r, found := providers.FindRegion(prov, c.ObjectStorageRegion); c.ObjectStorageRegion != "" && (osSet || found) && (!found || !r.ObjectStorage) {
		bad("philotes:objectStorageRegion: %q has no %s object storage; set it to one of %s", c.ObjectStorageRegion, prov.Name(), providers.RegionNames(prov))
	}

	// K3s.
	if c.K3sVersion, ok = get("k3sVersion"); !ok {
		c.K3sVersion = cluster.DefaultK3sVersion
	} else if !cluster.ValidK3sVersion(c.K3sVersion) {
		bad("philotes:k3sVersion: %q is not a K3s release; pin one exactly, e.g. %s", c.K3sVersion, cluster.DefaultK3sVersion)
	}

	// Machines.
	checkType := func(key, name string) {
		if name == "" {
			bad("%s is not set; set it to one of %s", key, providers.InstanceTypeNames(prov))
			return
		}
		if _, found := providers.FindInstanceType(prov, name); found {
			return
		}
		if repl, retired := hetzner.ReplacementFor(name); retired && prov.Name() == "hetzner" {
			bad("%s: %q was retired by Hetzner and cannot be ordered; use %s", key, name, repl)
			return
		}
		bad("%s: %q is not a %s instance type; use one of %s", key, name, prov.Name(), providers.InstanceTypeNames(prov))
	}
	checkLabelsTaints := func(key string, p providers.NodePool) {
		for k, v := range p.Labels {
			if !labelKeyRE.MatchString(k) || !labelValueRE.MatchString(v) {
				bad("%s.labels: %q=%q is not a valid Kubernetes label; use letters, digits, '-', '_' and '.' (63 at most)", key, k, v)
			}
		}
		for _, t := range p.Taints {
			if !taintRE.MatchString(t) {
				bad("%s.taints: %q is not a taint; write key=value:Effect with Effect NoSchedule, PreferNoSchedule or NoExecute", key, t)
			}
		}
	}
	if !getObject("server", &c.Server) {
		if _, set := get("server"); !set {
			bad("philotes:server is not set; set it to {instanceType: cx23} (one of %s)", providers.InstanceTypeNames(prov))
		}
	} else {
		checkType("philotes:server.instanceType", c.Server.InstanceType)
		checkLabelsTaints("philotes:server", c.Server)
	}
	c.Server.Name, c.Server.Min, c.Server.Max = "server", 1, 1

	if !getObject("nodePools", &c.Pools) {
		if _, set := get("nodePools"); !set {
			bad("philotes:nodePools is not set; give at least one pool, e.g. [{name: workers, instanceType: cx33, min: 1, max: 2}]")
		}
	}
	seen := map[string]bool{}
	agentsAtMin, nodesAtMax := 0, 1
	for i, p := range c.Pools {
		key := fmt.Sprintf("philotes:nodePools[%d]", i)
		if !poolNameRE.MatchString(p.Name) {
			bad("%s.name: %q must be 1-20 lower-case letters, digits or '-', starting with a letter", key, p.Name)
		} else if seen[p.Name] {
			bad("%s.name: %q is used by another pool; give each pool its own name", key, p.Name)
		}
		seen[p.Name] = true
		checkType(key+".instanceType", p.InstanceType)
		checkLabelsTaints(key, p)
		switch {
		case p.Min < 0:
			bad("%s (%q): min %d is negative; set min to 0 or more", key, p.Name, p.Min)
		case p.Max < 1:
			bad("%s (%q): max %d must be at least 1", key, p.Name, p.Max)
		case p.Min > p.Max:
			bad("%s (%q): min %d is greater than max %d; set min <= max", key, p.Name, p.Min, p.Max)
		}
		agentsAtMin += p.Min
		nodesAtMax += p.Max
	}
	if len(c.Pools) > 0 && agentsAtMin == 0 {
		bad("philotes:nodePools: every pool has min 0; the load balancer needs at least one agent, so give one pool min >= 1")
	}
	if prov.Name() == "hetzner" && nodesAtMax > MaxSpreadServers {
		bad("philotes:nodePools: %d servers at the pools' max, more than a Hetzner spread placement group holds (%d); lower the pools' max", nodesAtMax, MaxSpreadServers)
	}

	// Network and firewall.
	if c.NetworkCIDR, ok = get("networkCidr"); !ok {
		c.NetworkCIDR = network.DefaultCIDR
	}
	if c.SubnetCIDR, ok = get("subnetCidr"); !ok {
		c.SubnetCIDR = network.DefaultSubnetCIDR
	}
	if err := network.Contains(c.NetworkCIDR, c.SubnetCIDR); err != nil {
		bad("philotes:subnetCidr: %v; put the subnet inside philotes:networkCidr", err)
	}
	if !getObject("adminCidrs", &c.AdminCIDRs) || len(c.AdminCIDRs) == 0 {
		bad("philotes:adminCidrs is not set; list the addresses that may reach the Kubernetes API, e.g. [\"203.0.113.7/32\"] (your own: curl -s https://ifconfig.me)")
	} else if err := network.ValidateCIDRs("philotes:adminCidrs", c.AdminCIDRs, false); err != nil {
		errs = append(errs, err)
	}
	if getObject("sshCidrs", &c.SSHCIDRs) {
		if err := network.ValidateCIDRs("philotes:sshCidrs", c.SSHCIDRs, false); err != nil {
			errs = append(errs, err)
		}
	}
	c.SSHPublicKey, _ = get("sshPublicKey")
	if c.SSHPublicKey != "" && !strings.HasPrefix(c.SSHPublicKey, "ssh-") && !strings.HasPrefix(c.SSHPublicKey, "ecdsa-") {
		bad("philotes:sshPublicKey: not an OpenSSH public key; paste the content of ~/.ssh/id_ed25519.pub (or leave it unset to have one generated)")
	}

	// Names.
	if c.Domain, ok = get("domain"); !ok {
		bad("philotes:domain is not set; set the DNS zone the hosts api., app. and grafana. go under, e.g. pulumi config set philotes:domain philotes.example.com")
	} else if !domainRE.MatchString(c.Domain) {
		bad("philotes:domain: %q is not a DNS name; set e.g. philotes.example.com", c.Domain)
	}
	if c.ACMEEmail, ok = get("acmeEmail"); !ok {
		bad("philotes:acmeEmail is not set; set the address Let's Encrypt writes to about your certificates")
	} else if _, err := mail.ParseAddress(c.ACMEEmail); err != nil {
		bad("philotes:acmeEmail: %q is not an e-mail address", c.ACMEEmail)
	}
	if c.Bucket, ok = get("bucket"); !ok {
		sum := sha256.Sum256([]byte(c.Domain + "/" + src.Stack))
		c.Bucket = "philotes-" + src.Stack + "-" + hex.EncodeToString(sum[:])[:8]
	}
	if err := storage.ValidBucketName(c.Bucket); err != nil {
		bad("philotes:bucket: %v; bucket names are global on Hetzner, so add something of your own", err)
	}
	if c.CatalogURI, ok = get("catalogUri"); !ok {
		c.CatalogURI = "http://lakekeeper:8181/catalog"
	}
	c.ProtectData = getBool("protectData")
	c.Vault = getBool("vault")
	c.AllowOverBudget = getBool("allowOverBudget")

	// Sizes in the cluster.
	c.Workers = Workers{MinReplicas: 1, MaxReplicas: 2}
	if getObject("workers", &c.Workers) {
		if c.Workers.MinReplicas < 0 || c.Workers.MaxReplicas < 1 || c.Workers.MinReplicas > c.Workers.MaxReplicas {
			bad("philotes:workers: minReplicas %d, maxReplicas %d; need 0 <= minReplicas <= maxReplicas and maxReplicas >= 1", c.Workers.MinReplicas, c.Workers.MaxReplicas)
		}
	}
	c.IngressReplicas = 1
	if v, set := get("ingressReplicas"); set {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			bad("philotes:ingressReplicas: %q is not a number >= 1", v)
		}
		c.IngressReplicas = n
	}
	if c.PrometheusRetention, ok = get("prometheusRetention"); !ok {
		c.PrometheusRetention = "7d"
	} else if !retentionRE.MatchString(c.PrometheusRetention) {
		bad("philotes:prometheusRetention: %q is not a duration such as 7d or 12h", c.PrometheusRetention)
	}

	// The chart.
	chart, ok := get("chartPath")
	if !ok {
		chart = DefaultChartPath
	}
	if !filepath.IsAbs(chart) {
		chart = filepath.Join(src.Root, chart)
	}
	c.ChartPath = filepath.Clean(chart)
	if _, err := os.Stat(filepath.Join(c.ChartPath, "Chart.yaml")); err != nil {
		bad("philotes:chartPath: no Chart.yaml in %s; point it at the Philotes umbrella chart (default %s, relative to Pulumi.yaml)", c.ChartPath, DefaultChartPath)
	}

	// Secrets: ours must be set, and set as secrets; the cloud's token too.
	for _, k := range SecretKeys {
		full := Namespace + ":" + k
		if _, set := get(k); !set {
			bad("%s is not set; %s, then run: pulumi config set --secret %s <value>", full, secretHelp[k], full)
		} else if !src.IsSecret(full) {
			bad("%s is stored in plain text in Pulumi.%s.yaml; remove it and run: pulumi config set --secret %s <value>", full, src.Stack, full)
		}
	}
	if prov.Name() == "hetzner" {
		_, inConfig := src.Get("hcloud:token")
		env, inEnv := src.Env("HCLOUD_TOKEN")
		switch {
		case inConfig && !src.IsSecret("hcloud:token"):
			bad("hcloud:token is stored in plain text in Pulumi.%s.yaml; remove it and run: pulumi config set --secret hcloud:token <token>", src.Stack)
		case !inConfig && (!inEnv || env == ""):
			bad("hcloud:token is not set (nor HCLOUD_TOKEN); create a Read & Write API token in the Hetzner Cloud Console (Security → API tokens) and run: pulumi config set --secret hcloud:token <token>")
		}
	}

	// Money.
	budget, set := get("budgetEur")
	if !set {
		bad("philotes:budgetEur is not set; set the monthly budget in euros, e.g. pulumi config set philotes:budgetEur 30")
	} else if b, err := strconv.ParseFloat(budget, 64); err != nil || b <= 0 {
		bad("philotes:budgetEur: %q is not a positive number of euros", budget)
	} else {
		c.BudgetEUR = b
	}
	if len(errs) == 0 {
		c.Estimate = EstimateCost(prov, c.Server, c.Pools, c.BudgetEUR)
		if !c.Estimate.WithinBudget && !c.AllowOverBudget {
			bad("philotes:budgetEur: the estimate is €%.2f a month with every pool at its max, over the budget of €%.2f; lower philotes:nodePools' max or instance types, raise philotes:budgetEur, or set philotes:allowOverBudget true",
				c.Estimate.MonthlyAtMaxEUR, c.BudgetEUR)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}
