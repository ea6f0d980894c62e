// Command demo runs the local demo on a real API server: etcd and
// kube-apiserver (e2e/cluster) with the Sandbox CRD and the router's RBAC
// from deploy/, the simulated sandbox controller and kubelet (e2e/sim)
// giving each sandbox a pod with a real HTTP backend on its own loopback
// address, and the real router binary as its own process, watching the API
// server as the non-admin user "router". It runs every request it is about
// to suggest once, prints the curl lines with the answer each got, and
// keeps running until Ctrl-C (SIGINT or SIGTERM), when it stops the
// router, the sim and the API server, each by its PID, and removes its
// temporary directory. With -smoke it exits after the requests instead:
// 0 when each answered as expected, 1 otherwise.
//
// A second router process, the guarded one, runs beside it with access
// control on (access.go): the ServiceAccount team-a/agent may reach
// team-a/beta only; the demo shows a request without a token refused,
// the agent's token allowed on beta and refused on alpha, and a preview
// link minted by the agent and opened with curl's cookie jar. It also
// serves the MCP endpoint (mcp.go) on its own host, mcp.sandbox.localhost:
// the demo prints the agent's MCP URL with a curl initialize and the
// claude mcp add line, and drives it with the Go SDK's MCP client (the
// agent's tools see beta and nothing else).
//
// The router runs with the activator (its default with the cluster
// resolver): the request for the suspended sandbox default/sleepy is held
// while the router resumes it. sleepy has a short idle timeout (the
// sandbox-router.dev/idle-timeout annotation, -idle-timeout), so the
// router, leading the demo's Lease, suspends it again once nobody used it
// that long; the demo watches the Sandbox and says so. With -smoke it
// waits for that suspension and wakes sleepy once more.
//
// The router also serves xDS (xds.go): each pod runs a grpc-go server on
// port 9001, and grpc-go's own xDS client, asking the router's xDS server,
// reaches a running sandbox's pod directly and a suspended one through the
// router, which holds the RPC while it resumes the sandbox. The demo
// prints the same call as a command line for its small client,
// e2e/demo/xdsclient.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
)

func main() {
	var o options
	flag.StringVar(&o.RouterBin, "router", "", "router binary (empty: build cmd/sandbox-router into the demo's temporary directory)")
	flag.IntVar(&o.HTTPPort, "port", 8080, "router proxy port on 127.0.0.1 (0: any free port)")
	flag.IntVar(&o.AdminPort, "admin-port", 9090, "router admin port on 127.0.0.1 (0: any free port)")
	flag.IntVar(&o.AccessPort, "access-port", 8082, "the guarded router's proxy port (access control on; 0: any free port)")
	flag.IntVar(&o.AccessAdminPort, "access-admin-port", 9092, "the guarded router's admin port (0: any free port)")
	flag.IntVar(&o.XDSPort, "xds-port", 18000, "the router's xDS server port on 127.0.0.1 (0: any free port)")
	flag.IntVar(&o.DashboardPort, "dashboard-port", 8090, "the router's dashboard port on 127.0.0.1 (0: any free port)")
	flag.IntVar(&o.AccessDashboardPort, "access-dashboard-port", 8092, "the guarded router's dashboard port, with sign-in (0: any free port)")
	flag.StringVar(&o.XDSClient, "xdsclient", "", "the built e2e/demo/xdsclient, for the command lines the demo prints (empty: go run ./e2e/demo/xdsclient)")
	flag.BoolVar(&o.Smoke, "smoke", false, "run every request once, check each answer, stop everything and exit 0 or 1")
	flag.DurationVar(&o.StartDelay, "start-delay", 500*time.Millisecond, "simulated pod start time (image pull and container start)")
	flag.DurationVar(&o.IdleTimeout, "idle-timeout", 0, "sleepy's idle timeout (its sandbox-router.dev/idle-timeout annotation); 0: "+
		defaultIdleTimeout.String()+", with -smoke "+defaultSmokeIdleTimeout.String())
	flag.Parse()
	o.Out = os.Stdout
	o.Logf = log.New(os.Stderr, "demo: ", log.Ltime).Printf

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, o)
	if err != nil && ctx.Err() != nil {
		// Interrupted while starting: everything is stopped, nothing failed.
		o.Logf("interrupted")
		err = nil
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

// options configure one run of the demo.
type options struct {
	// RouterBin is the router binary; empty builds it.
	RouterBin string
	// HTTPPort and AdminPort are the router's ports on 127.0.0.1; 0
	// picks free ones.
	HTTPPort, AdminPort int
	// AccessPort and AccessAdminPort are the guarded router's (access
	// control on); 0 picks free ones.
	AccessPort, AccessAdminPort int
	// XDSPort is the router's xDS server port on 127.0.0.1; 0 picks a
	// free one.
	XDSPort int
	// DashboardPort and AccessDashboardPort are the routers' dashboard
	// ports on 127.0.0.1; 0 picks free ones.
	DashboardPort, AccessDashboardPort int
	// XDSClient is the xdsclient binary the printed command lines run;
	// empty prints go run ./e2e/demo/xdsclient.
	XDSClient string
	// Smoke returns after the requests (an error unless each answered as
	// expected) instead of running until ctx ends.
	Smoke bool
	// StartDelay is the sim's pod start delay.
	StartDelay time.Duration
	// IdleTimeout is sleepy's idle timeout; 0 is defaultIdleTimeout, or
	// defaultSmokeIdleTimeout with Smoke.
	IdleTimeout time.Duration
	// IPBase is the sim's first pod address (default sim.DefaultIPBase).
	IPBase netip.Addr
	// WorkDir is where the temporary directory goes ("" = os.TempDir()).
	WorkDir string
	// Out receives the curl lines and the answers; Logf the progress.
	Out  io.Writer
	Logf func(format string, args ...any)
}

// run starts everything, checks and prints the requests, and then waits
// for ctx (or, with Smoke, returns). Whatever it started is stopped before
// it returns, in reverse order: router, sim, API server and etcd, and the
// temporary directory goes last.
func run(ctx context.Context, o options) (err error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = defaultIdleTimeout
		if o.Smoke {
			o.IdleTimeout = defaultSmokeIdleTimeout
		}
	}
	if o.IdleTimeout < 0 {
		return fmt.Errorf("idle timeout %s: must be positive", o.IdleTimeout)
	}
	for _, port := range []int{o.HTTPPort, o.AdminPort, o.AccessPort, o.AccessAdminPort, o.XDSPort, o.DashboardPort, o.AccessDashboardPort} {
		if err := portFree(port); err != nil {
			return err
		}
	}

	tmp, err := os.MkdirTemp(o.WorkDir, "sandbox-router-demo-")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil {
			err = errors.Join(err, rerr)
		} else {
			logf("removed %s", tmp)
		}
	}()

	if o.RouterBin == "" {
		logf("building the router")
		if o.RouterBin, err = routerproc.Build(ctx, tmp); err != nil {
			return err
		}
	}

	logf("starting etcd and kube-apiserver (the first run builds them from source: several minutes)")
	c, err := cluster.New(ctx, cluster.Options{Dir: filepath.Join(tmp, "cluster"), Logf: logf})
	if err != nil {
		if c != nil {
			c.DumpLogs(logf)
		}
		return fmt.Errorf("cluster: %w", err)
	}
	defer func() { err = errors.Join(err, c.Close()) }()

	simLog, err := os.Create(filepath.Join(tmp, "sim.log"))
	if err != nil {
		return err
	}
	defer simLog.Close()
	env, err := setUp(ctx, c, tmp, o, log.New(simLog, "", log.Ltime|log.Lmicroseconds).Printf, logf)
	if env != nil && env.sim != nil {
		defer func() {
			env.sim.Close()
			logf("sim stopped")
		}()
	}
	if err != nil {
		return err
	}

	logf("starting the router")
	routerLog := filepath.Join(tmp, "router.log")
	args := []string{
		"--kubeconfig", env.routerKubeconfig,
		"--allow-loopback-pod-ip",
		"--base-domain", baseDomain,
		"--listen-admin", "127.0.0.1:" + strconv.Itoa(o.AdminPort),
		// The xDS server (xds.go) sends clients to this router's own
		// HTTP listener for sandboxes that do not run: startRouter
		// adds --listen-http and --xds-router-endpoints with one port.
		"--xds-listen", "127.0.0.1:" + strconv.Itoa(o.XDSPort),
		// The dashboard (dashboard.go): this router lets everyone in
		// (allow-all), so its dashboard must be made anonymous on purpose.
		"--listen-dashboard", "127.0.0.1:" + strconv.Itoa(o.DashboardPort), "--dashboard-anonymous",
		"--access-log", filepath.Join(tmp, "access.log"),
		"--drain-timeout", "2s",
		// The activator is on (the default with the cluster resolver).
		// The idle suspender runs on the replica leading the Lease in
		// the namespace where deploy/rbac lets the router use leases
		// (GrantRouter created it). The Lease is new, so the router
		// leads at its first try; the short durations make a hand-over
		// (a second router started beside it, or a crash) quick.
		"--leader-election",
		"--leader-election-namespace", cluster.RouterNamespace,
		"--leader-lease-duration", "4s",
		"--leader-renew-deadline", "3s",
		"--leader-retry-period", "500ms",
	}
	env.activityTick = time.Second // the router's default
	if o.Smoke {
		// Look at activity twice a second: the short idle timeout's
		// slack is then short too.
		env.activityTick = 500 * time.Millisecond
		args = append(args, "--activity-tick", env.activityTick.String())
	}
	rp, err := startRouter(ctx, o.RouterBin, routerLog, args, o.HTTPPort, logf)
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, rp.Stop())
		logf("router (pid %d) stopped", rp.Pid())
	}()
	env.http, env.admin, env.xds, env.dashboard = rp.HTTPAddr, rp.AdminAddr, rp.XDSAddr, rp.DashboardAddr
	env.xdsClient = "go run ./e2e/demo/xdsclient"
	if o.XDSClient != "" {
		env.xdsClient = o.XDSClient
	}
	if err := waitRouter(ctx, rp, env); err != nil {
		return fmt.Errorf("%w\nrouter log:\n%s", err, rp.Log())
	}

	logf("starting the guarded router (access control on)")
	if env.guarded, err = setUpAccess(ctx, env, tmp, o.RouterBin); err != nil {
		return err
	}
	guardedLog := filepath.Join(tmp, "router-guarded.log")
	// Its MCP endpoint names its own address (--mcp-public-url): the port
	// is chosen before it starts, as the main router's.
	gp, err := startOnPort(ctx, o.RouterBin, guardedLog, o.AccessPort, logf, func(addr string) []string {
		return guardedArgs(env, env.guarded, o, tmp, addr)
	})
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, gp.Stop())
		logf("guarded router (pid %d) stopped", gp.Pid())
	}()
	if err := waitGuarded(ctx, gp, env.guarded); err != nil {
		return fmt.Errorf("%w\nguarded router log:\n%s", err, gp.Log())
	}

	printHeader(o.Out, env, rp.Pid(), routerLog, tmp)
	checks := demoChecks(env)
	failed := runChecks(ctx, o.Out, checks)
	if ctx.Err() != nil {
		return ctx.Err() // interrupted during the requests
	}
	if o.Smoke {
		if failed > 0 {
			return fmt.Errorf("smoke: %d of %d requests and waits did not go as expected\nrouter log:\n%s\nguarded router log:\n%s", failed, len(checks), rp.Log(), gp.Log())
		}
		fmt.Fprintf(o.Out, "\nsmoke: all %d requests and waits went as expected\n", len(checks))
		return nil
	}
	if failed > 0 {
		fmt.Fprintf(o.Out, "\nWARNING: %d of %d requests did not answer as expected (marked FAILED above); router logs: %s, %s\n", failed, len(checks), routerLog, guardedLog)
	}
	printIdleHint(o.Out, env)
	fmt.Fprintf(o.Out, "\nCtrl-C stops the router, the sim, kube-apiserver and etcd, and removes %s.\n", tmp)
	// Say when the router suspends (and something wakes) the idle
	// sandboxes, until Ctrl-C; stopped before run returns.
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		reportIdle(watchCtx, o.Out, env, logf)
	}()
	defer func() {
		stopWatch()
		<-watched
	}()
	select {
	case <-ctx.Done():
		stopWatch()
		<-watched // its last line before ours
		fmt.Fprintln(o.Out)
		logf("stopping")
		return nil
	case <-rp.Exited():
		return fmt.Errorf("router exited: %v\nrouter log:\n%s", rp.ExitErr(), rp.Log())
	case <-gp.Exited():
		return fmt.Errorf("guarded router exited: %v\nits log:\n%s", gp.ExitErr(), gp.Log())
	}
}

// portFree fails clearly when another process holds the port.
func portFree(port int) error {
	if port == 0 {
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return fmt.Errorf("port %d on 127.0.0.1 is busy (another demo still running? choose others with -port, -admin-port, -access-port, -access-admin-port and -xds-port): %w", port, err)
	}
	return l.Close()
}

// freePort is a port on 127.0.0.1 that no one listened on a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
