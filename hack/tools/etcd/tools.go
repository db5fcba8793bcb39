//go:build tools

// Package tools pins the etcd server (go.etcd.io/etcd/server/v3 v3.7.3, whose
// root package is the etcd main) in a module of its own, so that it cannot move
// kube-apiserver's dependencies.
package tools

import _ "go.etcd.io/etcd/server/v3"
