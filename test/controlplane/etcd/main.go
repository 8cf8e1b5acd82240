// Command etcd runs the etcd server from go.etcd.io/etcd/server/v3, built
// with plain `go build` from the module proxy. Only meant for the
// end-to-end test control plane; see ../README.md.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
