package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// baseDomain is the router's --base-domain: *.localhost resolves to
// loopback without any DNS set-up.
const baseDomain = "sandbox.localhost"

// readyTimeout bounds each wait for something the demo started to become
// ready (pods, the router's caches, a sandbox answering).
const readyTimeout = 60 * time.Second

// idleTimeoutAnnotation is the per-sandbox idle timeout the router reads
// (resolver/kube.IdleTimeoutAnnotation; spelled out as users write it).
const idleTimeoutAnnotation = "sandbox-router.dev/idle-timeout"

// The idle timeout sleepy gets when -idle-timeout is not given: long
// enough to read the demo's output first, and short for -smoke.
const (
	defaultIdleTimeout      = 20 * time.Second
	defaultSmokeIdleTimeout = 3 * time.Second
)

// sandboxGVR is the Sandbox resource in the version the demo reads it.
var sandboxGVR = schema.GroupVersionResource{Group: sim.Group, Version: "v1beta1", Resource: "sandboxes"}

// sandbox is one Sandbox the demo creates.
type sandbox struct {
	namespace, name, version string
	spec                     map[string]any
	running                  bool // the sim gives it a pod
	about                    string
	// idle: it gets the demo's idle timeout (the idle-timeout
	// annotation), so the router suspends it again once idle.
	idle bool
}

var sandboxes = []sandbox{
	{"default", "alpha", "v1beta1", map[string]any{"operatingMode": "Running"}, true, "v1beta1, operatingMode Running", false},
	{"team-a", "beta", "v1alpha1", map[string]any{"replicas": int64(1)}, true, "created through v1alpha1, replicas 1", false},
	{"default", "sleepy", "v1beta1", map[string]any{"operatingMode": "Suspended"}, false, "v1beta1, operatingMode Suspended", true},
	// Its own, so that waking it over xDS leaves sleepy's idle clock
	// alone.
	{"default", xdsSleepy, "v1beta1", map[string]any{"operatingMode": "Suspended"}, false, "v1beta1, operatingMode Suspended; a gRPC call over xDS wakes it", false},
}

// env is what the requests need to know about the running demo.
type env struct {
	c   *cluster.Cluster
	sim *sim.Sim
	dyn dynamic.Interface

	routerKubeconfig string
	adminTokenFile   string
	warmPod, warmUID string
	http, admin      string   // the router's listeners, host:port
	xds              string   // the router's xDS server, host:port
	dashboard        string   // the router's dashboard, host:port
	xdsClient        string   // the command that runs e2e/demo/xdsclient
	guarded          *guarded // the router with access control on

	smoke       bool
	startDelay  time.Duration // the sim's pod start delay
	idleTimeout time.Duration // the idle-timeout annotation of the idle sandboxes
	// activityTick is the router's --activity-tick.
	activityTick time.Duration

	// The last wake-up of sleepy and of alpha the checks saw (alpha's
	// pod: the one before its suspension). Only the checks' goroutine
	// writes them; reportIdle starts after the checks.
	sleepy, alpha woken
}

// setUp applies the CRD and RBAC, starts the sim, and creates the
// namespaces, sandboxes and the warm-pool pod, waiting until the running
// sandboxes' pods are Ready. The returned env's sim (if not nil) must be
// closed, also on error.
func setUp(ctx context.Context, c *cluster.Cluster, tmp string, o options, simLogf, logf func(string, ...any)) (*env, error) {
	e := &env{c: c, smoke: o.Smoke, startDelay: o.StartDelay, idleTimeout: o.IdleTimeout}
	admin := c.AdminConfig()
	logf("applying the Sandbox CRD (deploy/crds) and the router's RBAC (deploy/rbac), bound to user \"router\"")
	if err := c.ApplyCRDs(ctx); err != nil {
		return nil, err
	}
	if err := c.GrantRouter(ctx); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return nil, err
	}
	if e.dyn, err = dynamic.NewForConfig(admin); err != nil {
		return nil, err
	}
	for _, ns := range []string{"default", "team-a"} {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
	}

	logf("starting the simulated sandbox controller and kubelet (pod start delay %s)", o.StartDelay)
	// Every pod serves HTTP on 8888 and the grpc-go health service on
	// grpcPort (a named container port, as a real pod spec would have).
	if e.sim, err = sim.New(sim.Options{
		Config: admin, StartDelay: o.StartDelay, IPBase: o.IPBase, Logf: simLogf,
		Ports:     []uint16{sim.DefaultPort, grpcPort},
		PortNames: map[uint16]string{grpcPort: "grpc"},
		GRPCPorts: []uint16{grpcPort},
	}); err != nil {
		return nil, err
	}
	if err := e.sim.Run(ctx); err != nil {
		return e, err
	}
	for _, sb := range sandboxes {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": sim.Group + "/" + sb.version,
			"kind":       "Sandbox",
			"metadata":   map[string]any{"name": sb.name, "namespace": sb.namespace},
			"spec":       sb.spec,
		}}
		about := sb.about
		if sb.idle {
			u.SetAnnotations(map[string]string{idleTimeoutAnnotation: e.idleTimeout.String()})
			about += ", " + idleTimeoutAnnotation + ": " + e.idleTimeout.String()
		}
		gvr := schema.GroupVersionResource{Group: sim.Group, Version: sb.version, Resource: "sandboxes"}
		if _, err := e.dyn.Resource(gvr).Namespace(sb.namespace).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return e, fmt.Errorf("sandbox %s/%s: %w", sb.namespace, sb.name, err)
		}
		logf("sandbox %s/%s created (%s)", sb.namespace, sb.name, about)
	}
	pod, uid, _, err := e.sim.CreateWarmPoolPod(ctx, "default", "pool")
	if err != nil {
		return e, err
	}
	e.warmPod, e.warmUID = pod, string(uid)
	logf("warm-pool pod default/%s created, UID %s", pod, uid)

	waitCtx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for _, sb := range sandboxes {
		if !sb.running {
			continue
		}
		if _, err := e.sim.WaitPod(waitCtx, sb.namespace, sb.name, func(p sim.PodInfo) bool { return p.Ready }); err != nil {
			return e, err
		}
	}

	e.routerKubeconfig = filepath.Join(tmp, "router.kubeconfig")
	if err := c.WriteKubeconfig(e.routerKubeconfig, c.RouterToken); err != nil {
		return e, err
	}
	e.adminTokenFile = filepath.Join(tmp, "admin.token")
	if err := os.WriteFile(e.adminTokenFile, []byte(c.AdminToken), 0o600); err != nil {
		return e, err
	}
	return e, nil
}
