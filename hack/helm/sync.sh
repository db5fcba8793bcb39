#!/usr/bin/env bash
# Copies what the Helm chart and config/prometheus share from their sources
# (`make chart-sync`, run by `make manifests`):
#   config/crd/bases/*.yaml                  -> charts/stationfleet/files/crds/
#   config/rbac/role.yaml                     -> charts/stationfleet/files/manager-role.yaml
#   config/prometheus/stationfleet.rules.yaml -> charts/stationfleet/files/
#                                               and config/prometheus/prometheusrule.yaml
#   config/grafana/stationfleet.json          -> charts/stationfleet/files/
# test/deploy (TestChartCopiesInSync) fails when a copy differs.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
chart=charts/stationfleet

rm -f "$chart"/files/crds/*.yaml
cp config/crd/bases/*.yaml "$chart/files/crds/"
cp config/rbac/role.yaml "$chart/files/manager-role.yaml"
cp config/prometheus/stationfleet.rules.yaml "$chart/files/stationfleet.rules.yaml"
cp config/grafana/stationfleet.json "$chart/files/stationfleet.json"
{
  cat <<'HEAD'
# Generated from stationfleet.rules.yaml by `make chart-sync`: edit that file.
# The alert rules as a PrometheusRule for the Prometheus Operator
# (kubectl apply -k config/prometheus).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: rules
  namespace: system
spec:
HEAD
  # The rules file's lines, under spec: (blank lines stay blank).
  sed -e '/^#/d' -e '/./s/^/  /' config/prometheus/stationfleet.rules.yaml
} > config/prometheus/prometheusrule.yaml
