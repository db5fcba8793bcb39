#!/usr/bin/env bash
# Builds the pinned helm (helm.sh/helm/v3, see go.mod) from the Go module
# proxy and links it into bin/, for the chart tests (test/deploy) and
# `make helm`.
#
# The binary is cached outside the clone, under
# ${STATIONFLEET_HELM_CACHE:-$HOME/.cache/stationfleet/helm}/<hash>, where
# <hash> covers this directory's go.mod, go.sum and this script: a second
# run, or a second clone on the same machine, takes a second. It is kept
# apart from hack/tools so that changing helm never rebuilds kube-apiserver.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/bin"
cache_root=${STATIONFLEET_HELM_CACHE:-$HOME/.cache/stationfleet/helm}

helm_version=$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" {print $3}' "$here/go.mod")
# The Kubernetes version helm assumes without a cluster (helm template, helm
# lint) is the one of the client-go it is built with, as helm's Makefile
# sets it; without it helm assumes 1.20.
k8s_minor=$(awk '$1 == "k8s.io/client-go" {split($2, v, "."); print v[2]}' "$here/go.mod")
hash=$(cat "$here/build.sh" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-16)
cache="$cache_root/$hash"

mkdir -p "$cache" "$bin"
if [ ! -x "$cache/helm" ]; then
  echo "building helm $helm_version..." >&2
  start=$SECONDS
  # The version helm reports (helm version) is set at link time, as its
  # own Makefile does.
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -tags tools \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor" \
    -o "$cache/helm.tmp" helm.sh/helm/v3/cmd/helm)
  mv "$cache/helm.tmp" "$cache/helm"
  echo "built helm in $((SECONDS - start))s" >&2
fi
ln -sfn "$cache/helm" "$bin/helm"
echo "helm $helm_version ready in $bin (cache $cache)" >&2
