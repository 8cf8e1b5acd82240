// Command kubelet is a thin entry point around the upstream kubelet
// command, so a node for the end-to-end tests can be built with plain
// `go build` from the module proxy, at the same Kubernetes version as
// ../kube-apiserver. See ../README.md and scripts/controlplane.sh.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/restclient"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
