//go:build tools

// Package tools pins controller-gen (sigs.k8s.io/controller-tools v0.23.0),
// which generates the CRD, RBAC and deepcopy code.
package tools

import _ "sigs.k8s.io/controller-tools/cmd/controller-gen"
