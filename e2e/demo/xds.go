package main

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sandbox-router/sandbox-router/e2e/demo/xdsprobe"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// The router serves xDS (--xds-listen) from the same resolver as its data
// plane. A proxyless grpc-go client dials xds:///<port>-<sandbox>.<ns>.
// <base-domain>: while the sandbox runs, the endpoint it gets is the pod,
// which it calls directly; otherwise it is the router fleet (the demo's
// router, --xds-router-endpoints), whose activator holds the RPC while it
// resumes the sandbox; once the new pod is Ready the xDS server pushes it
// and the channel's next RPCs go straight there.

// grpcPort is where every sim pod serves the grpc-go health service.
const grpcPort uint16 = 9001

// xdsSleepy is the sandbox created suspended that a gRPC call over xDS
// wakes (sleepy belongs to the idle checks).
const xdsSleepy = "grpc-sleepy"

// xdsTarget is the xds:/// target of a sandbox's gRPC port.
func xdsTarget(namespace, name string) string {
	return fmt.Sprintf("%d-%s.%s.%s", grpcPort, name, namespace, baseDomain)
}

// xdsCommand is the command line of the demo's client for target.
func xdsCommand(e *env, target string) string {
	return e.xdsClient + " -xds " + e.xds + " -target " + target
}

// xdsNode names the demo's own xDS clients, one per channel.
func xdsNode(what string) string { return "sandbox-router-demo-" + what }

// xdsChecks: grpc-go's xDS client reaches alpha's pod directly; then
// xdsSleepy, suspended, through the router, which resumes it; its status
// afterwards; and the same channel going straight to the new pod once
// the xDS server pushed it.
func xdsChecks(e *env) []check {
	router, routerErr := netip.ParseAddrPort(e.http)
	var conn *grpc.ClientConn // xdsSleepy's channel, for its last check to close
	alpha := xdsTarget("default", "alpha")
	sleepy := xdsTarget("default", xdsSleepy)
	return []check{
		{
			note: []string{
				"proxyless gRPC over xDS: the router serves xDS on " + e.xds + " (--xds-listen); grpc-go's own xDS client asks it",
				"for xds:///" + alpha + " and calls alpha's pod directly (the router is not on the path):",
				"a grpc.health.v1 Check on the pod's grpc-go server, port " + strconv.Itoa(int(grpcPort)) + " (e2e/demo/xdsclient; -print-bootstrap shows its bootstrap)",
			},
			curl: xdsCommand(e, alpha),
			want: "SERVING from alpha's pod, port " + strconv.Itoa(int(grpcPort)),
			do: func(ctx context.Context) (string, bool) {
				pod, ok := e.sim.PodInfo("default", "alpha")
				if !ok || !pod.Ready {
					return "alpha has no Ready pod", false
				}
				c, err := xdsprobe.Dial(e.xds, alpha, xdsNode("alpha"))
				if err != nil {
					return err.Error(), false
				}
				defer c.Close()
				got, from, ok := xdsCall(ctx, c)
				if !ok {
					return got, false
				}
				want := netip.AddrPortFrom(pod.IP, grpcPort)
				if from != want {
					return got + " (not alpha's pod " + want.String() + ")", false
				}
				return got + " (alpha's pod " + pod.Name + ", directly)", true
			},
		},
		{
			note: []string{
				"a suspended sandbox over xDS: " + xdsSleepy + " has no pod, so the xDS server gives the router (" + e.http + ", --xds-router-endpoints)",
				"as its endpoint; the router holds the RPC ~" + seconds(e.startDelay) + " while it resumes " + xdsSleepy + ", then passes it on to the new pod",
			},
			curl:  xdsCommand(e, sleepy),
			want:  "SERVING from the router " + e.http,
			timed: true,
			do: func(ctx context.Context) (string, bool) {
				if routerErr != nil {
					return "the router's address: " + routerErr.Error(), false
				}
				if _, running := e.sim.PodInfo("default", xdsSleepy); running {
					return xdsSleepy + " has a pod already: not suspended", false
				}
				c, err := xdsprobe.Dial(e.xds, sleepy, xdsNode(xdsSleepy))
				if err != nil {
					return err.Error(), false
				}
				conn = c
				got, from, ok := xdsCall(ctx, c)
				if !ok {
					return got, false
				}
				if from != router {
					return got + " (not the router " + router.String() + ")", false
				}
				return got + " (the router, which resumed " + xdsSleepy + ")", true
			},
		},
		xdsRunningCheck(e),
		{
			note: []string{"... and once the xDS server pushed the new pod, the same channel's RPCs go straight to it"},
			want: "SERVING from " + xdsSleepy + "'s new pod, port " + strconv.Itoa(int(grpcPort)),
			do: func(ctx context.Context) (string, bool) {
				if conn == nil {
					return "no channel (the call above failed)", false
				}
				defer conn.Close()
				return xdsConverge(ctx, e, conn, router)
			},
		},
	}
}

// xdsCall sends one health Check and describes the answer as the client
// prints it; ok when SERVING.
func xdsCall(ctx context.Context, conn *grpc.ClientConn) (string, netip.AddrPort, bool) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	status, from, err := xdsprobe.Check(ctx, conn)
	if err != nil {
		return err.Error(), from, false
	}
	got := xdsprobe.Answer(status, from)
	return got, from, status == healthpb.HealthCheckResponse_SERVING
}

// xdsRunningCheck waits, on a watch of the Sandbox, until xdsSleepy is
// Running with the router's resume: spec.operatingMode Running set by
// the router, Ready, a pod address.
func xdsRunningCheck(e *env) check {
	return check{
		note: []string{"... " + xdsSleepy + "'s status now (kubectl get sandbox " + xdsSleepy + " shows it)"},
		want: "spec.operatingMode Running (set by " + routerFieldManager + "), Ready=True, status.podIPs",
		do: func(ctx context.Context) (string, bool) {
			return awaitSandbox(ctx, e, xdsSleepy, func(u *unstructured.Unstructured) bool {
				return operatingMode(u) == "Running" && modeManager(u) == routerFieldManager &&
					condition(u, "Ready") == "True" && hasPodIPs(u)
			})
		},
	}
}

// xdsConverge sends RPCs on conn until xdsSleepy's pod answers one
// directly. grpc-go applies the update it acknowledged on its own
// goroutines, so until then an RPC may still go to the router, which
// passes it on to the same pod; none may fail or go anywhere else.
func xdsConverge(ctx context.Context, e *env, conn *grpc.ClientConn, router netip.AddrPort) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	pod, err := e.sim.WaitPod(ctx, "default", xdsSleepy, func(p sim.PodInfo) bool { return p.Ready })
	if err != nil {
		return "no Ready pod: " + err.Error(), false
	}
	want := netip.AddrPortFrom(pod.IP, grpcPort)
	viaRouter := 0
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got, from, ok := xdsCall(ctx, conn)
		switch {
		case !ok:
			return got, false
		case from == want:
			how := "the router is off the path again"
			if viaRouter > 0 {
				how = fmt.Sprintf("after %d more through the router, until grpc-go applied the push", viaRouter)
			}
			return fmt.Sprintf("%s (%s's new pod %s, directly: %s)", got, xdsSleepy, pod.Name, how), true
		case from != router:
			return got + " (neither the pod " + want.String() + " nor the router)", false
		}
		viaRouter++
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Sprintf("still answered by the router after %d RPCs: %v", viaRouter, ctx.Err()), false
		}
	}
}
