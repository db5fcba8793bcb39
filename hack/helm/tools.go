//go:build tools

// Package tools pins helm (helm.sh/helm/v3 v3.22.0), which the chart tests
// run (helm lint, helm template). hack/helm/build.sh builds it.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
