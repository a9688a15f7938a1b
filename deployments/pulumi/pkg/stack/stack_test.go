package stack

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/philotes/philotes/deployments/pulumi/pkg/cluster"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers/hetzner"
)

var stacks = []string{"dev", "staging", "prod"}

// budgets are what the issue asks of each stack.
var budgets = map[string]float64{"dev": 30, "staging": 60, "prod": 150}

const (
	tServer   = "hcloud:index/server:Server"
	tFirewall = "hcloud:index/firewall:Firewall"
	tRelease  = "kubernetes:helm.sh/v3:Release"
)

// stackSpec is what a stack file asks for, read independently of Load.
type stackSpec struct {
	Region     string
	Server     providers.NodePool
	Pools      []providers.NodePool
	AdminCIDRs []string
	SSHCIDRs   []string
	Domain     string
	Vault      bool
	Workers    Workers
}

func readSpec(t *testing.T, raw map[string]interface{}) stackSpec {
	t.Helper()
	var s stackSpec
	conv := func(k string, into interface{}) {
		v, ok := raw["philotes:"+k]
		if !ok {
			return
		}
		b, _ := json.Marshal(v)
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	conv("region", &s.Region)
	conv("server", &s.Server)
	conv("nodePools", &s.Pools)
	conv("adminCidrs", &s.AdminCIDRs)
	conv("sshCidrs", &s.SSHCIDRs)
	conv("domain", &s.Domain)
	conv("vault", &s.Vault)
	conv("workers", &s.Workers)
	return s
}

func TestStacks(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			cfg, raw := stackFile(t, stack)
			spec := readSpec(t, raw)
			full, secretKeys := withSecrets(cfg)
			r := runProgram(t, stack, full, secretKeys)
			if r.err != nil {
				t.Fatalf("stack %s: %v", stack, r.err)
			}
			checkNetwork(t, r, stack, spec)
			serverIP, agentIPs := checkServers(t, r, stack, spec)
			checkCloudInit(t, r, stack, spec, serverIP, agentIPs)
			checkLoadBalancer(t, r, stack, spec)
			checkBucket(t, r, spec)
			checkReleases(t, r, spec)
			checkCost(t, r, stack)
			checkOutputs(t, r, spec)
		})
	}
}

func checkNetwork(t *testing.T, r runResult, stack string, spec stackSpec) {
	net := r.m.named(t, "hcloud:index/network:Network", "philotes-"+stack)
	if net.Inputs["ipRange"] != "10.0.0.0/16" {
		t.Errorf("network ipRange = %v", net.Inputs["ipRange"])
	}
	sub := r.m.named(t, "hcloud:index/networkSubnet:NetworkSubnet", "philotes-"+stack)
	if sub.Inputs["type"] != "cloud" || sub.Inputs["networkZone"] != "eu-central" || sub.Inputs["ipRange"] != "10.0.1.0/24" {
		t.Errorf("subnet = %v", sub.Inputs)
	}
	if fmt.Sprint(sub.Inputs["networkId"]) != net.ID {
		t.Errorf("subnet networkId %v, network id %s", sub.Inputs["networkId"], net.ID)
	}
	// Firewalls: exactly the rules the stack file asks for, nothing else.
	type rule struct {
		Port    string
		Sources []string
	}
	rulesOf := func(name string) []rule {
		fw := r.m.named(t, tFirewall, name)
		var out []rule
		rs, _ := fw.Inputs["rules"].([]interface{})
		for _, x := range rs {
			m := x.(map[string]interface{})
			if m["direction"] != "in" || m["protocol"] != "tcp" {
				t.Errorf("%s: rule %v is not inbound tcp", name, m)
			}
			var src []string
			for _, s := range m["sourceIps"].([]interface{}) {
				src = append(src, s.(string))
			}
			out = append(out, rule{Port: m["port"].(string), Sources: src})
		}
		return out
	}
	wantServer := []rule{{Port: "6443", Sources: spec.AdminCIDRs}}
	var wantAgent []rule
	if len(spec.SSHCIDRs) > 0 {
		wantServer = append(wantServer, rule{Port: "22", Sources: spec.SSHCIDRs})
		wantAgent = append(wantAgent, rule{Port: "22", Sources: spec.SSHCIDRs})
	}
	if got := rulesOf("philotes-" + stack + "-server"); !reflect.DeepEqual(got, wantServer) {
		t.Errorf("server firewall rules = %+v, want %+v", got, wantServer)
	}
	if got := rulesOf("philotes-" + stack + "-agent"); !reflect.DeepEqual(got, wantAgent) {
		t.Errorf("agent firewall rules = %+v, want %+v", got, wantAgent)
	}
	if n := len(r.m.ofType(tFirewall)); n != 2 {
		t.Errorf("%d firewalls, want 2", n)
	}
}

// checkServers returns the server's private address and each agent's.
func checkServers(t *testing.T, r runResult, stack string, spec stackSpec) (string, map[string]string) {
	servers := r.m.ofType(tServer)
	want := 1
	for _, p := range spec.Pools {
		want += p.Min
	}
	if len(servers) != want {
		t.Fatalf("%d servers, want %d (1 + the pools' min)", len(servers), want)
	}
	fwID := map[string]string{}
	for _, fw := range r.m.ofType(tFirewall) {
		fwID[fw.Name] = fw.ID
	}
	pg := r.m.named(t, "hcloud:index/placementGroup:PlacementGroup", "philotes-"+stack)
	if pg.Inputs["type"] != "spread" {
		t.Errorf("placement group type %v", pg.Inputs["type"])
	}
	subnet := netip.MustParsePrefix("10.0.1.0/24")
	seen := map[string]string{}
	agentIPs := map[string]string{}
	var serverIP string
	for _, s := range servers {
		in := s.Inputs
		if in["location"] != spec.Region {
			t.Errorf("%s location %v, want %s", s.Name, in["location"], spec.Region)
		}
		if in["image"] != hetzner.Image {
			t.Errorf("%s image %v", s.Name, in["image"])
		}
		if fmt.Sprint(in["placementGroupId"]) != pg.ID {
			t.Errorf("%s not in the placement group", s.Name)
		}
		nets := in["networks"].([]interface{})
		if len(nets) != 1 {
			t.Fatalf("%s: %d networks", s.Name, len(nets))
		}
		ip := nets[0].(map[string]interface{})["ip"].(string)
		if !subnet.Contains(netip.MustParseAddr(ip)) {
			t.Errorf("%s private address %s outside %s", s.Name, ip, subnet)
		}
		if other, dup := seen[ip]; dup {
			t.Errorf("%s and %s share %s", s.Name, other, ip)
		}
		seen[ip] = s.Name
		pub := in["publicNets"].([]interface{})[0].(map[string]interface{})
		if pub["ipv6Enabled"] != false || pub["ipv4Enabled"] != true {
			t.Errorf("%s public nets %v", s.Name, pub)
		}
		labels := in["labels"].(map[string]interface{})
		if labels["stack"] != stack || labels["app"] != "philotes" {
			t.Errorf("%s labels %v", s.Name, labels)
		}
		if !s.Secrets["userData"] {
			t.Errorf("%s: userData (it holds the join token) is not a secret", s.Name)
		}
		fws := in["firewallIds"].([]interface{})
		if s.Name == "philotes-"+stack+"-server" {
			serverIP = ip
			if in["serverType"] != spec.Server.InstanceType {
				t.Errorf("server type %v, want %s", in["serverType"], spec.Server.InstanceType)
			}
			if labels["philotes-role"] != "server" || len(fws) != 1 || fmt.Sprint(fws[0]) != fwID["philotes-"+stack+"-server"] {
				t.Errorf("server labels %v firewalls %v", labels, fws)
			}
			pip := r.m.named(t, "hcloud:index/primaryIp:PrimaryIp", "philotes-"+stack+"-server")
			if fmt.Sprint(pub["ipv4"]) != pip.ID {
				t.Errorf("server ipv4 %v, want the primary IP %s", pub["ipv4"], pip.ID)
			}
			continue
		}
		agentIPs[s.Name] = ip
		pool := labels["philotes-pool"]
		var p *providers.NodePool
		for i := range spec.Pools {
			if spec.Pools[i].Name == pool {
				p = &spec.Pools[i]
			}
		}
		if p == nil {
			t.Fatalf("%s: pool label %v names no pool", s.Name, pool)
		}
		if in["serverType"] != p.InstanceType {
			t.Errorf("%s type %v, want %s", s.Name, in["serverType"], p.InstanceType)
		}
		if labels["philotes-role"] != "agent" || len(fws) != 1 || fmt.Sprint(fws[0]) != fwID["philotes-"+stack+"-agent"] {
			t.Errorf("%s labels %v firewalls %v", s.Name, labels, fws)
		}
	}
	if serverIP == "" {
		t.Fatal("no server node")
	}
	return serverIP, agentIPs
}

func k3sConfigOf(t *testing.T, cc *cluster.CloudConfig) cluster.K3sConfig {
	t.Helper()
	f, ok := cc.File(cluster.K3sConfigPath)
	if !ok {
		t.Fatal("cloud-init writes no K3s config")
	}
	var k cluster.K3sConfig
	if err := yaml.Unmarshal([]byte(f.Content), &k); err != nil {
		t.Fatalf("K3s config is not YAML: %v", err)
	}
	return k
}

func checkCloudInit(t *testing.T, r runResult, stack string, spec stackSpec, serverIP string, agentIPs map[string]string) {
	tokens := map[string]string{}
	for _, p := range r.m.ofType("random:index/randomPassword:RandomPassword") {
		tokens[p.Name] = "secret-" + p.Name + "-" + p.ID
	}
	token, agentToken := tokens["philotes-"+stack+"-k3s-token"], tokens["philotes-"+stack+"-k3s-agent-token"]
	if token == "" || agentToken == "" || token == agentToken {
		t.Fatalf("join tokens %q %q", token, agentToken)
	}
	version := cluster.DefaultK3sVersion
	for _, s := range r.m.ofType(tServer) {
		cc, err := cluster.ParseCloudInit(s.Inputs["userData"].(string))
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		script, ok := cc.File(cluster.InstallPath)
		if !ok || !contains(script.Content, "INSTALL_K3S_VERSION='"+version+"'", "/k3s-io/k3s/"+strings.ReplaceAll(version, "+", "%2B")+"/install.sh") {
			t.Errorf("%s: installer does not pin %s:\n%s", s.Name, version, script.Content)
		}
		if len(cc.RunCmd) == 0 || cc.RunCmd[len(cc.RunCmd)-1][0] != cluster.InstallPath {
			t.Errorf("%s: runcmd %v does not run the installer last", s.Name, cc.RunCmd)
		}
		k := k3sConfigOf(t, cc)
		labels := s.Inputs["labels"].(map[string]interface{})
		if labels["philotes-role"] == "server" {
			if k.Token != token || k.AgentToken != agentToken || k.NodeIP != serverIP || k.Server != "" {
				t.Errorf("server K3s config %+v", k)
			}
			if !contains(script.Content, "INSTALL_K3S_EXEC='server'") {
				t.Error("server installs no server")
			}
			if len(k.TLSSAN) == 0 || netip.MustParseAddr(k.TLSSAN[0]).IsPrivate() {
				t.Errorf("server certificate names %v lack the public address", k.TLSSAN)
			}
			if !reflect.DeepEqual(k.NodeTaint, spec.Server.Taints) {
				t.Errorf("server taints %v, want %v", k.NodeTaint, spec.Server.Taints)
			}
			for _, ca := range cluster.CANames {
				key, ok := cc.File(cluster.ServerTLSDir + "/" + ca + ".key")
				if !ok || key.Permissions != "0600" || !strings.Contains(key.Content, "PRIVATE KEY") {
					t.Errorf("server cloud-init lacks %s.key (0600): %+v", ca, key)
				}
			}
			continue
		}
		if k.Server != "https://"+serverIP+":6443" {
			t.Errorf("%s joins %q, want the server's private address %s", s.Name, k.Server, serverIP)
		}
		if k.Token != agentToken {
			t.Errorf("%s joins with %q, want the agent token", s.Name, k.Token)
		}
		if k.NodeIP != agentIPs[s.Name] {
			t.Errorf("%s node-ip %s, its network address %s", s.Name, k.NodeIP, agentIPs[s.Name])
		}
		if strings.Contains(s.Inputs["userData"].(string), token) {
			t.Errorf("%s: an agent's cloud-init holds the server token", s.Name)
		}
		if _, ok := cc.File(cluster.ServerTLSDir + "/client-ca.key"); ok {
			t.Errorf("%s: an agent's cloud-init holds a CA key", s.Name)
		}
		for _, p := range spec.Pools {
			if p.Name != labels["philotes-pool"] {
				continue
			}
			var want []string
			for k, v := range p.Labels {
				want = append(want, k+"="+v)
			}
			sort.Strings(want)
			if !reflect.DeepEqual(k.NodeLabel, want) {
				t.Errorf("%s node labels %v, want %v", s.Name, k.NodeLabel, want)
			}
		}
	}
}

func checkLoadBalancer(t *testing.T, r runResult, stack string, spec stackSpec) {
	lb := r.m.named(t, "hcloud:index/loadBalancer:LoadBalancer", "philotes-"+stack)
	if lb.Inputs["loadBalancerType"] != "lb11" || lb.Inputs["location"] != spec.Region {
		t.Errorf("load balancer %v", lb.Inputs)
	}
	lbn := r.m.named(t, "hcloud:index/loadBalancerNetwork:LoadBalancerNetwork", "philotes-"+stack)
	if lbn.Inputs["ip"] != "10.0.1.254" {
		t.Errorf("load balancer private address %v", lbn.Inputs["ip"])
	}
	targets := r.m.ofType("hcloud:index/loadBalancerTarget:LoadBalancerTarget")
	agents := map[string]bool{}
	for _, s := range r.m.ofType(tServer) {
		if s.Inputs["labels"].(map[string]interface{})["philotes-role"] == "agent" {
			agents[s.ID] = true
		}
	}
	if len(targets) != len(agents) {
		t.Errorf("%d targets for %d agents", len(targets), len(agents))
	}
	for _, tg := range targets {
		if !agents[fmt.Sprint(tg.Inputs["serverId"])] || tg.Inputs["usePrivateIp"] != true || fmt.Sprint(tg.Inputs["loadBalancerId"]) != lb.ID {
			t.Errorf("target %v", tg.Inputs)
		}
	}
	got := map[string]string{}
	for _, s := range r.m.ofType("hcloud:index/loadBalancerService:LoadBalancerService") {
		if s.Inputs["protocol"] != "tcp" || s.Inputs["proxyprotocol"] != true || s.Inputs["loadBalancerId"] != lb.ID {
			t.Errorf("service %v", s.Inputs)
		}
		got[fmt.Sprint(s.Inputs["listenPort"])] = fmt.Sprint(s.Inputs["destinationPort"])
	}
	if want := map[string]string{"80": "30080", "443": "30443"}; !reflect.DeepEqual(got, want) {
		t.Errorf("load balancer services %v, want %v", got, want)
	}
}

func checkBucket(t *testing.T, r runResult, spec stackSpec) {
	prov := r.m.named(t, "pulumi:providers:aws", "lake-s3")
	eps := prov.Inputs["endpoints"]
	// Provider inputs arrive JSON-encoded.
	if !strings.Contains(fmt.Sprint(eps), "https://"+spec.Region+".your-objectstorage.com") {
		t.Errorf("S3 endpoint %v, want %s's", eps, spec.Region)
	}
	if fmt.Sprint(prov.Inputs["s3UsePathStyle"]) != "true" || prov.Inputs["region"] != spec.Region {
		t.Errorf("S3 provider %v", prov.Inputs)
	}
	if !prov.Secrets["accessKey"] || !prov.Secrets["secretKey"] {
		t.Errorf("S3 keys are not secrets: %v", prov.Secrets)
	}
	b := r.m.named(t, "aws:s3/bucketV2:BucketV2", "lake")
	if b.Inputs["bucket"] != r.res.Config.Bucket || !strings.HasPrefix(r.res.Config.Bucket, "philotes-") {
		t.Errorf("bucket %v, config %s", b.Inputs["bucket"], r.res.Config.Bucket)
	}
}

func dig(m interface{}, path ...string) interface{} {
	for _, p := range path {
		mm, ok := m.(map[string]interface{})
		if !ok {
			return nil
		}
		m = mm[p]
	}
	return m
}

func checkReleases(t *testing.T, r runResult, spec stackSpec) {
	rel := map[string]created{}
	for _, x := range r.m.ofType(tRelease) {
		rel[x.Inputs["name"].(string)] = x
	}
	want := map[string]cluster.Chart{
		"cert-manager": cluster.CertManager, "ingress-nginx": cluster.IngressNginx,
		"kube-prometheus-stack": cluster.KubePrometheusStack, "keda": cluster.KEDA,
	}
	if spec.Vault {
		want["vault"] = cluster.Vault
	}
	if len(rel) != len(want)+1 {
		t.Errorf("releases %v, want %d", keys(rel), len(want)+1)
	}
	for name, c := range want {
		x, ok := rel[name]
		if !ok {
			t.Errorf("no %s release", name)
			continue
		}
		if x.Inputs["chart"] != c.Name || x.Inputs["version"] != c.Version || dig(x.Inputs, "repositoryOpts", "repo") != c.Repo {
			t.Errorf("%s release %v", name, x.Inputs)
		}
	}
	ing := rel["ingress-nginx"].Inputs
	if fmt.Sprint(dig(ing, "values", "controller", "service", "nodePorts", "http")) != "30080" ||
		fmt.Sprint(dig(ing, "values", "controller", "service", "nodePorts", "https")) != "30443" ||
		dig(ing, "values", "controller", "config", "use-proxy-protocol") != "true" {
		t.Errorf("ingress-nginx values %v", ing["values"])
	}
	kps := rel["kube-prometheus-stack"]
	if hosts := dig(kps.Inputs, "values", "grafana", "ingress", "hosts"); fmt.Sprint(hosts) != "[grafana."+spec.Domain+"]" {
		t.Errorf("grafana hosts %v", hosts)
	}
	if !kps.Secrets["values"] {
		t.Error("kube-prometheus-stack values (Grafana's password) are not secret")
	}
	ph := rel["philotes"].Inputs
	chart, _ := ph["chart"].(string)
	if !filepath.IsAbs(chart) || !strings.HasSuffix(chart, filepath.Join("kubernetes", "helm", "philotes")) {
		t.Errorf("philotes chart %q", chart)
	}
	if _, err := os.Stat(filepath.Join(chart, "Chart.yaml")); err != nil {
		t.Errorf("philotes chart: %v", err)
	}
	bucket := r.res.Config.Bucket
	checks := map[string]interface{}{
		"global.lake.s3Endpoint":                              "https://" + spec.Region + ".your-objectstorage.com",
		"global.lake.s3Region":                                spec.Region,
		"global.lake.warehouse":                               "s3://" + bucket + "/warehouse",
		"philotes-api.ingress.host":                           "api." + spec.Domain,
		"philotes-api.ingress.enabled":                        true,
		"philotes-dashboard.ingress.host":                     "app." + spec.Domain,
		"philotes-worker.worker.autoscaling.keda.minReplicas": float64(spec.Workers.MinReplicas),
		"philotes-worker.worker.autoscaling.keda.maxReplicas": float64(spec.Workers.MaxReplicas),
	}
	for path, want := range checks {
		got := dig(ph["values"], strings.Split(path, ".")...)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("philotes values %s = %v, want %v", path, got, want)
		}
	}
	sec := r.m.named(t, "kubernetes:core/v1:Secret", "philotes-"+r.res.Config.Stack+"-philotes")
	sd, _ := sec.Inputs["stringData"].(map[string]interface{})
	for _, k := range []string{"buffer-url", "encryption-key", "s3-access-key-id", "s3-secret-access-key"} {
		if sd[k] == nil || sd[k] == "" {
			t.Errorf("philotes Secret lacks %s", k)
		}
	}
	if key, _ := sd["encryption-key"].(string); len(key) != 64 || strings.Trim(key, "0123456789abcdef") != "" {
		t.Errorf("encryption-key %q is not 32 bytes in hex", key)
	}
	if sd["s3-secret-access-key"] != testSecrets["philotes:s3SecretAccessKey"] || !sec.Secrets["stringData"] {
		t.Errorf("philotes Secret's S3 key is not the config secret, or not secret")
	}
}

func keys[T any](m map[string]T) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func checkCost(t *testing.T, r runResult, stack string) {
	e := r.res.Config.Estimate
	if e.MonthlyAtMaxEUR > budgets[stack] || e.BudgetEUR != budgets[stack] || !e.WithinBudget {
		t.Errorf("%s costs €%.2f at max, budget €%.2f (issue: €%.0f)", stack, e.MonthlyAtMaxEUR, e.BudgetEUR, budgets[stack])
	}
	if e.MonthlyAtMinEUR <= 0 || e.MonthlyAtMinEUR > e.MonthlyAtMaxEUR {
		t.Errorf("estimate min €%.2f max €%.2f", e.MonthlyAtMinEUR, e.MonthlyAtMaxEUR)
	}
	// The lines at min price exactly the servers made, from the catalogue.
	servers := r.m.ofType(tServer)
	var want float64
	for _, s := range servers {
		it, ok := providers.FindInstanceType(hetzner.New(), s.Inputs["serverType"].(string))
		if !ok {
			t.Fatalf("%s: type %v not in the catalogue", s.Name, s.Inputs["serverType"])
		}
		want += it.MonthlyEUR
	}
	want += float64(len(servers))*hetzner.PrimaryIPv4MonthlyEUR + hetzner.LoadBalancerMonthlyEUR + hetzner.ObjectStorageBaseEUR
	if d := want - e.MonthlyAtMinEUR; d > 0.011 || d < -0.011 {
		t.Errorf("estimate at min €%.2f, the servers made cost €%.2f", e.MonthlyAtMinEUR, want)
	}
	if len(e.PriceDates) == 0 || len(e.Sources) == 0 {
		t.Error("estimate has no price date or source")
	}
	var exported Estimate
	if err := json.Unmarshal([]byte(r.outs["costEstimate"].Value.(string)), &exported); err != nil || exported.MonthlyAtMaxEUR != e.MonthlyAtMaxEUR {
		t.Errorf("costEstimate output %v (%v)", r.outs["costEstimate"].Value, err)
	}
}

// secretValues are every secret the program holds: the config secrets and what it made.
func secretValues(r runResult) []string {
	var out []string
	for _, v := range testSecrets {
		out = append(out, v)
	}
	for _, p := range r.m.ofType("random:index/randomPassword:RandomPassword") {
		out = append(out, "secret-"+p.Name+"-"+p.ID)
	}
	for _, id := range r.m.ofType("random:index/randomId:RandomId") {
		var n int
		fmt.Sscanf(id.ID, "%d", &n)
		out = append(out, fmt.Sprintf("%064x", 0xc0ffee+n-1000))
	}
	for _, k := range r.m.ofType("tls:index/privateKey:PrivateKey") {
		out = append(out, "key-"+k.Name, "ssh-"+k.Name)
	}
	return out
}

func checkOutputs(t *testing.T, r runResult, spec stackSpec) {
	for _, k := range []string{"kubeconfig", "apiUrl", "dashboardUrl", "grafanaUrl", "bucket", "costEstimate", "monthlyCostEur"} {
		if _, ok := r.outs[k]; !ok {
			t.Errorf("no %s output", k)
		}
	}
	mustBeSecret := map[string]bool{"kubeconfig": true, "grafanaAdminPassword": true, "sshPrivateKey": true}
	secrets := secretValues(r)
	for k, o := range r.outs {
		if mustBeSecret[k] {
			if !o.Secret {
				t.Errorf("output %s is not a secret", k)
			}
			continue
		}
		if o.Secret {
			t.Errorf("output %s is secret, expected plain", k)
		}
		text := fmt.Sprint(o.Value)
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("plain output %s holds a secret (%s…)", k, s[:8])
			}
		}
	}
	if r.outs["apiUrl"].Value != "https://api."+spec.Domain || r.outs["grafanaUrl"].Value != "https://grafana."+spec.Domain || r.outs["dashboardUrl"].Value != "https://app."+spec.Domain {
		t.Errorf("urls %v %v %v", r.outs["apiUrl"].Value, r.outs["dashboardUrl"].Value, r.outs["grafanaUrl"].Value)
	}
	if r.outs["bucket"].Value != r.res.Config.Bucket {
		t.Errorf("bucket output %v", r.outs["bucket"].Value)
	}
	// The kubeconfig reaches the server's public address with the cluster's CA and the
	// admin certificate.
	var kc struct {
		Clusters []struct {
			Cluster map[string]string `yaml:"cluster"`
		} `yaml:"clusters"`
		Users []struct {
			User map[string]string `yaml:"user"`
		} `yaml:"users"`
	}
	if err := yaml.Unmarshal([]byte(r.outs["kubeconfig"].Value.(string)), &kc); err != nil || len(kc.Clusters) != 1 || len(kc.Users) != 1 {
		t.Fatalf("kubeconfig: %v", err)
	}
	if want := r.outs["kubernetesApi"].Value; kc.Clusters[0].Cluster["server"] != want || !strings.HasSuffix(fmt.Sprint(want), ":6443") {
		t.Errorf("kubeconfig server %v, want %v", kc.Clusters[0].Cluster["server"], want)
	}
	ca, _ := base64.StdEncoding.DecodeString(kc.Clusters[0].Cluster["certificate-authority-data"])
	if !strings.Contains(string(ca), "cert-philotes-"+r.res.Config.Stack+"-server-ca") {
		t.Errorf("kubeconfig CA is not server-ca: %s", ca)
	}
	cert, _ := base64.StdEncoding.DecodeString(kc.Users[0].User["client-certificate-data"])
	if !strings.Contains(string(cert), "-admin") {
		t.Errorf("kubeconfig client certificate %s", cert)
	}
}
