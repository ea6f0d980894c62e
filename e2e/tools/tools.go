//go:build tools

// Package tools pins the real kube-apiserver, etcd and kubectl that the e2e
// harness builds from source; the blank imports keep `go mod tidy` from
// dropping them. (helm is built from a module of its own: helm/.)
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
