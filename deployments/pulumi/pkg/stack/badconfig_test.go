package stack

import (
	"strings"
	"testing"
)

// TestBadConfig: each broken stack config fails before anything is created, with a message
// naming the key and the fix.
func TestBadConfig(t *testing.T) {
	base, _ := stackFile(t, "dev")
	cases := []struct {
		name   string
		edit   func(cfg map[string]string, secret map[string]bool)
		expect []string
	}{
		{"unknown region", func(c map[string]string, _ map[string]bool) { c["philotes:region"] = "ams3" },
			[]string{`philotes:region: "ams3" is not a hetzner region`, "fsn1, hel1, nbg1"}},
		{"missing region", func(c map[string]string, _ map[string]bool) { delete(c, "philotes:region") },
			[]string{"philotes:region is not set", "pulumi config set philotes:region"}},
		{"retired instance type", func(c map[string]string, _ map[string]bool) {
			c["philotes:server"] = `{"instanceType":"cx22"}`
		}, []string{`philotes:server.instanceType: "cx22" was retired by Hetzner`, "use cx23"}},
		{"unknown instance type", func(c map[string]string, _ map[string]bool) {
			c["philotes:nodePools"] = `[{"name":"workers","instanceType":"m5.large","min":1,"max":1}]`
		}, []string{`philotes:nodePools[0].instanceType: "m5.large" is not a hetzner instance type`, "cax11", "cx33"}},
		{"pool min > max", func(c map[string]string, _ map[string]bool) {
			c["philotes:nodePools"] = `[{"name":"workers","instanceType":"cx33","min":3,"max":1}]`
		}, []string{`philotes:nodePools[0] ("workers"): min 3 is greater than max 1`, "set min <= max"}},
		{"no agent", func(c map[string]string, _ map[string]bool) {
			c["philotes:nodePools"] = `[{"name":"workers","instanceType":"cx33","min":0,"max":1}]`
		}, []string{"philotes:nodePools: every pool has min 0", "min >= 1"}},
		{"bad taint", func(c map[string]string, _ map[string]bool) {
			c["philotes:server"] = `{"instanceType":"cx23","taints":["dedicated"]}`
		}, []string{`philotes:server.taints: "dedicated" is not a taint`, "key=value:Effect"}},
		{"unpinned k3s", func(c map[string]string, _ map[string]bool) { c["philotes:k3sVersion"] = "latest" },
			[]string{`philotes:k3sVersion: "latest" is not a K3s release`, "v1.34.3+k3s1"}},
		{"missing object storage secret", func(c map[string]string, s map[string]bool) {
			delete(c, "philotes:s3SecretAccessKey")
			delete(s, "philotes:s3SecretAccessKey")
		}, []string{"philotes:s3SecretAccessKey is not set", "pulumi config set --secret philotes:s3SecretAccessKey"}},
		{"secret in plain text", func(_ map[string]string, s map[string]bool) { delete(s, "philotes:bufferUrl") },
			[]string{"philotes:bufferUrl is stored in plain text in Pulumi.dev.yaml", "pulumi config set --secret philotes:bufferUrl"}},
		{"missing hcloud token", func(c map[string]string, s map[string]bool) {
			delete(c, "hcloud:token")
			delete(s, "hcloud:token")
		}, []string{"hcloud:token is not set (nor HCLOUD_TOKEN)", "pulumi config set --secret hcloud:token"}},
		{"hcloud token in plain text", func(_ map[string]string, s map[string]bool) { delete(s, "hcloud:token") },
			[]string{"hcloud:token is stored in plain text", "pulumi config set --secret hcloud:token"}},
		{"over budget", func(c map[string]string, _ map[string]bool) {
			c["philotes:nodePools"] = `[{"name":"workers","instanceType":"cx43","min":1,"max":3}]`
		}, []string{"philotes:budgetEur: the estimate is €", "over the budget of €30.00", "philotes:allowOverBudget true"}},
		{"missing budget", func(c map[string]string, _ map[string]bool) { delete(c, "philotes:budgetEur") },
			[]string{"philotes:budgetEur is not set", "pulumi config set philotes:budgetEur 30"}},
		{"world-open API", func(c map[string]string, _ map[string]bool) { c["philotes:adminCidrs"] = `["0.0.0.0/0"]` },
			[]string{`philotes:adminCidrs: "0.0.0.0/0" opens the port to the whole internet`}},
		{"no admin CIDRs", func(c map[string]string, _ map[string]bool) { delete(c, "philotes:adminCidrs") },
			[]string{"philotes:adminCidrs is not set", "203.0.113.7/32"}},
		{"unknown provider", func(c map[string]string, _ map[string]bool) { c["philotes:provider"] = "aws" },
			[]string{`philotes:provider: "aws" is not a provider Philotes knows`, "contabo, exoscale, hetzner, ovhcloud, scaleway"}},
		{"bad chart path", func(c map[string]string, _ map[string]bool) { c["philotes:chartPath"] = "../nowhere" },
			[]string{"philotes:chartPath: no Chart.yaml in", "umbrella chart"}},
	}
	for _, provider := range []string{"ovhcloud", "scaleway", "exoscale", "contabo"} {
		provider := provider
		cases = append(cases, struct {
			name   string
			edit   func(cfg map[string]string, secret map[string]bool)
			expect []string
		}{"unsupported " + provider, func(c map[string]string, _ map[string]bool) { c["philotes:provider"] = provider },
			[]string{`philotes:provider: provider "` + provider + `" is not supported yet`, "set philotes:provider to hetzner"}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, keys := withSecrets(base)
			secret := map[string]bool{}
			for _, k := range keys {
				secret[k] = true
			}
			tc.edit(cfg, secret)
			var secretKeys []string
			for k := range secret {
				secretKeys = append(secretKeys, k)
			}
			r := runProgram(t, "dev", cfg, secretKeys)
			if r.err == nil {
				t.Fatal("the program accepted the broken config")
			}
			for _, want := range tc.expect {
				if !strings.Contains(r.err.Error(), want) {
					t.Errorf("error does not say %q:\n%v", want, r.err)
				}
			}
			if n := len(r.m.names()); n != 0 {
				t.Errorf("%d resources made before the config was refused: %v", n, r.m.names())
			}
		})
	}
}

// TestAllowOverBudget: the budget refusal is lifted only by philotes:allowOverBudget.
func TestAllowOverBudget(t *testing.T) {
	base, _ := stackFile(t, "dev")
	cfg, keys := withSecrets(base)
	cfg["philotes:nodePools"] = `[{"name":"workers","instanceType":"cx43","min":1,"max":3}]`
	cfg["philotes:allowOverBudget"] = "true"
	r := runProgram(t, "dev", cfg, keys)
	if r.err != nil {
		t.Fatal(r.err)
	}
	e := r.res.Config.Estimate
	if e.WithinBudget || e.MonthlyAtMaxEUR <= 30 {
		t.Errorf("estimate %+v should be over the €30 budget", e)
	}
	if got := r.outs["monthlyCostEur"].Value; got != e.MonthlyAtMaxEUR {
		t.Errorf("monthlyCostEur %v, estimate %v", got, e.MonthlyAtMaxEUR)
	}
}
