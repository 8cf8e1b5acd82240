// Command pause is the sandbox ("pause") container of the test node: it
// holds the pod's namespaces and sleeps until SIGTERM or SIGINT. Built
// statically (CGO_ENABLED=0) so its image needs no other file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
