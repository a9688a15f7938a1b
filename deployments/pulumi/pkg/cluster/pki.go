package cluster

import (
	"encoding/base64"
	"fmt"

	"github.com/pulumi/pulumi-command/sdk/go/command/local"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"
)

// CANames are the authorities K3s generates on first start unless it finds them in
// /var/lib/rancher/k3s/server/tls. Making them here lets the program write the admin
// kubeconfig itself, without logging in to the server.
var CANames = []string{"server-ca", "client-ca", "request-header-ca"}

// PKI is the cluster's authorities and the admin's client certificate, all in Pulumi state
// as secrets.
type PKI struct {
	CAs        map[string]CAOutput
	AdminCert  pulumi.StringOutput
	AdminKey   pulumi.StringOutput
	ServerCA   pulumi.StringOutput
	AllCAsPEMs pulumi.ArrayOutput // [name, cert, key, name, cert, key, ...]
}

// CAOutput is one authority.
type CAOutput struct {
	Cert pulumi.StringOutput
	Key  pulumi.StringOutput
}

const (
	caValidityHours    = 10 * 365 * 24
	adminValidityHours = 365 * 24
	// AdminGroup is bound to cluster-admin in every Kubernetes cluster.
	AdminGroup = "system:masters"
	AdminUser  = "philotes-admin"
)

// NewPKI creates the three CAs and the admin certificate (signed by client-ca, renewed by
// `pulumi up` in its last 30 days).
func NewPKI(ctx *pulumi.Context, name string, opts ...pulumi.ResourceOption) (*PKI, error) {
	p := &PKI{CAs: map[string]CAOutput{}}
	var flat []interface{}
	for _, ca := range CANames {
		key, err := tls.NewPrivateKey(ctx, name+"-"+ca, &tls.PrivateKeyArgs{
			Algorithm:  pulumi.String("ECDSA"),
			EcdsaCurve: pulumi.String("P256"),
		}, opts...)
		if err != nil {
			return nil, err
		}
		cert, err := tls.NewSelfSignedCert(ctx, name+"-"+ca, &tls.SelfSignedCertArgs{
			PrivateKeyPem:       key.PrivateKeyPem,
			IsCaCertificate:     pulumi.Bool(true),
			ValidityPeriodHours: pulumi.Int(caValidityHours),
			AllowedUses:         pulumi.ToStringArray([]string{"cert_signing", "crl_signing", "digital_signature", "key_encipherment"}),
			Subject:             &tls.SelfSignedCertSubjectArgs{CommonName: pulumi.String("k3s-" + ca)},
		}, opts...)
		if err != nil {
			return nil, err
		}
		p.CAs[ca] = CAOutput{Cert: cert.CertPem, Key: pulumi.ToSecret(key.PrivateKeyPem).(pulumi.StringOutput)}
		flat = append(flat, pulumi.String(ca), cert.CertPem, p.CAs[ca].Key)
	}
	p.AllCAsPEMs = pulumi.ToSecret(pulumi.Array(toInputs(flat)).ToArrayOutput()).(pulumi.ArrayOutput)
	p.ServerCA = p.CAs["server-ca"].Cert

	adminKey, err := tls.NewPrivateKey(ctx, name+"-admin", &tls.PrivateKeyArgs{
		Algorithm:  pulumi.String("ECDSA"),
		EcdsaCurve: pulumi.String("P256"),
	}, opts...)
	if err != nil {
		return nil, err
	}
	csr, err := tls.NewCertRequest(ctx, name+"-admin", &tls.CertRequestArgs{
		PrivateKeyPem: adminKey.PrivateKeyPem,
		Subject: &tls.CertRequestSubjectArgs{
			CommonName:   pulumi.String(AdminUser),
			Organization: pulumi.String(AdminGroup),
		},
	}, opts...)
	if err != nil {
		return nil, err
	}
	adminCert, err := tls.NewLocallySignedCert(ctx, name+"-admin", &tls.LocallySignedCertArgs{
		CertRequestPem:      csr.CertRequestPem,
		CaCertPem:           p.CAs["client-ca"].Cert,
		CaPrivateKeyPem:     p.CAs["client-ca"].Key,
		ValidityPeriodHours: pulumi.Int(adminValidityHours),
		EarlyRenewalHours:   pulumi.Int(30 * 24),
		AllowedUses:         pulumi.ToStringArray([]string{"client_auth", "digital_signature", "key_encipherment"}),
	}, opts...)
	if err != nil {
		return nil, err
	}
	p.AdminCert = adminCert.CertPem
	p.AdminKey = pulumi.ToSecret(adminKey.PrivateKeyPem).(pulumi.StringOutput)
	return p, nil
}

func toInputs(xs []interface{}) []pulumi.Input {
	out := make([]pulumi.Input, len(xs))
	for i, x := range xs {
		out[i] = x.(pulumi.Input)
	}
	return out
}

// CAsFrom turns the flat [name, cert, key, ...] array back into CAs.
func CAsFrom(flat []interface{}) ([]CA, error) {
	if len(flat)%3 != 0 {
		return nil, fmt.Errorf("CA list has %d entries, not a multiple of 3", len(flat))
	}
	var cas []CA
	for i := 0; i < len(flat); i += 3 {
		n, _ := flat[i].(string)
		c, _ := flat[i+1].(string)
		k, _ := flat[i+2].(string)
		cas = append(cas, CA{Name: n, CertPEM: c, KeyPEM: k})
	}
	return cas, nil
}

// Tokens are K3s' join tokens: Token for servers, AgentToken (all an agent's cloud-init
// holds) for agents. Both are Pulumi secrets.
type Tokens struct {
	Token      pulumi.StringOutput
	AgentToken pulumi.StringOutput
}

// NewTokens makes the two tokens with pulumi-random (kept in state, encrypted).
func NewTokens(ctx *pulumi.Context, name string, opts ...pulumi.ResourceOption) (*Tokens, error) {
	mk := func(n string) (pulumi.StringOutput, error) {
		r, err := random.NewRandomPassword(ctx, n, &random.RandomPasswordArgs{
			Length:  pulumi.Int(48),
			Special: pulumi.Bool(false),
		}, opts...)
		if err != nil {
			return pulumi.StringOutput{}, err
		}
		return pulumi.ToSecret(r.Result).(pulumi.StringOutput), nil
	}
	t, err := mk(name + "-k3s-token")
	if err != nil {
		return nil, err
	}
	a, err := mk(name + "-k3s-agent-token")
	if err != nil {
		return nil, err
	}
	return &Tokens{Token: t, AgentToken: a}, nil
}

// Kubeconfig writes the admin kubeconfig for the API at endpoint (https://host:6443).
func Kubeconfig(clusterName, endpoint, serverCA, adminCert, adminKey string) (string, error) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	doc := map[string]interface{}{
		"apiVersion": "v1",
		"kind":       "Config",
		"clusters": []map[string]interface{}{{
			"name": clusterName,
			"cluster": map[string]interface{}{
				"server":                     endpoint,
				"certificate-authority-data": b64(serverCA),
			},
		}},
		"users": []map[string]interface{}{{
			"name": AdminUser,
			"user": map[string]interface{}{
				"client-certificate-data": b64(adminCert),
				"client-key-data":         b64(adminKey),
			},
		}},
		"contexts": []map[string]interface{}{{
			"name":    clusterName,
			"context": map[string]interface{}{"cluster": clusterName, "user": AdminUser},
		}},
		"current-context": clusterName,
	}
	out, err := yaml.Marshal(doc)
	return string(out), err
}

// WaitForAPI is a command on the machine running `pulumi up` that returns once the API
// server at endpoint answers TLS with the cluster's CA (any HTTP status: the anonymous
// request is refused, which proves the server is up). It gives up after 10 minutes.
func WaitForAPI(ctx *pulumi.Context, name string, endpoint pulumi.StringOutput, serverCA pulumi.StringOutput, opts ...pulumi.ResourceOption) (*local.Command, error) {
	return local.NewCommand(ctx, name, &local.CommandArgs{
		Create:      pulumi.String(WaitScript),
		Environment: pulumi.StringMap{"ENDPOINT": endpoint, "SERVER_CA": serverCA},
		Triggers:    pulumi.Array{endpoint},
	}, opts...)
}

// WaitScript polls /readyz for up to 10 minutes.
const WaitScript = `set -eu
ca=$(mktemp); trap 'rm -f "$ca"' EXIT
printf '%s' "$SERVER_CA" > "$ca"
i=0
until curl -s -o /dev/null --max-time 5 --cacert "$ca" "$ENDPOINT/readyz"; do
  i=$((i + 1))
  if [ "$i" -gt 120 ]; then echo "the API at $ENDPOINT did not answer in 10 minutes" >&2; exit 1; fi
  sleep 5
done
echo ready`
