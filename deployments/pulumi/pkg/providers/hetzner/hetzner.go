package hetzner

import (
	"fmt"
	"strconv"

	"github.com/pulumi/pulumi-hcloud/sdk/go/hcloud"
	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/philotes/philotes/deployments/pulumi/pkg/cluster"
	"github.com/philotes/philotes/deployments/pulumi/pkg/network"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers"
	"github.com/philotes/philotes/deployments/pulumi/pkg/storage"
)

// Image every node boots.
const Image = "ubuntu-24.04"

// Provider is Hetzner Cloud. It reads its API token from hcloud:token (or HCLOUD_TOKEN).
type Provider struct {
	// firewalls made by CreateNetwork, used by CreateCluster.
	serverFirewall *hcloud.Firewall
	agentFirewall  *hcloud.Firewall
	subnet         *hcloud.NetworkSubnet
	networkID      pulumi.IntOutput
	plan           *network.Plan
}

// New returns the Hetzner provider.
func New() *Provider { return &Provider{} }

func (*Provider) Name() string                { return "hetzner" }
func (*Provider) Supported() bool             { return true }
func (*Provider) Regions() []providers.Region { return append([]providers.Region(nil), regions...) }
func (*Provider) InstanceTypes() []providers.InstanceType {
	return append([]providers.InstanceType(nil), instanceTypes...)
}

// FixedCosts: the load balancer, one primary IPv4 per node (nodes pull images over their
// public interface; the firewall drops inbound) and Object Storage's base price.
func (*Provider) FixedCosts(nodes int) []providers.CostLine {
	line := func(item string, n int, unit float64) providers.CostLine {
		return providers.CostLine{Item: item, Count: n, UnitEUR: unit, PriceDate: PriceDate, Source: EstimateSource, Estimated: true,
			MonthlyEUR: float64(n) * unit}
	}
	return []providers.CostLine{
		line("load balancer "+LoadBalancerType, 1, LoadBalancerMonthlyEUR),
		line("primary IPv4", nodes, PrimaryIPv4MonthlyEUR),
		line("object storage (base)", 1, ObjectStorageBaseEUR),
	}
}

// idInt turns a Hetzner resource id (a number, carried as a string) into the int many hcloud
// inputs take.
func idInt(id pulumi.IDOutput) pulumi.IntOutput {
	return id.ApplyT(func(s pulumi.ID) (int, error) {
		n, err := strconv.Atoi(string(s))
		if err != nil {
			return 0, fmt.Errorf("hetzner id %q is not a number: %w", s, err)
		}
		return n, nil
	}).(pulumi.IntOutput)
}

// CreateNetwork makes the private network with one cloud subnet, and the two firewalls: the
// server's (the Kubernetes API to the admin CIDRs) and the agents' (nothing). SSH is opened
// on both only when philotes:sshCidrs lists sources.
func (p *Provider) CreateNetwork(ctx *pulumi.Context, spec providers.NetworkSpec) (*providers.Network, error) {
	region, ok := providers.FindRegion(p, spec.Region)
	if !ok {
		return nil, fmt.Errorf("hetzner: unknown location %q", spec.Region)
	}
	net, err := hcloud.NewNetwork(ctx, spec.Name, &hcloud.NetworkArgs{
		Name:    pulumi.String(spec.Name),
		IpRange: pulumi.String(spec.CIDR),
		Labels:  pulumi.ToStringMap(spec.Labels),
	})
	if err != nil {
		return nil, err
	}
	p.networkID = idInt(net.ID())
	p.subnet, err = hcloud.NewNetworkSubnet(ctx, spec.Name, &hcloud.NetworkSubnetArgs{
		NetworkId:   p.networkID,
		Type:        pulumi.String("cloud"),
		NetworkZone: pulumi.String(region.NetworkZone),
		IpRange:     pulumi.String(spec.SubnetCIDR),
	})
	if err != nil {
		return nil, err
	}
	mkFirewall := func(role string) (*hcloud.Firewall, error) {
		var rules hcloud.FirewallRuleArray
		for _, r := range network.InboundRules(role, spec.AdminCIDRs, spec.SSHCIDRs) {
			rules = append(rules, hcloud.FirewallRuleArgs{
				Direction:   pulumi.String("in"),
				Protocol:    pulumi.String(r.Protocol),
				Port:        pulumi.String(strconv.Itoa(r.Port)),
				SourceIps:   pulumi.ToStringArray(r.Sources),
				Description: pulumi.String(r.Description),
			})
		}
		name := spec.Name + "-" + role
		return hcloud.NewFirewall(ctx, name, &hcloud.FirewallArgs{
			Name:   pulumi.String(name),
			Rules:  rules,
			Labels: pulumi.ToStringMap(spec.Labels),
		})
	}
	if p.serverFirewall, err = mkFirewall(network.RoleServer); err != nil {
		return nil, err
	}
	if p.agentFirewall, err = mkFirewall(network.RoleAgent); err != nil {
		return nil, err
	}
	return &providers.Network{
		ID:         net.ID(),
		SubnetCIDR: spec.SubnetCIDR,
		Resources:  []pulumi.Resource{net, p.subnet, p.serverFirewall, p.agentFirewall},
	}, nil
}

// CreateCluster makes the K3s server (with a primary IP of its own, known before boot so it
// is in the API certificate) and every pool's Min agents, each on its planned private
// address, all in one spread placement group.
func (p *Provider) CreateCluster(ctx *pulumi.Context, spec providers.ClusterSpec, net *providers.Network) (*providers.Cluster, error) {
	if p.subnet == nil {
		return nil, fmt.Errorf("hetzner: CreateNetwork must run before CreateCluster")
	}
	var sizes []network.PoolSize
	for _, pool := range spec.Pools {
		sizes = append(sizes, network.PoolSize{Name: pool.Name, Max: pool.Max})
	}
	plan, err := network.PlanAddresses(net.SubnetCIDR, sizes)
	if err != nil {
		return nil, err
	}
	p.plan = plan
	out := &providers.Cluster{ServerPrivateIP: plan.Server.String()}

	// SSH: the operator's key, or one made here whose private half is exported as a secret.
	publicKey := pulumi.String(spec.SSHPublicKey).ToStringOutput()
	if spec.SSHPublicKey == "" {
		key, err := tls.NewPrivateKey(ctx, spec.Name+"-ssh", &tls.PrivateKeyArgs{Algorithm: pulumi.String("ED25519")})
		if err != nil {
			return nil, err
		}
		publicKey = key.PublicKeyOpenssh
		out.SSHPrivateKey = pulumi.ToSecret(key.PrivateKeyOpenssh).(pulumi.StringOutput)
		out.Generated = true
	}
	sshKey, err := hcloud.NewSshKey(ctx, spec.Name, &hcloud.SshKeyArgs{
		Name:      pulumi.String(spec.Name),
		PublicKey: publicKey,
		Labels:    pulumi.ToStringMap(spec.Labels),
	})
	if err != nil {
		return nil, err
	}
	placement, err := hcloud.NewPlacementGroup(ctx, spec.Name, &hcloud.PlacementGroupArgs{
		Name:   pulumi.String(spec.Name),
		Type:   pulumi.String("spread"),
		Labels: pulumi.ToStringMap(spec.Labels),
	})
	if err != nil {
		return nil, err
	}
	tokens, err := cluster.NewTokens(ctx, spec.Name)
	if err != nil {
		return nil, err
	}
	pki, err := cluster.NewPKI(ctx, spec.Name)
	if err != nil {
		return nil, err
	}
	serverIP, err := hcloud.NewPrimaryIp(ctx, spec.Name+"-server", &hcloud.PrimaryIpArgs{
		Name:         pulumi.String(spec.Name + "-server"),
		Type:         pulumi.String("ipv4"),
		AssigneeType: pulumi.String("server"),
		Location:     pulumi.String(spec.Region),
		AutoDelete:   pulumi.Bool(false),
		Labels:       pulumi.ToStringMap(spec.Labels),
	})
	if err != nil {
		return nil, err
	}

	serverUserData := pulumi.All(serverIP.IpAddress, tokens.Token, tokens.AgentToken, pki.AllCAsPEMs).ApplyT(
		func(v []interface{}) (string, error) {
			cas, err := cluster.CAsFrom(v[3].([]interface{}))
			if err != nil {
				return "", err
			}
			return cluster.ServerCloudInit(cluster.ServerParams{
				K3sVersion: spec.K3sVersion,
				PrivateIP:  plan.Server.String(),
				PublicIP:   v[0].(string),
				Token:      v[1].(string),
				AgentToken: v[2].(string),
				Labels:     spec.Server.Labels,
				Taints:     spec.Server.Taints,
				CAs:        cas,
			})
		}).(pulumi.StringOutput)

	nodeLabels := func(role, pool string) pulumi.StringMap {
		m := map[string]string{}
		for k, v := range spec.Labels {
			m[k] = v
		}
		m["philotes-role"] = role
		m["philotes-pool"] = pool
		return pulumi.ToStringMap(m)
	}
	server, err := hcloud.NewServer(ctx, spec.Name+"-server", &hcloud.ServerArgs{
		Name:             pulumi.String(spec.Name + "-server"),
		ServerType:       pulumi.String(spec.Server.InstanceType),
		Image:            pulumi.String(Image),
		Location:         pulumi.String(spec.Region),
		SshKeys:          pulumi.StringArray{sshKey.ID().ToStringOutput()},
		FirewallIds:      pulumi.IntArray{idInt(p.serverFirewall.ID())},
		PlacementGroupId: idInt(placement.ID()),
		PublicNets: hcloud.ServerPublicNetArray{hcloud.ServerPublicNetArgs{
			Ipv4Enabled: pulumi.Bool(true),
			Ipv4:        idInt(serverIP.ID()),
			Ipv6Enabled: pulumi.Bool(false),
		}},
		Networks: hcloud.ServerNetworkTypeArray{hcloud.ServerNetworkTypeArgs{
			NetworkId: p.networkID,
			Ip:        pulumi.String(plan.Server.String()),
		}},
		UserData: serverUserData,
		Labels:   nodeLabels(network.RoleServer, spec.Server.Name),
	}, pulumi.DependsOn([]pulumi.Resource{p.subnet}), pulumi.IgnoreChanges([]string{"image"}))
	if err != nil {
		return nil, err
	}

	for _, pool := range spec.Pools {
		addrs := plan.PoolAddresses[pool.Name]
		for i := 0; i < pool.Min; i++ {
			name := fmt.Sprintf("%s-%s-%d", spec.Name, pool.Name, i+1)
			ip := addrs[i].String()
			userData := tokens.AgentToken.ApplyT(func(tok string) (string, error) {
				return cluster.AgentCloudInit(cluster.AgentParams{
					K3sVersion: spec.K3sVersion,
					PrivateIP:  ip,
					ServerIP:   plan.Server.String(),
					AgentToken: tok,
					Labels:     pool.Labels,
					Taints:     pool.Taints,
				})
			}).(pulumi.StringOutput)
			agent, err := hcloud.NewServer(ctx, name, &hcloud.ServerArgs{
				Name:             pulumi.String(name),
				ServerType:       pulumi.String(pool.InstanceType),
				Image:            pulumi.String(Image),
				Location:         pulumi.String(spec.Region),
				SshKeys:          pulumi.StringArray{sshKey.ID().ToStringOutput()},
				FirewallIds:      pulumi.IntArray{idInt(p.agentFirewall.ID())},
				PlacementGroupId: idInt(placement.ID()),
				PublicNets: hcloud.ServerPublicNetArray{hcloud.ServerPublicNetArgs{
					Ipv4Enabled: pulumi.Bool(true),
					Ipv6Enabled: pulumi.Bool(false),
				}},
				Networks: hcloud.ServerNetworkTypeArray{hcloud.ServerNetworkTypeArgs{
					NetworkId: p.networkID,
					Ip:        pulumi.String(ip),
				}},
				UserData: userData,
				Labels:   nodeLabels(network.RoleAgent, pool.Name),
			}, pulumi.DependsOn([]pulumi.Resource{p.subnet, server}), pulumi.IgnoreChanges([]string{"image"}))
			if err != nil {
				return nil, err
			}
			out.Agents = append(out.Agents, agent)
		}
	}

	out.ServerPublicIP = serverIP.IpAddress
	out.APIEndpoint = serverIP.IpAddress.ApplyT(func(ip string) string { return "https://" + ip + ":6443" }).(pulumi.StringOutput)
	out.Kubeconfig = pulumi.ToSecret(pulumi.All(out.APIEndpoint, pki.ServerCA, pki.AdminCert, pki.AdminKey).ApplyT(
		func(v []interface{}) (string, error) {
			return cluster.Kubeconfig(spec.Name, v[0].(string), v[1].(string), v[2].(string), v[3].(string))
		})).(pulumi.StringOutput)
	wait, err := cluster.WaitForAPI(ctx, spec.Name+"-api-ready", out.APIEndpoint, pki.ServerCA, pulumi.DependsOn([]pulumi.Resource{server}))
	if err != nil {
		return nil, err
	}
	out.Ready = []pulumi.Resource{wait}
	return out, nil
}

// CreateLoadBalancer puts an lb11 on the private network in front of the agents' ingress
// node ports (TCP passthrough with the PROXY protocol, so ingress-nginx terminates TLS and
// sees client addresses). The load balancer reaches the nodes over the private network,
// which Hetzner firewalls do not filter.
func (p *Provider) CreateLoadBalancer(ctx *pulumi.Context, spec providers.LoadBalancerSpec, net *providers.Network, c *providers.Cluster) (*providers.LoadBalancer, error) {
	if p.plan == nil {
		return nil, fmt.Errorf("hetzner: CreateCluster must run before CreateLoadBalancer")
	}
	lbType := spec.Type
	if lbType == "" {
		lbType = LoadBalancerType
	}
	lb, err := hcloud.NewLoadBalancer(ctx, spec.Name, &hcloud.LoadBalancerArgs{
		Name:             pulumi.String(spec.Name),
		LoadBalancerType: pulumi.String(lbType),
		Location:         pulumi.String(spec.Region),
		Labels:           pulumi.ToStringMap(spec.Labels),
	})
	if err != nil {
		return nil, err
	}
	lbID := idInt(lb.ID())
	attach, err := hcloud.NewLoadBalancerNetwork(ctx, spec.Name, &hcloud.LoadBalancerNetworkArgs{
		LoadBalancerId:        lbID,
		NetworkId:             p.networkID,
		Ip:                    pulumi.String(p.plan.LoadBalancer.String()),
		EnablePublicInterface: pulumi.Bool(true),
	}, pulumi.DependsOn([]pulumi.Resource{p.subnet}))
	if err != nil {
		return nil, err
	}
	for i, agent := range c.Agents {
		srv := agent.(*hcloud.Server)
		if _, err := hcloud.NewLoadBalancerTarget(ctx, fmt.Sprintf("%s-target-%d", spec.Name, i+1), &hcloud.LoadBalancerTargetArgs{
			Type:           pulumi.String("server"),
			LoadBalancerId: lbID,
			ServerId:       idInt(srv.ID()),
			UsePrivateIp:   pulumi.Bool(true),
		}, pulumi.DependsOn([]pulumi.Resource{attach})); err != nil {
			return nil, err
		}
	}
	for _, port := range spec.Ports {
		if _, err := hcloud.NewLoadBalancerService(ctx, fmt.Sprintf("%s-%d", spec.Name, port.Listen), &hcloud.LoadBalancerServiceArgs{
			LoadBalancerId:  lb.ID().ToStringOutput(),
			Protocol:        pulumi.String("tcp"),
			ListenPort:      pulumi.Int(port.Listen),
			DestinationPort: pulumi.Int(port.NodePort),
			Proxyprotocol:   pulumi.Bool(true),
			HealthCheck: hcloud.LoadBalancerServiceHealthCheckArgs{
				Protocol: pulumi.String("tcp"),
				Port:     pulumi.Int(port.NodePort),
				Interval: pulumi.Int(15),
				Timeout:  pulumi.Int(10),
				Retries:  pulumi.Int(3),
			},
		}); err != nil {
			return nil, err
		}
	}
	return &providers.LoadBalancer{IPv4: lb.Ipv4}, nil
}

// CreateObjectStorage makes the lake's bucket on Hetzner Object Storage in the given
// location. Hetzner has no API for its S3 keys: they are made in the Cloud Console and come
// here from config secrets.
func (p *Provider) CreateObjectStorage(ctx *pulumi.Context, spec providers.ObjectStorageSpec) (*providers.ObjectStorage, error) {
	region, ok := providers.FindRegion(p, spec.Region)
	if !ok || !region.ObjectStorage {
		return nil, fmt.Errorf("hetzner: no object storage in %q", spec.Region)
	}
	endpoint := ObjectStorageEndpoint(spec.Region)
	b, err := storage.NewBucket(ctx, "lake", storage.S3Spec{
		Endpoint:        endpoint,
		Region:          spec.Region,
		Bucket:          spec.Bucket,
		AccessKeyID:     spec.AccessKeyID,
		SecretAccessKey: spec.SecretAccessKey,
		Protect:         spec.Protect,
	})
	if err != nil {
		return nil, err
	}
	return &providers.ObjectStorage{Bucket: b.Name, Endpoint: endpoint, Region: spec.Region}, nil
}
