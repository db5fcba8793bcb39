//go:build tools

// Package tools pins the Kubernetes control-plane binaries the tests run
// (kube-apiserver and kubectl from k8s.io/kubernetes v1.37.2). It is its own
// module so the project's dependencies never move the apiserver's.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
