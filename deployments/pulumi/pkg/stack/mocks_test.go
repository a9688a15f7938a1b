package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
	"gopkg.in/yaml.v3"
)

// created is one resource the program registered, with its inputs as plain Go values and
// the paths of the inputs that arrived as secrets.
type created struct {
	Type, Name, ID string
	Inputs         map[string]interface{}
	Secrets        map[string]bool
}

// mocks answers like the clouds would: numeric ids (hcloud's are numbers), the inputs back
// as state, plus the outputs the program reads (addresses, PEMs, random results).
type mocks struct {
	mu        sync.Mutex
	next      int
	resources []created
}

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next++
	id := fmt.Sprintf("%d", 1000+m.next)
	state := args.Inputs.Copy()
	set := func(k string, v interface{}) { state[resource.PropertyKey(k)] = resource.NewPropertyValue(v) }
	switch args.TypeToken {
	case "hcloud:index/primaryIp:PrimaryIp":
		set("ipAddress", fmt.Sprintf("203.0.113.%d", m.next%250))
	case "hcloud:index/loadBalancer:LoadBalancer":
		set("ipv4", "198.51.100.7")
	case "tls:index/privateKey:PrivateKey":
		set("privateKeyPem", "-----BEGIN EC PRIVATE KEY-----\nkey-"+args.Name+"\n-----END EC PRIVATE KEY-----\n")
		set("privateKeyOpenssh", "-----BEGIN OPENSSH PRIVATE KEY-----\nssh-"+args.Name+"\n-----END OPENSSH PRIVATE KEY-----\n")
		set("publicKeyOpenssh", "ssh-ed25519 AAAAC3Nz"+args.Name)
	case "tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert":
		set("certPem", "-----BEGIN CERTIFICATE-----\ncert-"+args.Name+"\n-----END CERTIFICATE-----\n")
	case "tls:index/certRequest:CertRequest":
		set("certRequestPem", "-----BEGIN CERTIFICATE REQUEST-----\ncsr-"+args.Name+"\n-----END CERTIFICATE REQUEST-----\n")
	case "random:index/randomPassword:RandomPassword":
		set("result", "secret-"+args.Name+"-"+id)
	case "random:index/randomId:RandomId":
		set("hex", fmt.Sprintf("%064x", 0xc0ffee+m.next))
	case "command:local:Command":
		set("stdout", "ready")
	}
	plain, secrets := toPlain(args.Inputs)
	m.resources = append(m.resources, created{Type: args.TypeToken, Name: args.Name, ID: id, Inputs: plain, Secrets: secrets})
	return id, state, nil
}

func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return args.Args, nil
}

func (m *mocks) ofType(typ string) []created {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []created
	for _, r := range m.resources {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

func (m *mocks) named(t *testing.T, typ, name string) created {
	t.Helper()
	for _, r := range m.ofType(typ) {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no %s named %s; made: %v", typ, name, m.names())
	return created{}
}

func (m *mocks) names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.resources {
		out = append(out, r.Type+" "+r.Name)
	}
	return out
}

// toPlain unwraps secrets and outputs, noting the top-level inputs that held a secret.
func toPlain(pm resource.PropertyMap) (map[string]interface{}, map[string]bool) {
	secrets := map[string]bool{}
	var repl func(resource.PropertyValue) (interface{}, bool)
	repl = func(v resource.PropertyValue) (interface{}, bool) {
		switch {
		case v.IsSecret():
			return v.SecretValue().Element.MapRepl(nil, repl), true
		case v.IsOutput():
			return v.OutputValue().Element.MapRepl(nil, repl), true
		}
		return nil, false
	}
	for k, v := range pm {
		if containsSecret(v) {
			secrets[string(k)] = true
		}
	}
	return pm.MapRepl(nil, repl), secrets
}

func containsSecret(v resource.PropertyValue) bool {
	switch {
	case v.IsSecret():
		return true
	case v.IsOutput():
		return v.OutputValue().Secret || containsSecret(v.OutputValue().Element)
	case v.IsArray():
		for _, e := range v.ArrayValue() {
			if containsSecret(e) {
				return true
			}
		}
	case v.IsObject():
		for _, e := range v.ObjectValue() {
			if containsSecret(e) {
				return true
			}
		}
	}
	return false
}

// projectDir is deployments/pulumi (tests run in pkg/stack).
func projectDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "Pulumi.yaml")); err != nil {
		t.Fatalf("no Pulumi.yaml in %s", dir)
	}
	return dir
}

// stackFile reads Pulumi.<stack>.yaml's config the way Pulumi hands it to a program:
// strings as they are, anything else as JSON.
func stackFile(t *testing.T, stack string) (map[string]string, map[string]interface{}) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(projectDir(t), "Pulumi."+stack+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Config map[string]interface{} `yaml:"config"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range doc.Config {
		out[k] = configString(t, v)
	}
	return out, doc.Config
}

func configString(t *testing.T, v interface{}) string {
	switch x := v.(type) {
	case string:
		return x
	default:
		b, err := jsonMarshal(x)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

// testSecrets are what `pulumi config set --secret` would add; each value is distinct so a
// leak can be traced.
var testSecrets = map[string]string{
	"hcloud:token":               "hcloud-token-0123456789abcdef0123456789abcdef0123456789abcdef0123",
	"philotes:s3AccessKeyId":     "S3ACCESSKEYEXAMPLE0001",
	"philotes:s3SecretAccessKey": "s3-secret-access-key-example-0002",
	"philotes:bufferUrl":         "postgres://philotes:pw-example-0003@db.internal:5432/philotes",
}

// run runs the program under mocks with cfg as the stack config and secretKeys marked secret.
type runResult struct {
	res  *Result
	m    *mocks
	err  error
	outs map[string]internals.UnsafeAwaitOutputResult
}

func runProgram(t *testing.T, stack string, cfg map[string]string, secretKeys []string) runResult {
	t.Helper()
	t.Setenv("HCLOUD_TOKEN", "")
	m := &mocks{}
	var res *Result
	root := projectDir(t)
	opt := func(info *pulumi.RunInfo) {
		info.Config = cfg
		info.ConfigSecretKeys = secretKeys
		info.RootDirectory = root
	}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		var err error
		res, err = Deploy(ctx)
		return err
	}, pulumi.WithMocks("philotes", stack, m), opt)
	rr := runResult{res: res, m: m, err: err, outs: map[string]internals.UnsafeAwaitOutputResult{}}
	if err == nil {
		for k, v := range res.Outputs {
			o, aerr := internals.UnsafeAwaitOutput(context.Background(), pulumi.ToOutput(v))
			if aerr != nil {
				t.Fatalf("output %s: %v", k, aerr)
			}
			rr.outs[k] = o
		}
	}
	return rr
}

// withSecrets is a stack file's config plus the test secrets, marked secret.
func withSecrets(cfg map[string]string) (map[string]string, []string) {
	out := map[string]string{}
	for k, v := range cfg {
		out[k] = v
	}
	var keys []string
	for k, v := range testSecrets {
		out[k] = v
		keys = append(keys, k)
	}
	return out, keys
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
