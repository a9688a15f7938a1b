package cluster

import (
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestServerCloudInit(t *testing.T) {
	ci, err := ServerCloudInit(ServerParams{
		K3sVersion: "v1.33.6+k3s1", PrivateIP: "10.0.1.2", PublicIP: "203.0.113.5",
		Token: "tok-server", AgentToken: "tok-agent",
		Labels: map[string]string{"b": "2", "a": "1"}, Taints: []string{"node-role.kubernetes.io/control-plane=true:NoSchedule"},
		CAs: []CA{{Name: "server-ca", CertPEM: "CERT", KeyPEM: "KEY"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := ParseCloudInit(ci)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := cc.File(K3sConfigPath)
	var k K3sConfig
	if err := yaml.Unmarshal([]byte(f.Content), &k); err != nil {
		t.Fatal(err)
	}
	if k.Token != "tok-server" || k.AgentToken != "tok-agent" || k.NodeIP != "10.0.1.2" || k.AdvertiseAddress != "10.0.1.2" {
		t.Errorf("k3s config %+v", k)
	}
	if !reflect.DeepEqual(k.TLSSAN, []string{"203.0.113.5", "10.0.1.2"}) || !reflect.DeepEqual(k.NodeLabel, []string{"a=1", "b=2"}) {
		t.Errorf("tls-san %v labels %v", k.TLSSAN, k.NodeLabel)
	}
	if !reflect.DeepEqual(k.Disable, []string{"traefik", "servicelb"}) || !k.SecretsEncryption {
		t.Errorf("disable %v secrets-encryption %v", k.Disable, k.SecretsEncryption)
	}
	key, ok := cc.File(ServerTLSDir + "/server-ca.key")
	if !ok || key.Content != "KEY" || key.Permissions != "0600" {
		t.Errorf("server-ca.key %+v", key)
	}
	script, _ := cc.File(InstallPath)
	if !strings.Contains(script.Content, "INSTALL_K3S_VERSION='v1.33.6+k3s1'") || !strings.Contains(script.Content, "/v1.33.6%2Bk3s1/install.sh") {
		t.Errorf("installer does not pin the version:\n%s", script.Content)
	}
}

func TestAgentCloudInit(t *testing.T) {
	ci, err := AgentCloudInit(AgentParams{K3sVersion: DefaultK3sVersion, PrivateIP: "10.0.1.11", ServerIP: "10.0.1.2", AgentToken: "tok-agent"})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := ParseCloudInit(ci)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := cc.File(K3sConfigPath)
	var k K3sConfig
	if err := yaml.Unmarshal([]byte(f.Content), &k); err != nil {
		t.Fatal(err)
	}
	if k.Server != "https://10.0.1.2:6443" || k.Token != "tok-agent" || k.NodeIP != "10.0.1.11" || k.AgentToken != "" {
		t.Errorf("agent config %+v", k)
	}
	script, _ := cc.File(InstallPath)
	if !strings.Contains(script.Content, "INSTALL_K3S_EXEC='agent'") || !strings.Contains(script.Content, "ip_addr='10.0.1.11'") {
		t.Errorf("agent installer:\n%s", script.Content)
	}
}

func TestCloudInitRefusesUnpinnedVersion(t *testing.T) {
	for _, v := range []string{"", "latest", "stable", "v1.34", "1.34.3+k3s1"} {
		if _, err := AgentCloudInit(AgentParams{K3sVersion: v}); err == nil {
			t.Errorf("version %q accepted", v)
		}
	}
}

func TestKubeconfig(t *testing.T) {
	kc, err := Kubeconfig("c", "https://203.0.113.5:6443", "CA", "CERT", "KEY")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Clusters []struct {
			Cluster map[string]string `yaml:"cluster"`
		} `yaml:"clusters"`
		Users []struct {
			User map[string]string `yaml:"user"`
		} `yaml:"users"`
		Current string `yaml:"current-context"`
	}
	if err := yaml.Unmarshal([]byte(kc), &doc); err != nil {
		t.Fatal(err)
	}
	dec := func(s string) string { b, _ := base64.StdEncoding.DecodeString(s); return string(b) }
	if doc.Clusters[0].Cluster["server"] != "https://203.0.113.5:6443" || dec(doc.Clusters[0].Cluster["certificate-authority-data"]) != "CA" ||
		dec(doc.Users[0].User["client-certificate-data"]) != "CERT" || dec(doc.Users[0].User["client-key-data"]) != "KEY" || doc.Current != "c" {
		t.Errorf("kubeconfig %s", kc)
	}
}

// TestPhilotesValuesLayout pins the layout the umbrella chart is being reorganised to.
func TestPhilotesValuesLayout(t *testing.T) {
	v := philotesValues(PhilotesInputs{S3Endpoint: "https://nbg1.your-objectstorage.com", S3Region: "nbg1", Bucket: "b1",
		CatalogURI: "http://cat/catalog", APIHost: "api.x.eu", DashboardHost: "app.x.eu", WorkerMin: 2, WorkerMax: 7})
	get := func(path ...string) interface{} {
		var cur interface{} = v
		for _, p := range path {
			cur = cur.(map[string]interface{})[p]
		}
		return cur
	}
	want := map[string]interface{}{
		"global.lake.s3Endpoint":                              "https://nbg1.your-objectstorage.com",
		"global.lake.s3Region":                                "nbg1",
		"global.lake.warehouse":                               "s3://b1/warehouse",
		"global.lake.catalogUri":                              "http://cat/catalog",
		"philotes-api.ingress.enabled":                        true,
		"philotes-api.ingress.host":                           "api.x.eu",
		"philotes-dashboard.ingress.enabled":                  true,
		"philotes-dashboard.ingress.host":                     "app.x.eu",
		"philotes-worker.worker.autoscaling.keda.minReplicas": 2,
		"philotes-worker.worker.autoscaling.keda.maxReplicas": 7,
	}
	for path, w := range want {
		if got := get(strings.Split(path, ".")...); got != w {
			t.Errorf("%s = %v, want %v", path, got, w)
		}
	}
	if len(v) != 4 {
		t.Errorf("top-level keys %d, want global and the three subcharts", len(v))
	}
}
