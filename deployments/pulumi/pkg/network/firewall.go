package network

import (
	"fmt"
	"net/netip"
	"strings"
)

// Rule is one inbound firewall rule: TCP Port open to Sources.
type Rule struct {
	Description string
	Protocol    string // "tcp"
	Port        int
	Sources     []string // CIDRs
}

// Ports the firewall knows.
const (
	PortSSH        = 22
	PortKubeAPI    = 6443
	PortHTTP       = 80
	PortHTTPS      = 443
	NodePortHTTP   = 30080
	NodePortHTTPS  = 30443
	RoleServer     = "server"
	RoleAgent      = "agent"
	DescKubeAPI    = "Kubernetes API from the admin CIDRs (philotes:adminCidrs)"
	DescSSH        = "SSH from philotes:sshCidrs"
	ruleSourceHelp = "a list of CIDRs such as 203.0.113.7/32"
)

// InboundRules is every rule the stack opens from the internet to a node of the given role,
// and nothing more: the API to the admin CIDRs on the server, SSH only when sshCIDRs is set.
// HTTP and HTTPS reach the cluster through the load balancer, which talks to the nodes over
// the private network, so no node opens 80 or 443 to the internet.
func InboundRules(role string, adminCIDRs, sshCIDRs []string) []Rule {
	var rules []Rule
	if role == RoleServer && len(adminCIDRs) > 0 {
		rules = append(rules, Rule{Description: DescKubeAPI, Protocol: "tcp", Port: PortKubeAPI, Sources: append([]string(nil), adminCIDRs...)})
	}
	if len(sshCIDRs) > 0 {
		rules = append(rules, Rule{Description: DescSSH, Protocol: "tcp", Port: PortSSH, Sources: append([]string(nil), sshCIDRs...)})
	}
	return rules
}

// ValidateCIDRs checks a list of sources from config key (for the message). Every entry must
// be a CIDR; 0.0.0.0/0 and ::/0 are refused unless allowWorld, since they open the port to
// the whole internet.
func ValidateCIDRs(key string, cidrs []string, allowWorld bool) error {
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return fmt.Errorf("%s: %q is not a CIDR; set it to %s", key, c, ruleSourceHelp)
		}
		if p.Bits() == 0 && !allowWorld {
			return fmt.Errorf("%s: %q opens the port to the whole internet; list your own addresses (%s)", key, c, ruleSourceHelp)
		}
	}
	return nil
}
