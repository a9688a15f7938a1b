// Package cluster is K3s on plain machines: the cloud-init that installs a pinned K3s on the
// server and joins the agents over the private network, the join tokens, the cluster's
// certificate authorities and the admin kubeconfig made from them, and what is installed in
// the cluster once it answers (cert-manager, ingress-nginx, kube-prometheus-stack, KEDA,
// optionally Vault, and Philotes).
package cluster

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// DefaultK3sVersion is the K3s release every node installs unless philotes:k3sVersion says
// otherwise. v1.34.3+k3s1 was K3s' stable channel on 2025-12-19 (k3s-io/k3s#13374).
const DefaultK3sVersion = "v1.34.3+k3s1"

var k3sVersionRE = regexp.MustCompile(`^v1\.[0-9]+\.[0-9]+\+k3s[0-9]+$`)

// ValidK3sVersion reports whether v names one K3s release exactly (no channel, no "latest").
func ValidK3sVersion(v string) bool { return k3sVersionRE.MatchString(v) }

// Paths on the nodes.
const (
	K3sConfigPath   = "/etc/rancher/k3s/config.yaml"
	InstallPath     = "/usr/local/sbin/philotes-k3s-install"
	MetadataUnit    = "/etc/systemd/system/philotes-block-metadata.service"
	ServerTLSDir    = "/var/lib/rancher/k3s/server/tls"
	PodCIDR         = "10.42.0.0/16"
	ServiceCIDR     = "10.43.0.0/16"
	metadataAddress = "169.254.169.254"
)

// CA is one certificate authority K3s would otherwise generate on first start.
type CA struct {
	Name    string // server-ca, client-ca, request-header-ca
	CertPEM string
	KeyPEM  string
}

// ServerParams is what the server's cloud-init needs, all resolved.
type ServerParams struct {
	K3sVersion string
	PrivateIP  string
	PublicIP   string
	Token      string
	AgentToken string
	Labels     map[string]string
	Taints     []string
	CAs        []CA
}

// AgentParams is what an agent's cloud-init needs, all resolved.
type AgentParams struct {
	K3sVersion string
	PrivateIP  string
	ServerIP   string // the server's private address
	AgentToken string
	Labels     map[string]string
	Taints     []string
}

// CloudConfig is the subset of cloud-init's #cloud-config this program writes (and the tests
// read back).
type CloudConfig struct {
	WriteFiles []WriteFile `yaml:"write_files"`
	RunCmd     [][]string  `yaml:"runcmd"`
}

// WriteFile is one cloud-init write_files entry.
type WriteFile struct {
	Path        string `yaml:"path"`
	Permissions string `yaml:"permissions"`
	Owner       string `yaml:"owner,omitempty"`
	Content     string `yaml:"content"`
}

// K3sConfig is /etc/rancher/k3s/config.yaml: K3s reads its flags from it.
type K3sConfig struct {
	Server              string   `yaml:"server,omitempty"`
	Token               string   `yaml:"token,omitempty"`
	AgentToken          string   `yaml:"agent-token,omitempty"`
	NodeIP              string   `yaml:"node-ip"`
	AdvertiseAddress    string   `yaml:"advertise-address,omitempty"`
	NodeExternalIP      string   `yaml:"node-external-ip,omitempty"`
	TLSSAN              []string `yaml:"tls-san,omitempty"`
	Disable             []string `yaml:"disable,omitempty"`
	ClusterCIDR         string   `yaml:"cluster-cidr,omitempty"`
	ServiceCIDR         string   `yaml:"service-cidr,omitempty"`
	WriteKubeconfigMode string   `yaml:"write-kubeconfig-mode,omitempty"`
	SecretsEncryption   bool     `yaml:"secrets-encryption,omitempty"`
	NodeLabel           []string `yaml:"node-label,omitempty"`
	NodeTaint           []string `yaml:"node-taint,omitempty"`
}

// ServerCloudInit renders the control plane's cloud-init: the CAs where K3s looks for them
// (so the kubeconfig can be made without logging in), its config, and the pinned installer.
func ServerCloudInit(p ServerParams) (string, error) {
	if !ValidK3sVersion(p.K3sVersion) {
		return "", fmt.Errorf("k3s version %q is not a K3s release such as %s", p.K3sVersion, DefaultK3sVersion)
	}
	cfg := K3sConfig{
		Token:               p.Token,
		AgentToken:          p.AgentToken,
		NodeIP:              p.PrivateIP,
		AdvertiseAddress:    p.PrivateIP,
		NodeExternalIP:      p.PublicIP,
		TLSSAN:              []string{p.PublicIP, p.PrivateIP},
		Disable:             []string{"traefik", "servicelb"},
		ClusterCIDR:         PodCIDR,
		ServiceCIDR:         ServiceCIDR,
		WriteKubeconfigMode: "0600",
		SecretsEncryption:   true,
		NodeLabel:           labelList(p.Labels),
		NodeTaint:           p.Taints,
	}
	files := []WriteFile{}
	for _, ca := range p.CAs {
		files = append(files,
			WriteFile{Path: ServerTLSDir + "/" + ca.Name + ".crt", Permissions: "0644", Content: ca.CertPEM},
			WriteFile{Path: ServerTLSDir + "/" + ca.Name + ".key", Permissions: "0600", Content: ca.KeyPEM},
		)
	}
	return render(cfg, files, "server", p.PrivateIP, p.K3sVersion)
}

// AgentCloudInit renders an agent's cloud-init: it joins the server over the private network
// with the agent token.
func AgentCloudInit(p AgentParams) (string, error) {
	if !ValidK3sVersion(p.K3sVersion) {
		return "", fmt.Errorf("k3s version %q is not a K3s release such as %s", p.K3sVersion, DefaultK3sVersion)
	}
	cfg := K3sConfig{
		Server:    "https://" + p.ServerIP + ":6443",
		Token:     p.AgentToken,
		NodeIP:    p.PrivateIP,
		NodeLabel: labelList(p.Labels),
		NodeTaint: p.Taints,
	}
	return render(cfg, nil, "agent", p.PrivateIP, p.K3sVersion)
}

func render(cfg K3sConfig, files []WriteFile, role, privateIP, version string) (string, error) {
	k3s, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	files = append([]WriteFile{
		{Path: K3sConfigPath, Permissions: "0600", Content: string(k3s)},
		{Path: MetadataUnit, Permissions: "0644", Content: metadataUnit()},
		{Path: InstallPath, Permissions: "0700", Content: InstallScript(role, privateIP, version)},
	}, files...)
	cc := CloudConfig{
		WriteFiles: files,
		RunCmd: [][]string{
			{"systemctl", "daemon-reload"},
			{"systemctl", "enable", "--now", "philotes-block-metadata.service"},
			{InstallPath},
		},
	}
	out, err := yaml.Marshal(cc)
	if err != nil {
		return "", err
	}
	return "#cloud-config\n" + string(out), nil
}

// InstallScript waits for the node's private address (the cloud attaches the network while
// the machine boots), pins flannel to that interface, then runs K3s' installer of the pinned
// release with the pinned binary version.
func InstallScript(role, privateIP, version string) string {
	exec := "server"
	if role == "agent" {
		exec = "agent"
	}
	// The tag in the URL is the version with "+" escaped.
	tag := strings.ReplaceAll(version, "+", "%2B")
	return fmt.Sprintf(`#!/bin/sh
# Installs K3s %[3]s (%[2]s) on the private address %[1]s (written by Philotes' Pulumi program).
set -eu
ip_addr='%[1]s'
i=0
until ip -4 -o addr show | awk '{split($4, a, "/"); print a[1]}' | grep -qx "$ip_addr"; do
  i=$((i + 1))
  if [ "$i" -gt 150 ]; then echo "private address $ip_addr never appeared" >&2; exit 1; fi
  sleep 2
done
iface=$(ip -4 -o addr show | awk -v want="$ip_addr" '{split($4, a, "/"); if (a[1] == want) print $2}')
printf 'flannel-iface: %%s\n' "$iface" >> %[5]s
curl -fsSL --retry 10 --retry-delay 5 -o /root/k3s-install.sh 'https://raw.githubusercontent.com/k3s-io/k3s/%[4]s/install.sh'
INSTALL_K3S_VERSION='%[3]s' INSTALL_K3S_EXEC='%[6]s' sh /root/k3s-install.sh
`, privateIP, role, version, tag, K3sConfigPath, exec)
}

// metadataUnit keeps pods from reading the cloud's metadata service, which serves this
// cloud-init (join token, CA keys) to anything on the node: packets from the pod network to
// 169.254.169.254 are dropped before routing. The node itself still reaches it.
func metadataUnit() string {
	return fmt.Sprintf(`[Unit]
Description=Keep pods away from the cloud metadata service (it serves the node's cloud-init)
Before=k3s.service k3s-agent.service
After=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'iptables -t mangle -C PREROUTING -s %[1]s -d %[2]s -j DROP 2>/dev/null || iptables -t mangle -I PREROUTING -s %[1]s -d %[2]s -j DROP'

[Install]
WantedBy=multi-user.target
`, PodCIDR, metadataAddress)
}

// labelList turns labels into K3s' key=value list, sorted so the cloud-init is stable.
func labelList(labels map[string]string) []string {
	var out []string
	for k, v := range labels {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// ParseCloudInit reads a cloud-init rendered above back (tests, and a check before use).
func ParseCloudInit(s string) (*CloudConfig, error) {
	if !strings.HasPrefix(s, "#cloud-config\n") {
		return nil, fmt.Errorf("cloud-init does not start with #cloud-config")
	}
	var cc CloudConfig
	if err := yaml.Unmarshal([]byte(s), &cc); err != nil {
		return nil, err
	}
	return &cc, nil
}

// File returns the write_files entry at path.
func (c *CloudConfig) File(path string) (WriteFile, bool) {
	for _, f := range c.WriteFiles {
		if f.Path == path {
			return f, true
		}
	}
	return WriteFile{}, false
}
