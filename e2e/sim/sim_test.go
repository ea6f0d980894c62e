package sim_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/sandbox-router/sandbox-router/e2e/cluster"
	"github.com/sandbox-router/sandbox-router/e2e/sim"
)

// waitTimeout bounds every wait on the API server or a backend.
const waitTimeout = 60 * time.Second

func gvr(version string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: sim.Group, Version: version, Resource: "sandboxes"}
}

// env is a cluster with the CRD installed and clients for it.
type env struct {
	c   *cluster.Cluster
	dyn dynamic.Interface
	cs  kubernetes.Interface
}

func newEnv(t *testing.T, namespaces ...string) *env {
	t.Helper()
	c := cluster.Start(t)
	if err := c.ApplyCRDs(t.Context()); err != nil {
		t.Fatalf("ApplyCRDs: %v", err)
	}
	e := &env{c: c, dyn: dynamic.NewForConfigOrDie(c.AdminConfig()), cs: kubernetes.NewForConfigOrDie(c.AdminConfig())}
	for _, ns := range namespaces {
		if _, err := e.cs.CoreV1().Namespaces().Create(t.Context(),
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	return e
}

func (e *env) startSim(t *testing.T, opts sim.Options) *sim.Sim {
	t.Helper()
	opts.Config = e.c.AdminConfig()
	opts.Logf = t.Logf
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Run(t.Context()); err != nil {
		t.Fatalf("sim.Run: %v", err)
	}
	return s
}

func (e *env) createSandbox(t *testing.T, version, ns, name string, spec map[string]any, annotations map[string]string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": sim.Group + "/" + version,
		"kind":       "Sandbox",
		"metadata":   map[string]any{"name": name, "namespace": ns},
	}}
	if spec != nil {
		u.Object["spec"] = spec
	}
	if annotations != nil {
		u.SetAnnotations(annotations)
	}
	created, err := e.dyn.Resource(gvr(version)).Namespace(ns).Create(t.Context(), u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create sandbox %s/%s: %v", ns, name, err)
	}
	return created
}

func (e *env) patchSpec(t *testing.T, version, ns, name string, spec map[string]any) {
	t.Helper()
	e.patch(t, version, ns, name, map[string]any{"spec": spec})
}

// patch merge-patches the sandbox and returns its new generation.
func (e *env) patch(t *testing.T, version, ns, name string, patch map[string]any) int64 {
	t.Helper()
	data, _ := json.Marshal(patch)
	u, err := e.dyn.Resource(gvr(version)).Namespace(ns).Patch(t.Context(), name, types.MergePatchType, data, metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("patch sandbox %s/%s with %s: %v", ns, name, data, err)
	}
	return u.GetGeneration()
}

// observed is true once the sim has written both conditions for
// generation gen (or a later one): it has acted on that spec.
func observed(gen int64) func(status) bool {
	return func(s status) bool {
		return s.Conds["Ready"].ObservedGeneration >= gen && s.Conds["Suspended"].ObservedGeneration >= gen
	}
}

func both(conds ...func(status) bool) func(status) bool {
	return func(s status) bool {
		for _, c := range conds {
			if !c(s) {
				return false
			}
		}
		return true
	}
}

// status is the part of a Sandbox status the tests look at.
type status struct {
	UID         types.UID
	Generation  int64
	PodIPs      []string
	Service     string
	ServiceFQDN string
	Conds       map[string]condition
}

type condition struct {
	Status, Reason, Message, LastTransitionTime string
	ObservedGeneration                          int64
}

func (s status) is(typ, want string) bool { return s.Conds[typ].Status == want }

func (s status) String() string { return fmt.Sprintf("podIPs=%v conds=%v", s.PodIPs, s.Conds) }

func readStatus(u *unstructured.Unstructured) status {
	st := status{UID: u.GetUID(), Generation: u.GetGeneration(), Conds: map[string]condition{}}
	st.PodIPs, _, _ = unstructured.NestedStringSlice(u.Object, "status", "podIPs")
	st.Service, _, _ = unstructured.NestedString(u.Object, "status", "service")
	st.ServiceFQDN, _, _ = unstructured.NestedString(u.Object, "status", "serviceFQDN")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		typ, _ := m["type"].(string)
		var cd condition
		cd.Status, _ = m["status"].(string)
		cd.Reason, _ = m["reason"].(string)
		cd.Message, _ = m["message"].(string)
		cd.LastTransitionTime, _ = m["lastTransitionTime"].(string)
		cd.ObservedGeneration, _ = m["observedGeneration"].(int64)
		st.Conds[typ] = cd
	}
	return st
}

func ready(s status) bool { return s.is("Ready", "True") && len(s.PodIPs) == 1 }

func suspended(s status) bool {
	return s.is("Suspended", "True") && s.is("Ready", "False") && s.Conds["Ready"].Reason == "Suspended" && len(s.PodIPs) == 0
}

// waitSandbox watches the sandbox (through version) until cond holds.
func (e *env) waitSandbox(t *testing.T, version, ns, name, what string, cond func(status) bool) status {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	var last status
	_, err := cluster.WaitObject(ctx, e.dyn.Resource(gvr(version)).Namespace(ns), name, func(u *unstructured.Unstructured) bool {
		if u == nil {
			return false // not there (yet, or any more)
		}
		last = readStatus(u)
		return cond(last)
	})
	if err != nil {
		t.Fatalf("sandbox %s/%s: %s: %v; last status %s", ns, name, what, err, last)
	}
	return last
}

// sandboxPods lists the pods labelled with the sandbox's name hash.
func (e *env) sandboxPods(t *testing.T, ns, name string) []corev1.Pod {
	t.Helper()
	list, err := e.cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: sim.LabelNameHash + "=" + sim.NameHash(name)})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// waitPodGone watches until the pod no longer exists.
func (e *env) waitPodGone(t *testing.T, ns, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	pods := e.cs.CoreV1().Pods(ns)
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return pods.Watch(ctx, o)
		},
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{},
		func(store cache.Store) (bool, error) { return len(store.List()) == 0, nil },
		func(ev watch.Event) (bool, error) { return ev.Type == watch.Deleted, nil })
	if err != nil {
		t.Fatalf("pod %s/%s still exists: %v", ns, name, err)
	}
}

// backendInfo is the JSON a backend answers.
type backendInfo struct {
	Sandbox, Namespace, Pod, IP, Method, Path, Host string
	Port                                            int
}

func httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitTimeout}
}

func get(t *testing.T, ip string, port uint16, path string) backendInfo {
	t.Helper()
	url := "http://" + net.JoinHostPort(ip, strconv.Itoa(int(port))) + path
	resp, err := httpClient(t).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var info backendInfo
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatalf("GET %s: decode: %v", url, err)
	}
	if got := resp.Header.Get("X-Served-By"); got != info.Pod {
		t.Errorf("GET %s: X-Served-By %q, body pod %q", url, got, info.Pod)
	}
	return info
}

func mustRefuse(t *testing.T, ip string, port uint16) {
	t.Helper()
	addr := net.JoinHostPort(ip, strconv.Itoa(int(port)))
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err == nil {
		conn.Close()
		t.Fatalf("dial %s: connected, want refused", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
}

// TestSandboxLifecycle covers one sim on v1beta1 (chosen by default):
// create, serve, suspend, resume, restart, delete, and objects written
// through v1alpha1.
func TestSandboxLifecycle(t *testing.T) {
	e := newEnv(t, "team-a")
	s := e.startSim(t, sim.Options{
		Namespaces: []string{"default", "team-a"},
		StartDelay: 100 * time.Millisecond,
		Ports:      []uint16{8888, 9000},
		PortNames:  map[uint16]string{9000: "grpc"},
		IPBase:     netip.MustParseAddr("127.0.1.1"),
	})
	if s.Version() != "v1beta1" {
		t.Fatalf("default version = %q, want v1beta1", s.Version())
	}
	const ns, name = "team-a", "alpha"
	created := e.createSandbox(t, "v1beta1", ns, name, nil, nil)

	st := e.waitSandbox(t, "v1beta1", ns, name, "Ready", ready)
	ip := st.PodIPs[0]
	if simIP, ok := s.PodIP(ns, name); !ok || simIP.String() != ip {
		t.Errorf("PodIP = %v %v, status.podIPs %v", simIP, ok, st.PodIPs)
	}
	if st.Service != name || st.ServiceFQDN != name+"."+ns+".svc.cluster.local" ||
		st.Conds["Ready"].Reason != "PodReady" || !st.is("Suspended", "False") {
		t.Errorf("status = %+v", st)
	}

	t.Run("pod object", func(t *testing.T) {
		pods := e.sandboxPods(t, ns, name)
		if len(pods) != 1 {
			t.Fatalf("%d pods, want 1", len(pods))
		}
		p := pods[0]
		podName, uid, _ := s.Pod(ns, name)
		if p.Name != podName || p.UID != uid || !strings.HasPrefix(p.Name, name+"-") || len(p.Name) != len(name)+6 {
			t.Errorf("pod %s (%s), sim says %s (%s)", p.Name, p.UID, podName, uid)
		}
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.APIVersion != "agents.x-k8s.io/v1beta1" || ref.Kind != "Sandbox" || ref.Name != name ||
			ref.UID != created.GetUID() || ref.BlockOwnerDeletion == nil || *ref.BlockOwnerDeletion {
			t.Errorf("controller ref = %+v", ref)
		}
		if p.Spec.NodeName != sim.NodeName || len(p.Spec.Containers) != 1 {
			t.Fatalf("spec = %+v", p.Spec)
		}
		c := p.Spec.Containers[0]
		if c.Name != "sandbox" || c.Image != "sim" || len(c.Ports) != 2 ||
			c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8888 ||
			c.Ports[1].Name != "grpc" || c.Ports[1].ContainerPort != 9000 {
			t.Errorf("container = %+v", c)
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP != ip || len(p.Status.PodIPs) != 1 ||
			p.Status.HostIP != "127.0.0.1" || len(p.Status.ContainerStatuses) != 1 || !p.Status.ContainerStatuses[0].Ready {
			t.Errorf("pod status = %+v", p.Status)
		}
		var readyCond bool
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				readyCond = true
			}
		}
		if !readyCond {
			t.Errorf("pod conditions = %+v", p.Status.Conditions)
		}
	})

	t.Run("backend", func(t *testing.T) {
		podName, _, _ := s.Pod(ns, name)
		info := get(t, ip, 8888, "/some/path?q=1")
		want := backendInfo{Sandbox: name, Namespace: ns, Pod: podName, IP: ip, Port: 8888, Method: "GET", Path: "/some/path", Host: ip + ":8888"}
		if info != want {
			t.Errorf("GET = %+v, want %+v", info, want)
		}
		if info := get(t, ip, 9000, "/"); info.Port != 9000 || info.Sandbox != name {
			t.Errorf("GET :9000 = %+v", info)
		}

		url := "http://" + ip + ":8888/echo"
		resp, err := httpClient(t).Post(url, "text/plain", strings.NewReader("hello sandbox"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello sandbox" || resp.Header.Get("Content-Type") != "text/plain" {
			t.Errorf("POST /echo = %q (%s)", body, resp.Header.Get("Content-Type"))
		}

		resp, err = httpClient(t).Get("http://" + ip + ":8888/sse")
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("SSE Content-Type = %q", ct)
		}
		sc := bufio.NewScanner(resp.Body)
		var events []string
		for len(events) < 3 && sc.Scan() {
			if line := sc.Text(); line != "" {
				events = append(events, line)
			}
		}
		resp.Body.Close()
		if strings.Join(events, ",") != "data: 0,data: 1,data: 2" {
			t.Errorf("SSE events = %q (%v)", events, sc.Err())
		}

		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, "ws://"+ip+":8888/ws", nil)
		if err != nil {
			t.Fatalf("WebSocket dial: %v", err)
		}
		defer ws.CloseNow()
		if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		typ, msg, err := ws.Read(ctx)
		if err != nil || typ != websocket.MessageText || string(msg) != "ping" {
			t.Errorf("WebSocket echo = %v %q %v", typ, msg, err)
		}
		ws.Close(websocket.StatusNormalClosure, "")
	})

	// Suspend: the backend refuses, the pod goes, the status says so.
	podName, _, _ := s.Pod(ns, name)
	e.patchSpec(t, "v1beta1", ns, name, map[string]any{"operatingMode": "Suspended"})
	st = e.waitSandbox(t, "v1beta1", ns, name, "Suspended", suspended)
	mustRefuse(t, ip, 8888)
	mustRefuse(t, ip, 9000)
	e.waitPodGone(t, ns, podName)
	if _, ok := s.PodIP(ns, name); ok {
		t.Error("PodIP still known after suspend")
	}
	if st.Service != name || st.ServiceFQDN == "" {
		t.Errorf("suspended status lost the service: %+v", st)
	}

	// Resume: a new pod with a new address.
	e.patchSpec(t, "v1beta1", ns, name, map[string]any{"operatingMode": "Running"})
	st = e.waitSandbox(t, "v1beta1", ns, name, "Ready again", ready)
	resumedIP := st.PodIPs[0]
	if resumedIP == ip {
		t.Fatalf("resumed on the same address %s", ip)
	}
	if info := get(t, resumedIP, 8888, "/"); info.Sandbox != name || info.Pod == podName {
		t.Errorf("after resume GET = %+v (old pod %s)", info, podName)
	}

	// RestartPod: Ready=False first, then Ready on a new address.
	t.Run("RestartPod", func(t *testing.T) {
		resumedIP = e.restartPod(t, s, "v1beta1", ns, name, resumedIP)
	})

	// A pod deleted by someone else (graceful, as kubectl does) is
	// replaced, like a controller replacing a lost pod.
	t.Run("pod deleted by a user", func(t *testing.T) {
		oldPod, _, _ := s.Pod(ns, name)
		if err := e.cs.CoreV1().Pods(ns).Delete(t.Context(), oldPod, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitPodGone(t, ns, oldPod)
		st := e.waitSandbox(t, "v1beta1", ns, name, "Ready on a new pod", func(s status) bool {
			return ready(s) && s.PodIPs[0] != resumedIP
		})
		mustRefuse(t, resumedIP, 8888)
		if info := get(t, st.PodIPs[0], 8888, "/"); info.Pod == oldPod {
			t.Errorf("still served by the deleted pod: %+v", info)
		}
	})

	// Finished: the pod goes, the Finished condition stays.
	t.Run("Finished", func(t *testing.T) {
		const fin = "finisher"
		e.createSandbox(t, "v1beta1", "default", fin, nil, nil)
		st := e.waitSandbox(t, "v1beta1", "default", fin, "Ready", ready)
		podName, _, _ := s.Pod("default", fin)
		res := e.dyn.Resource(gvr("v1beta1")).Namespace("default")
		u, err := res.Get(t.Context(), fin, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		conds = append(conds, map[string]any{"type": "Finished", "status": "True", "reason": "Exited",
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339)})
		if err := unstructured.SetNestedSlice(u.Object, conds, "status", "conditions"); err != nil {
			t.Fatal(err)
		}
		if _, err := res.UpdateStatus(t.Context(), u, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitSandbox(t, "v1beta1", "default", fin, "not Ready, Finished kept", func(s status) bool {
			return s.is("Finished", "True") && s.is("Ready", "False") && s.Conds["Ready"].Reason == "Finished" && len(s.PodIPs) == 0
		})
		e.waitPodGone(t, "default", podName)
		mustRefuse(t, st.PodIPs[0], 8888)
	})

	// Objects written through v1alpha1 are read through v1beta1 with
	// spec.replicas kept (and operatingMode defaulted to Running).
	t.Run("v1alpha1 object", func(t *testing.T) {
		const old = "legacy"
		e.createSandbox(t, "v1alpha1", "default", old, map[string]any{"replicas": int64(0)}, nil)
		e.waitSandbox(t, "v1alpha1", "default", old, "Suspended", suspended)
		if pods := e.sandboxPods(t, "default", old); len(pods) != 0 {
			t.Errorf("suspended v1alpha1 sandbox has pods: %d", len(pods))
		}
		e.patchSpec(t, "v1alpha1", "default", old, map[string]any{"replicas": int64(1)})
		st := e.waitSandbox(t, "v1alpha1", "default", old, "Ready", ready)
		if info := get(t, st.PodIPs[0], 8888, "/"); info.Sandbox != old {
			t.Errorf("GET = %+v", info)
		}
	})

	// Delete: the pod goes and the backend refuses.
	curPod, _, _ := s.Pod(ns, name)
	curIP, _ := s.PodIP(ns, name)
	if err := e.dyn.Resource(gvr("v1beta1")).Namespace(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitPodGone(t, ns, curPod)
	mustRefuse(t, curIP.String(), 8888)
	if _, _, ok := s.Pod(ns, name); ok {
		t.Error("Pod still known after the sandbox was deleted")
	}
}

// TestV1alpha1 runs the sim on v1alpha1: spec.replicas 1 and 0, owner
// references of that version.
func TestV1alpha1(t *testing.T) {
	e := newEnv(t)
	s := e.startSim(t, sim.Options{Version: "v1alpha1", IPBase: netip.MustParseAddr("127.0.2.1")})
	if s.Version() != "v1alpha1" {
		t.Fatalf("Version = %q", s.Version())
	}
	const ns, name = "default", "old-style"
	e.createSandbox(t, "v1alpha1", ns, name, map[string]any{"replicas": int64(1)}, nil)
	st := e.waitSandbox(t, "v1alpha1", ns, name, "Ready", ready)
	ip := st.PodIPs[0]
	if !strings.HasPrefix(ip, "127.0.2.") {
		t.Errorf("pod IP %s is not from IPBase 127.0.2.1", ip)
	}
	if info := get(t, ip, 8888, "/"); info.Sandbox != name {
		t.Errorf("GET = %+v", info)
	}
	pods := e.sandboxPods(t, ns, name)
	if len(pods) != 1 {
		t.Fatalf("%d pods", len(pods))
	}
	if ref := metav1.GetControllerOf(&pods[0]); ref == nil || ref.APIVersion != "agents.x-k8s.io/v1alpha1" {
		t.Errorf("controller ref = %+v", ref)
	}

	e.patchSpec(t, "v1alpha1", ns, name, map[string]any{"replicas": int64(0)})
	e.waitSandbox(t, "v1alpha1", ns, name, "Suspended", suspended)
	mustRefuse(t, ip, 8888)
	e.waitPodGone(t, ns, pods[0].Name)

	// The v1beta1 field suspends too when the sim reads v1alpha1.
	e.patchSpec(t, "v1alpha1", ns, name, map[string]any{"replicas": int64(1)})
	st = e.waitSandbox(t, "v1alpha1", ns, name, "Ready again", ready)
	if st.PodIPs[0] == ip {
		t.Errorf("resumed on the same address %s", ip)
	}
	// Without a start delay the restart still passes through Ready=False.
	e.restartPod(t, s, "v1alpha1", ns, name, st.PodIPs[0])

	e.createSandbox(t, "v1beta1", ns, "new-style", map[string]any{"operatingMode": "Suspended"}, nil)
	e.waitSandbox(t, "v1alpha1", ns, "new-style", "Suspended", suspended)
	e.patchSpec(t, "v1beta1", ns, "new-style", map[string]any{"operatingMode": "Running"})
	e.waitSandbox(t, "v1alpha1", ns, "new-style", "Ready", ready)
}

// TestWarmPoolAdoption: a warm-pool pod serves before it is claimed and
// keeps its backend when a Sandbox adopts it.
func TestWarmPoolAdoption(t *testing.T) {
	e := newEnv(t)
	s := e.startSim(t, sim.Options{StartDelay: 50 * time.Millisecond, IPBase: netip.MustParseAddr("127.0.3.1")})
	const ns = "default"
	podName, uid, ip, err := s.CreateWarmPoolPod(t.Context(), ns, "python")
	if err != nil {
		t.Fatal(err)
	}
	pod, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), podName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.UID != uid || pod.Labels[sim.LabelWarmPool] != "python" || pod.Labels[sim.LabelNameHash] != sim.NameHash(podName) ||
		len(pod.OwnerReferences) != 0 || pod.Status.PodIP != ip.String() || pod.Status.Phase != corev1.PodRunning {
		t.Fatalf("warm pod = labels %v owners %v status %s %s", pod.Labels, pod.OwnerReferences, pod.Status.Phase, pod.Status.PodIP)
	}
	if info := get(t, ip.String(), 8888, "/"); info.Sandbox != "" || info.Pod != podName {
		t.Errorf("warm pod GET = %+v", info)
	}

	const name = "claimer"
	sb := e.createSandbox(t, "v1beta1", ns, name, nil, map[string]string{sim.AnnotationAdopt: podName})
	st := e.waitSandbox(t, "v1beta1", ns, name, "Ready", ready)
	if st.PodIPs[0] != ip.String() {
		t.Fatalf("adopted sandbox on %s, warm pod on %s", st.PodIPs[0], ip)
	}
	if gotName, gotUID, ok := s.Pod(ns, name); !ok || gotName != podName || gotUID != uid {
		t.Errorf("Pod = %s %s %v, want the warm pod %s %s", gotName, gotUID, ok, podName, uid)
	}
	pod, err = e.cs.CoreV1().Pods(ns).Get(t.Context(), podName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pod.Labels[sim.LabelWarmPool]; ok || pod.Labels[sim.LabelNameHash] != sim.NameHash(name) {
		t.Errorf("adopted pod labels = %v", pod.Labels)
	}
	if ref := metav1.GetControllerOf(pod); ref == nil || ref.Name != name || ref.UID != sb.GetUID() || ref.Kind != "Sandbox" {
		t.Errorf("adopted pod controller = %+v", ref)
	}
	if info := get(t, ip.String(), 8888, "/"); info.Sandbox != name || info.Pod != podName {
		t.Errorf("adopted pod GET = %+v", info)
	}

	// An annotation naming no warm pod gets a fresh pod.
	e.createSandbox(t, "v1beta1", ns, "no-pool", nil, map[string]string{sim.AnnotationAdopt: "nonexistent-abcde"})
	st = e.waitSandbox(t, "v1beta1", ns, "no-pool", "Ready", ready)
	if n, _, _ := s.Pod(ns, "no-pool"); !strings.HasPrefix(n, "no-pool-") {
		t.Errorf("pod of no-pool = %q", n)
	}

	// A warm pod deleted by someone loses its backend.
	other, _, otherIP, err := s.CreateWarmPoolPod(t.Context(), ns, "python")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cs.CoreV1().Pods(ns).Delete(t.Context(), other, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitPodGone(t, ns, other)
	waitRefused(t, otherIP.String(), 8888)
}

// restartPod calls RestartPod and watches the sandbox from its current
// version: Ready=False without podIPs must come before Ready on a new
// address. It returns the new address.
func (e *env) restartPod(t *testing.T, s *sim.Sim, version, ns, name, oldIP string) string {
	t.Helper()
	res := e.dyn.Resource(gvr(version)).Namespace(ns)
	cur, err := res.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldPod, _, _ := s.Pod(ns, name)
	if err := s.RestartPod(t.Context(), ns, name); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, oldIP, 8888)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		return res.Watch(ctx, o)
	}}
	var sawNotReady bool
	var last status
	_, err = watchtools.Until(ctx, cur.GetResourceVersion(), lw, func(ev watch.Event) (bool, error) {
		u, ok := ev.Object.(*unstructured.Unstructured)
		if !ok {
			return false, nil
		}
		last = readStatus(u)
		if last.is("Ready", "False") && len(last.PodIPs) == 0 && last.Conds["Ready"].Reason == "PodNotReady" {
			sawNotReady = true
		}
		return ready(last) && last.PodIPs[0] != oldIP, nil
	})
	if err != nil {
		t.Fatalf("no Ready with a new address after RestartPod: %v; last %s", err, last)
	}
	if !sawNotReady {
		t.Error("status went to the new address without passing Ready=False")
	}
	e.waitPodGone(t, ns, oldPod)
	if info := get(t, last.PodIPs[0], 8888, "/"); info.Pod == oldPod || info.Sandbox != name {
		t.Errorf("after restart GET = %+v", info)
	}
	return last.PodIPs[0]
}

// waitRefused waits until the address refuses connections: the sim stops
// a backend in reaction to a watch event, so there is no status to wait on.
func waitRefused(t *testing.T, ip string, port uint16) {
	t.Helper()
	addr := net.JoinHostPort(ip, strconv.Itoa(int(port)))
	deadline := time.Now().Add(waitTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, waitTimeout)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return
			}
			t.Fatalf("dial %s: %v", addr, err)
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStartDelayAndManualReady: a suspend during the start delay leaves no
// backend; with ManualReady the pod waits for MarkReady.
func TestStartDelayAndManualReady(t *testing.T) {
	e := newEnv(t, "slow", "manual")
	s := e.startSim(t, sim.Options{Namespaces: []string{"slow"}, StartDelay: time.Hour, IPBase: netip.MustParseAddr("127.0.4.1")})
	m := e.startSim(t, sim.Options{Namespaces: []string{"manual"}, ManualReady: true, IPBase: netip.MustParseAddr("127.0.5.1")})

	t.Run("suspend while starting", func(t *testing.T) {
		const ns, name = "slow", "sleepy"
		e.createSandbox(t, "v1beta1", ns, name, nil, nil)
		info, err := s.WaitPod(t.Context(), ns, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		st := e.waitSandbox(t, "v1beta1", ns, name, "starting", func(s status) bool {
			return s.is("Ready", "False") && s.Conds["Ready"].Reason == "PodNotReady"
		})
		if len(st.PodIPs) != 0 {
			t.Errorf("starting sandbox has podIPs %v", st.PodIPs)
		}
		// The backend already listens; the pod is not Ready.
		if got := get(t, info.IP.String(), 8888, "/"); got.Pod != info.Name {
			t.Errorf("GET = %+v", got)
		}
		pod, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), info.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Status.Phase != corev1.PodPending || pod.Status.PodIP != "" {
			t.Errorf("starting pod status = %s %q", pod.Status.Phase, pod.Status.PodIP)
		}
		e.patchSpec(t, "v1beta1", ns, name, map[string]any{"operatingMode": "Suspended"})
		e.waitSandbox(t, "v1beta1", ns, name, "Suspended", suspended)
		mustRefuse(t, info.IP.String(), 8888)
		e.waitPodGone(t, ns, info.Name)
		if _, _, ok := s.Pod(ns, name); ok {
			t.Error("sim still has a pod for the suspended sandbox")
		}
	})

	t.Run("ManualReady", func(t *testing.T) {
		const ns, name = "manual", "bench"
		e.createSandbox(t, "v1beta1", ns, name, nil, nil)
		info, err := m.WaitPod(t.Context(), ns, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if info.Ready {
			t.Fatal("pod Ready before MarkReady")
		}
		e.waitSandbox(t, "v1beta1", ns, name, "starting", func(s status) bool {
			return s.is("Ready", "False") && s.Conds["Ready"].Reason == "PodNotReady"
		})
		before := time.Now()
		sentAt, err := m.MarkReady(t.Context(), ns, name)
		if err != nil {
			t.Fatal(err)
		}
		if sentAt.Before(before) || sentAt.After(time.Now()) {
			t.Errorf("sentAt %v outside the MarkReady call", sentAt)
		}
		if got, ok := m.PodInfo(ns, name); !ok || !got.Ready || !got.ReadySentAt.Equal(sentAt) {
			t.Errorf("PodInfo after MarkReady = %+v (%v), want Ready with ReadySentAt %v", got, ok, sentAt)
		}
		pod, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), info.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Status.PodIP != info.IP.String() || pod.Status.Phase != corev1.PodRunning {
			t.Errorf("pod status after MarkReady = %s %q", pod.Status.Phase, pod.Status.PodIP)
		}
		st := e.waitSandbox(t, "v1beta1", ns, name, "Ready", ready)
		if st.PodIPs[0] != info.IP.String() {
			t.Errorf("status.podIPs %v, pod %s", st.PodIPs, info.IP)
		}
		if _, err := m.MarkReady(t.Context(), ns, name); err == nil {
			t.Error("second MarkReady succeeded")
		}
		if _, err := m.MarkReady(t.Context(), ns, "nope"); err == nil {
			t.Error("MarkReady of an unknown sandbox succeeded")
		}
	})
}
