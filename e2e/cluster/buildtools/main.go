// Command buildtools builds the e2e harness's tools from source into
// e2e/tools/bin (kube-apiserver, etcd, kubectl, helm; see e2e/cluster),
// skipping those already built and newer than their module's go.mod and
// go.sum, and prints their paths. Run it before the e2e tests:
//
//	go run ./e2e/cluster/buildtools
//
// A cold build takes many minutes on two cores; the tests build whatever
// is missing themselves, so running it is never required.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	paths, err := cluster.BuildAll(ctx, log.Printf)
	if err != nil {
		log.Fatal(err)
	}
	names := make([]string, 0, len(paths))
	for n := range paths {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("%s\t%s\n", n, paths[n])
	}
}
