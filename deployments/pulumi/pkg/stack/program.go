package stack

import (
	"encoding/json"
	"os"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/philotes/philotes/deployments/pulumi/pkg/cluster"
	"github.com/philotes/philotes/deployments/pulumi/pkg/network"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers"
)

// Result is what Deploy made: the stack outputs and what the tests look into.
type Result struct {
	Config  *Config
	Outputs map[string]pulumi.Input
	Cluster *providers.Cluster
	Addons  *cluster.Addons
}

// SourceFromContext reads config from the running Pulumi program.
func SourceFromContext(ctx *pulumi.Context) Source {
	root := ctx.RootDirectory()
	if root == "" {
		root, _ = os.Getwd()
	}
	return Source{
		Get:      ctx.GetConfig,
		IsSecret: ctx.IsConfigSecret,
		Env:      os.LookupEnv,
		Stack:    ctx.Stack(),
		Root:     root,
	}
}

// Run is the Pulumi program (cmd/main.go).
func Run(ctx *pulumi.Context) error {
	res, err := Deploy(ctx)
	if err != nil {
		return err
	}
	for k, v := range res.Outputs {
		ctx.Export(k, v)
	}
	return nil
}

// Deploy validates the config, then creates everything and returns the outputs.
func Deploy(ctx *pulumi.Context) (*Result, error) {
	cfg, err := Load(SourceFromContext(ctx))
	if err != nil {
		return nil, err
	}
	prov := cfg.Provider
	name := "philotes-" + ctx.Stack()
	labels := map[string]string{"app": "philotes", "stack": ctx.Stack()}

	net, err := prov.CreateNetwork(ctx, providers.NetworkSpec{
		Name: name, Region: cfg.Region, CIDR: cfg.NetworkCIDR, SubnetCIDR: cfg.SubnetCIDR,
		AdminCIDRs: cfg.AdminCIDRs, SSHCIDRs: cfg.SSHCIDRs, Labels: labels,
	})
	if err != nil {
		return nil, err
	}
	cl, err := prov.CreateCluster(ctx, providers.ClusterSpec{
		Name: name, Region: cfg.Region, K3sVersion: cfg.K3sVersion, Server: cfg.Server, Pools: cfg.Pools,
		SSHPublicKey: cfg.SSHPublicKey, Labels: labels,
	}, net)
	if err != nil {
		return nil, err
	}
	lb, err := prov.CreateLoadBalancer(ctx, providers.LoadBalancerSpec{
		Name: name, Region: cfg.Region, Labels: labels,
		Ports: []providers.PortMapping{
			{Listen: network.PortHTTP, NodePort: network.NodePortHTTP},
			{Listen: network.PortHTTPS, NodePort: network.NodePortHTTPS},
		},
	}, net, cl)
	if err != nil {
		return nil, err
	}
	src := SourceFromContext(ctx)
	secret := func(k string) pulumi.StringOutput {
		v, _ := src.Get(Namespace + ":" + k)
		return pulumi.ToSecret(pulumi.String(v).ToStringOutput()).(pulumi.StringOutput)
	}
	lake, err := prov.CreateObjectStorage(ctx, providers.ObjectStorageSpec{
		Bucket: cfg.Bucket, Region: cfg.ObjectStorageRegion, Protect: cfg.ProtectData,
		AccessKeyID: secret("s3AccessKeyId"), SecretAccessKey: secret("s3SecretAccessKey"),
	})
	if err != nil {
		return nil, err
	}

	k8s, err := kubernetes.NewProvider(ctx, name, &kubernetes.ProviderArgs{
		Kubeconfig: cl.Kubeconfig,
	}, pulumi.DependsOn(cl.Ready))
	if err != nil {
		return nil, err
	}
	hosts := cluster.Hosts{API: "api." + cfg.Domain, Dashboard: "app." + cfg.Domain, Grafana: "grafana." + cfg.Domain}
	addons, err := cluster.InstallAddons(ctx, name, k8s, cluster.AddonsSpec{
		Hosts: hosts, ACMEEmail: cfg.ACMEEmail, Vault: cfg.Vault, ChartPath: cfg.ChartPath,
		IngressReplicas: cfg.IngressReplicas, HTTPNodePort: network.NodePortHTTP, HTTPSNodePort: network.NodePortHTTPS,
		PrometheusRetention: cfg.PrometheusRetention,
		Philotes: cluster.PhilotesInputs{
			S3Endpoint: lake.Endpoint, S3Region: lake.Region, CatalogURI: cfg.CatalogURI,
			APIHost: hosts.API, DashboardHost: hosts.Dashboard,
			WorkerMin: cfg.Workers.MinReplicas, WorkerMax: cfg.Workers.MaxReplicas,
		},
		LakeBucket:        lake.Bucket,
		S3AccessKeyID:     secret("s3AccessKeyId"),
		S3SecretAccessKey: secret("s3SecretAccessKey"),
		BufferURL:         secret("bufferUrl"),
	})
	if err != nil {
		return nil, err
	}

	estimate, err := json.Marshal(cfg.Estimate)
	if err != nil {
		return nil, err
	}
	outputs := map[string]pulumi.Input{
		"kubeconfig":           cl.Kubeconfig,
		"apiUrl":               pulumi.String("https://" + hosts.API),
		"dashboardUrl":         pulumi.String("https://" + hosts.Dashboard),
		"grafanaUrl":           pulumi.String("https://" + hosts.Grafana),
		"grafanaAdminPassword": addons.GrafanaSecret,
		"bucket":               lake.Bucket,
		"s3Endpoint":           pulumi.String(lake.Endpoint),
		"s3Region":             pulumi.String(lake.Region),
		"kubernetesApi":        cl.APIEndpoint,
		"loadBalancerIp":       lb.IPv4,
		// Point these names at the load balancer (A records).
		"dnsRecords":      pulumi.StringArray{pulumi.String(hosts.API), pulumi.String(hosts.Dashboard), pulumi.String(hosts.Grafana)},
		"monthlyCostEur":  pulumi.Float64(cfg.Estimate.MonthlyAtMaxEUR),
		"costEstimate":    pulumi.String(string(estimate)),
		"k3sVersion":      pulumi.String(cfg.K3sVersion),
		"serverPrivateIp": pulumi.String(cl.ServerPrivateIP),
	}
	if cl.Generated {
		outputs["sshPrivateKey"] = cl.SSHPrivateKey
	}
	return &Result{Config: cfg, Outputs: outputs, Cluster: cl, Addons: addons}, nil
}
