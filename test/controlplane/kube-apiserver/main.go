// Command kube-apiserver is a thin entry point around the upstream
// kube-apiserver command, so the API server can be built with plain
// `go build` from the module proxy (no Kubernetes checkout, no Docker).
// It is only meant for the end-to-end tests of this repository; see
// ../README.md and scripts/controlplane.sh.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	// JSON log format (--logging-format=json) and the client-go/version
	// metrics are registered by side effect, as in the upstream binary.
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
