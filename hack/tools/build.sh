#!/usr/bin/env bash
# Builds the pinned tool binaries (kube-apiserver, kubectl, etcd,
# controller-gen) from the Go module proxy and links them into bin/.
#
# The binaries are cached outside the clone, under
# ${STATIONFLEET_TOOLS_CACHE:-$HOME/.cache/stationfleet/tools}/<hash>, where
# <hash> covers every go.mod/go.sum of hack/tools and this script: a second
# run, or a second clone on the same machine, takes seconds.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/bin"
cache_root=${STATIONFLEET_TOOLS_CACHE:-$HOME/.cache/stationfleet/tools}

k8s_version=v1.37.2
hash=$(cat "$here"/build.sh "$here"/*/go.mod "$here"/*/go.sum | sha256sum | cut -c1-16)
cache="$cache_root/$hash"

export CGO_ENABLED=0
build() { # module-dir output package [ldflags]
  local dir=$1 out=$2 pkg=$3 ldflags=${4:-"-s -w"}
  if [ -x "$cache/$out" ]; then return 0; fi
  echo "building $out ($pkg)..." >&2
  local start=$SECONDS
  (cd "$here/$dir" && go build -trimpath -tags tools -ldflags "$ldflags" -o "$cache/$out.tmp" "$pkg")
  mv "$cache/$out.tmp" "$cache/$out"
  echo "built $out in $((SECONDS - start))s" >&2
}

mkdir -p "$cache" "$bin"
# Without the version flags the apiserver reports v0.0.0, and clients that
# check the server version (kubectl, discovery) misbehave.
kver="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version \
 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=37"

build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kver"
build kubernetes kubectl k8s.io/kubernetes/cmd/kubectl "$kver"
build etcd etcd go.etcd.io/etcd/server/v3
build controller-gen controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen

for t in kube-apiserver kubectl etcd controller-gen; do
  ln -sfn "$cache/$t" "$bin/$t"
done
echo "tools ready in $bin (cache $cache)" >&2
