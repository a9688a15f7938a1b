package network

import (
	"reflect"
	"strings"
	"testing"
)

func TestPlanAddresses(t *testing.T) {
	p, err := PlanAddresses("10.0.1.0/24", []PoolSize{{"system", 2}, {"workers", 3}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Server.String() != "10.0.1.2" || p.LoadBalancer.String() != "10.0.1.254" {
		t.Errorf("server %s lb %s", p.Server, p.LoadBalancer)
	}
	var got []string
	for _, pool := range []string{"system", "workers"} {
		for _, a := range p.PoolAddresses[pool] {
			got = append(got, a.String())
		}
	}
	want := []string{"10.0.1.11", "10.0.1.12", "10.0.1.13", "10.0.1.14", "10.0.1.15"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pool addresses %v, want %v", got, want)
	}
	if _, err := PlanAddresses("10.0.1.0/28", []PoolSize{{"w", 5}}); err == nil {
		t.Error("a /28 took 5 agents after the 10 reserved addresses")
	}
	if _, err := PlanAddresses("nonsense", nil); err == nil {
		t.Error("accepted a non-CIDR")
	}
}

func TestInboundRules(t *testing.T) {
	admin := []string{"203.0.113.7/32"}
	server := InboundRules(RoleServer, admin, nil)
	if len(server) != 1 || server[0].Port != PortKubeAPI || !reflect.DeepEqual(server[0].Sources, admin) {
		t.Errorf("server rules %+v", server)
	}
	if agent := InboundRules(RoleAgent, admin, nil); len(agent) != 0 {
		t.Errorf("agent rules %+v, want none", agent)
	}
	ssh := InboundRules(RoleAgent, admin, []string{"198.51.100.1/32"})
	if len(ssh) != 1 || ssh[0].Port != PortSSH {
		t.Errorf("ssh rules %+v", ssh)
	}
	for _, r := range InboundRules(RoleServer, admin, []string{"198.51.100.1/32"}) {
		if r.Port == PortHTTP || r.Port == PortHTTPS {
			t.Errorf("a node opens %d to the internet", r.Port)
		}
	}
}

func TestValidateCIDRs(t *testing.T) {
	if err := ValidateCIDRs("k", []string{"203.0.113.7/32", "2001:db8::/48"}, false); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"0.0.0.0/0", "::/0", "203.0.113.7", "x"} {
		err := ValidateCIDRs("philotes:adminCidrs", []string{bad}, false)
		if err == nil || !strings.HasPrefix(err.Error(), "philotes:adminCidrs: ") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
