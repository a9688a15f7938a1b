package cluster

// PhilotesInputs is what the stack knows that the Philotes umbrella chart needs.
type PhilotesInputs struct {
	S3Endpoint    string
	S3Region      string
	Bucket        string
	CatalogURI    string
	APIHost       string
	DashboardHost string
	WorkerMin     int
	WorkerMax     int
}

// philotesValues is the one place where stack facts become values of the Philotes umbrella
// chart (deployments/kubernetes/helm/philotes with its subcharts philotes-api,
// philotes-dashboard and philotes-worker; shared settings under global). Everything else the
// chart needs keeps its defaults. When the chart's values move, only this function changes.
func philotesValues(in PhilotesInputs) map[string]interface{} {
	return map[string]interface{}{
		"global": map[string]interface{}{
			"lake": map[string]interface{}{
				"s3Endpoint": in.S3Endpoint,
				"s3Region":   in.S3Region,
				"warehouse":  "s3://" + in.Bucket + "/warehouse",
				"catalogUri": in.CatalogURI,
			},
		},
		"philotes-api": map[string]interface{}{
			"ingress": map[string]interface{}{
				"enabled": true,
				"host":    in.APIHost,
			},
		},
		"philotes-dashboard": map[string]interface{}{
			"ingress": map[string]interface{}{
				"enabled": true,
				"host":    in.DashboardHost,
			},
		},
		"philotes-worker": map[string]interface{}{
			"worker": map[string]interface{}{
				"autoscaling": map[string]interface{}{
					"keda": map[string]interface{}{
						"minReplicas": in.WorkerMin,
						"maxReplicas": in.WorkerMax,
					},
				},
			},
		},
	}
}
