#!/usr/bin/env bash
# Deploy (or upgrade) Philotes on the cluster of the current kubeconfig context with the chart's
# values for one environment, and wait until every workload is ready:
#
#   deployments/scripts/deploy.sh dev|staging|prod [more helm flags, e.g. --set image.tag=1.2.3]
#
# The release name and namespace are PHILOTES_RELEASE and PHILOTES_NAMESPACE (default
# philotes), the wait PHILOTES_DEPLOY_TIMEOUT (default 10m). The chart's migration hook runs
# `philotes migrate` before the workloads roll. .github/workflows/deploy.yml calls this.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
chart="$root/deployments/kubernetes/helm/philotes"
env=${1:-}
case "$env" in
  dev|staging|prod) shift ;;
  *)
    echo "usage: deploy.sh dev|staging|prod [helm flags]  (got '${env}'): the environment picks values.<env>.yaml of $chart" >&2
    exit 2
    ;;
esac
if ! command -v helm >/dev/null; then
  echo "deploy.sh: helm is not installed; install Helm 3.14 or later (https://helm.sh/docs/intro/install/) and try again" >&2
  exit 2
fi
release=${PHILOTES_RELEASE:-philotes}
namespace=${PHILOTES_NAMESPACE:-philotes}
timeout=${PHILOTES_DEPLOY_TIMEOUT:-10m}
echo "deploy.sh: $release ($env) into namespace $namespace, waiting up to $timeout"
# The umbrella's subcharts (philotes-worker, -api, -dashboard, …) are local: pack them first.
"$root/deployments/scripts/helm-deps.sh"
helm upgrade --install "$release" "$chart" \
  --namespace "$namespace" --create-namespace \
  --values "$chart/values.$env.yaml" \
  --wait --timeout "$timeout" \
  "$@"
helm status "$release" --namespace "$namespace"
