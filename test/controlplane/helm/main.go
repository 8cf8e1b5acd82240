//go:build tools

// This module pins the helm.sh/helm/v3 version the chart tests use;
// scripts/controlplane.sh builds `go build helm.sh/helm/v3/cmd/helm` inside it.
// The blank import (never compiled: the tools build tag) keeps the
// requirement in go.mod under `go mod tidy`. See ../README.md.
package main

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
