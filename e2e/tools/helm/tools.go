//go:build tools

// Package tools pins the real helm CLI that the e2e harness builds from
// source (e2e/cluster: HelmBinary); the blank import keeps `go mod tidy`
// from dropping it.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
