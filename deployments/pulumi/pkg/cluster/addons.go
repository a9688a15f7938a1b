package cluster

import (
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Chart is a Helm chart from a repository, pinned.
type Chart struct {
	Repo    string
	Name    string
	Version string
}

// Charts installed before Philotes, pinned (versions read on 2026-12-01 from each project's
// releases; `helm search repo <name> --versions` lists newer ones).
var (
	CertManager = Chart{Repo: "https://charts.jetstack.io", Name: "cert-manager", Version: "v1.19.1"}
	// ingress-nginx is in best-effort maintenance since its retirement was announced
	// (November 2025); the chart's values name it, so it stays until Philotes moves to
	// another controller.
	IngressNginx        = Chart{Repo: "https://kubernetes.github.io/ingress-nginx", Name: "ingress-nginx", Version: "4.13.3"}
	KubePrometheusStack = Chart{Repo: "https://prometheus-community.github.io/helm-charts", Name: "kube-prometheus-stack", Version: "79.5.0"}
	KEDA                = Chart{Repo: "https://kedacore.github.io/charts", Name: "keda", Version: "2.18.0"}
	Vault               = Chart{Repo: "https://helm.releases.hashicorp.com", Name: "vault", Version: "0.31.0"}
)

// Namespaces.
const (
	NSCertManager = "cert-manager"
	NSIngress     = "ingress-nginx"
	NSMonitoring  = "monitoring"
	NSKEDA        = "keda"
	NSVault       = "vault"
	NSPhilotes    = "philotes"
	ClusterIssuer = "letsencrypt"
	// PhilotesSecret holds what the chart reads from files (its secrets.existingSecret).
	PhilotesSecret = "philotes"
)

// Hosts are the public names the ingress serves.
type Hosts struct {
	API       string
	Dashboard string
	Grafana   string
}

// AddonsSpec is what goes into the cluster.
type AddonsSpec struct {
	Hosts               Hosts
	ACMEEmail           string
	Vault               bool
	ChartPath           string
	IngressReplicas     int
	HTTPNodePort        int
	HTTPSNodePort       int
	PrometheusRetention string
	// Philotes' values; Bucket is filled in from LakeBucket, an output.
	Philotes   PhilotesInputs
	LakeBucket pulumi.StringOutput
	// Secrets for the philotes Secret.
	S3AccessKeyID     pulumi.StringOutput
	S3SecretAccessKey pulumi.StringOutput
	BufferURL         pulumi.StringOutput
}

// Addons are the releases made (tests read their inputs).
type Addons struct {
	Releases      map[string]*helmv3.Release
	GrafanaSecret pulumi.StringOutput
}

// InstallAddons installs, through the cluster's own kubeconfig (provider k8s): cert-manager
// with a Let's Encrypt ClusterIssuer, kube-prometheus-stack (Grafana behind the ingress),
// ingress-nginx on the node ports the load balancer targets, KEDA, Vault if asked, then the
// Philotes umbrella chart from its local path with values from philotesValues.
func InstallAddons(ctx *pulumi.Context, name string, k8s *kubernetes.Provider, spec AddonsSpec) (*Addons, error) {
	out := &Addons{Releases: map[string]*helmv3.Release{}}
	release := func(key, ns string, c Chart, values pulumi.MapInput, deps ...pulumi.Resource) (*helmv3.Release, error) {
		r, err := helmv3.NewRelease(ctx, name+"-"+key, &helmv3.ReleaseArgs{
			Name:            pulumi.String(key),
			Namespace:       pulumi.String(ns),
			CreateNamespace: pulumi.Bool(true),
			Chart:           pulumi.String(c.Name),
			Version:         pulumi.String(c.Version),
			RepositoryOpts:  helmv3.RepositoryOptsArgs{Repo: pulumi.String(c.Repo)},
			Values:          values,
			Atomic:          pulumi.Bool(true),
			Timeout:         pulumi.Int(900),
		}, pulumi.Provider(k8s), pulumi.DependsOn(deps))
		if err == nil {
			out.Releases[key] = r
		}
		return r, err
	}
	tlsIngress := func(host, secret string) pulumi.Map {
		return pulumi.Map{
			"enabled":          pulumi.Bool(true),
			"ingressClassName": pulumi.String("nginx"),
			"annotations":      pulumi.StringMap{"cert-manager.io/cluster-issuer": pulumi.String(ClusterIssuer)},
			"hosts":            pulumi.StringArray{pulumi.String(host)},
			"tls": pulumi.Array{pulumi.Map{
				"secretName": pulumi.String(secret),
				"hosts":      pulumi.StringArray{pulumi.String(host)},
			}},
		}
	}

	certManager, err := release("cert-manager", NSCertManager, CertManager, pulumi.Map{
		"crds": pulumi.Map{"enabled": pulumi.Bool(true)},
	})
	if err != nil {
		return nil, err
	}
	issuer, err := apiextensions.NewCustomResource(ctx, name+"-letsencrypt", &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String("cert-manager.io/v1"),
		Kind:       pulumi.String("ClusterIssuer"),
		Metadata:   &metav1.ObjectMetaArgs{Name: pulumi.String(ClusterIssuer)},
		OtherFields: kubernetes.UntypedArgs{
			"spec": pulumi.Map{
				"acme": pulumi.Map{
					"server":              pulumi.String("https://acme-v02.api.letsencrypt.org/directory"),
					"email":               pulumi.String(spec.ACMEEmail),
					"privateKeySecretRef": pulumi.Map{"name": pulumi.String("letsencrypt-account")},
					"solvers": pulumi.Array{pulumi.Map{
						"http01": pulumi.Map{"ingress": pulumi.Map{"ingressClassName": pulumi.String("nginx")}},
					}},
				},
			},
		},
	}, pulumi.Provider(k8s), pulumi.DependsOn([]pulumi.Resource{certManager}))
	if err != nil {
		return nil, err
	}

	grafanaPassword, err := random.NewRandomPassword(ctx, name+"-grafana-admin", &random.RandomPasswordArgs{
		Length: pulumi.Int(32), Special: pulumi.Bool(false),
	})
	if err != nil {
		return nil, err
	}
	out.GrafanaSecret = pulumi.ToSecret(grafanaPassword.Result).(pulumi.StringOutput)
	monitoring, err := release("kube-prometheus-stack", NSMonitoring, KubePrometheusStack, pulumi.Map{
		"grafana": pulumi.Map{
			"adminPassword": out.GrafanaSecret,
			"ingress":       tlsIngress(spec.Hosts.Grafana, "grafana-tls"),
		},
		"prometheus": pulumi.Map{"prometheusSpec": pulumi.Map{
			"retention": pulumi.String(spec.PrometheusRetention),
			// Pick up Philotes' ServiceMonitor and PrometheusRule whatever their labels.
			"serviceMonitorSelectorNilUsesHelmValues": pulumi.Bool(false),
			"podMonitorSelectorNilUsesHelmValues":     pulumi.Bool(false),
			"ruleSelectorNilUsesHelmValues":           pulumi.Bool(false),
		}},
	}, issuer)
	if err != nil {
		return nil, err
	}
	ingress, err := release("ingress-nginx", NSIngress, IngressNginx, pulumi.Map{
		"controller": pulumi.Map{
			"replicaCount": pulumi.Int(spec.IngressReplicas),
			"service": pulumi.Map{
				"type":      pulumi.String("NodePort"),
				"nodePorts": pulumi.Map{"http": pulumi.Int(spec.HTTPNodePort), "https": pulumi.Int(spec.HTTPSNodePort)},
			},
			// The load balancer speaks the PROXY protocol (client addresses reach the API).
			"config":  pulumi.StringMap{"use-proxy-protocol": pulumi.String("true")},
			"metrics": pulumi.Map{"enabled": pulumi.Bool(true), "serviceMonitor": pulumi.Map{"enabled": pulumi.Bool(true)}},
		},
	}, monitoring)
	if err != nil {
		return nil, err
	}
	keda, err := release("keda", NSKEDA, KEDA, pulumi.Map{}, monitoring)
	if err != nil {
		return nil, err
	}
	deps := []pulumi.Resource{issuer, monitoring, ingress, keda}
	if spec.Vault {
		v, err := release("vault", NSVault, Vault, pulumi.Map{
			"server":   pulumi.Map{"standalone": pulumi.Map{"enabled": pulumi.Bool(true)}, "dataStorage": pulumi.Map{"size": pulumi.String("5Gi")}},
			"injector": pulumi.Map{"enabled": pulumi.Bool(true)},
		})
		if err != nil {
			return nil, err
		}
		deps = append(deps, v)
	}

	ns, err := corev1.NewNamespace(ctx, name+"-philotes", &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(NSPhilotes)},
	}, pulumi.Provider(k8s))
	if err != nil {
		return nil, err
	}
	// PHILOTES_ENCRYPTION_KEY is 32 bytes, base64 or hex.
	encryptionKey, err := random.NewRandomId(ctx, name+"-encryption-key", &random.RandomIdArgs{
		ByteLength: pulumi.Int(32),
	})
	if err != nil {
		return nil, err
	}
	secret, err := corev1.NewSecret(ctx, name+"-philotes", &corev1.SecretArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(PhilotesSecret), Namespace: pulumi.String(NSPhilotes)},
		Type:     pulumi.String("Opaque"),
		StringData: pulumi.StringMap{
			"buffer-url":           spec.BufferURL,
			"encryption-key":       pulumi.ToSecret(encryptionKey.Hex).(pulumi.StringOutput),
			"s3-access-key-id":     spec.S3AccessKeyID,
			"s3-secret-access-key": spec.S3SecretAccessKey,
		},
	}, pulumi.Provider(k8s), pulumi.DependsOn([]pulumi.Resource{ns}))
	if err != nil {
		return nil, err
	}
	values := spec.LakeBucket.ApplyT(func(bucket string) map[string]interface{} {
		in := spec.Philotes
		in.Bucket = bucket
		return philotesValues(in)
	}).(pulumi.MapOutput)
	philotes, err := helmv3.NewRelease(ctx, name+"-philotes-chart", &helmv3.ReleaseArgs{
		Name:             pulumi.String("philotes"),
		Namespace:        pulumi.String(NSPhilotes),
		Chart:            pulumi.String(spec.ChartPath),
		DependencyUpdate: pulumi.Bool(true),
		Values:           values,
		Atomic:           pulumi.Bool(true),
		Timeout:          pulumi.Int(900),
	}, pulumi.Provider(k8s), pulumi.DependsOn(append(deps, secret)))
	if err != nil {
		return nil, err
	}
	out.Releases["philotes"] = philotes
	return out, nil
}
