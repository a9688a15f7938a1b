#!/usr/bin/env bash
# Packs the local subcharts into the `philotes` umbrella chart's charts/ directory with
# `helm dependency update`, in dependency order (each subchart takes the philotes-common
# library first). No repository is contacted: every dependency is a file:// chart beside it.
# deploy.sh and .github/workflows/release.yml run this before Helm reads the umbrella.
set -euo pipefail
helm_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../kubernetes/helm" && pwd)
for chart in philotes-worker philotes-api philotes-dashboard philotes-postgresql philotes-objectstore philotes; do
  helm dependency update "$helm_dir/$chart"
done
