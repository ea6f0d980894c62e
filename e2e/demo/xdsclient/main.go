// Command xdsclient is the demo's proxyless gRPC client: grpc-go's own xDS
// client asks the router's xDS server (-xds) where xds:///<target> is,
// then sends one standard health Check, waiting for a ready connection,
// and prints the status and the address that answered: the sandbox's pod
// while it runs, the router while it is suspended (the router holds the
// RPC, resumes the sandbox and passes the RPC on).
//
//	xdsclient -xds 127.0.0.1:18000 -target 9001-alpha.default.sandbox.localhost
//	SERVING from 127.0.1.4:9001
//
// A program of your own bootstraps grpc-go's xDS client from a file named
// by GRPC_XDS_BOOTSTRAP instead; -print-bootstrap prints what to put there.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sandbox-router/sandbox-router/e2e/demo/xdsprobe"
)

func main() {
	xdsAddr := flag.String("xds", "127.0.0.1:18000", "the xDS server (host:port, plaintext): the demo router's --xds-listen")
	target := flag.String("target", "", "the sandbox to call: <port>-<sandbox>.<namespace>.<base-domain>, as in xds:///<target>")
	timeout := flag.Duration("timeout", 30*time.Second, "give up after this long (a suspended sandbox's RPC waits while it resumes)")
	node := flag.String("node", "xdsclient-"+strconv.Itoa(os.Getpid()), "the xDS node id this client sends")
	printBootstrap := flag.Bool("print-bootstrap", false, "print the xDS bootstrap (JSON) and exit")
	flag.Parse()
	if *printBootstrap {
		fmt.Println(string(xdsprobe.Bootstrap(*xdsAddr, *node)))
		return
	}
	if *target == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: xdsclient -xds host:port -target <port>-<sandbox>.<namespace>.<base-domain>")
		os.Exit(2)
	}
	t := strings.TrimPrefix(*target, "xds:///")
	conn, err := xdsprobe.Dial(*xdsAddr, t, *node)
	if err != nil {
		fmt.Fprintf(os.Stderr, "xdsclient: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	status, from, err := xdsprobe.Check(ctx, conn)
	if err != nil {
		fmt.Fprintf(os.Stderr, "xdsclient: xds:///%s: %v\n", t, err)
		cancel()
		conn.Close()
		os.Exit(1)
	}
	fmt.Println(xdsprobe.Answer(status, from))
}
