package tffi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Group is the Sandbox API group.
const Group = "agents.x-k8s.io"

// The served versions Run can suspend a Sandbox through, preferred first.
var versions = []string{"v1beta1", "v1alpha1"}

// noPodWait bounds the wait for a new pod after a 4xx answer: a router
// that refused the request (a wrong routing key, a refused credential)
// resumes nothing, and the run stops instead of waiting Timeout.
const noPodWait = 10 * time.Second

// metricsSettle bounds the wait, after a mode's last wake-up, for the
// router's histograms to count every wake-up's first byte and Ready.
const metricsSettle = 10 * time.Second

// Run measures cfg.N wake-ups of the sandbox in each of cfg.Modes. Each
// wake-up suspends the Sandbox, waits until its pod is gone, sends one
// request through the router and waits until the new pod is Ready. At the
// end it restores the Sandbox's release-on annotation and, if the Sandbox
// was suspended, suspends it again; the report holds the modes measured
// so far even when it returns an error.
func Run(ctx context.Context, cfg Config) (_ *Report, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = cfg.Kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: cfg.Context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = 20, 40
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	version, err := servedVersion(cs.Discovery())
	if err != nil {
		return nil, err
	}
	sandboxes := dyn.Resource(schema.GroupVersionResource{Group: Group, Version: version, Resource: "sandboxes"}).Namespace(cfg.Namespace)
	sb, err := sandboxes.Get(ctx, cfg.Sandbox, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("sandbox %s/%s: %w", cfg.Namespace, cfg.Sandbox, err)
	}
	m := &measurer{cfg: cfg, sandboxes: sandboxes, version: version, client: newClient(cfg)}
	defer m.client.CloseIdleConnections()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if m.pods, err = watchPods(wctx, cs, cfg.Namespace, cfg.Sandbox, sb.GetUID()); err != nil {
		return nil, err
	}
	annotation, annotated := sb.GetAnnotations()[ReleaseAnnotation]
	wasSuspended := m.suspended(sb.Object)
	defer func() {
		// Restored even when ctx is done (Ctrl-C), within a bound.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		var value any // null removes the annotation
		if annotated {
			value = annotation
		}
		rerr := m.annotate(rctx, value)
		if wasSuspended {
			rerr = errors.Join(rerr, m.suspend(rctx))
		}
		if rerr != nil {
			err = errors.Join(err, fmt.Errorf("restoring the sandbox: %w", rerr))
		}
	}()

	report := &Report{Namespace: cfg.Namespace, Sandbox: cfg.Sandbox, Router: cfg.Router, Version: version}
	m.warmUp(ctx)
	for _, mode := range cfg.Modes {
		mr, err := m.mode(ctx, mode)
		if err != nil {
			return report, fmt.Errorf("mode %s: %w", mode, err)
		}
		report.Modes = append(report.Modes, mr)
	}
	return report, nil
}

// servedVersion is the preferred Sandbox API version the server serves.
func servedVersion(d discovery.DiscoveryInterface) (string, error) {
	groups, err := d.ServerGroups()
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	for _, g := range groups.Groups {
		if g.Name != Group {
			continue
		}
		for _, v := range versions {
			if slices.ContainsFunc(g.Versions, func(gv metav1.GroupVersionForDiscovery) bool { return gv.Version == v }) {
				return v, nil
			}
		}
	}
	return "", fmt.Errorf("the API server serves no Sandbox API (%s %s)", Group, strings.Join(versions, " or "))
}

// measurer runs the wake-ups of one sandbox.
type measurer struct {
	cfg       Config
	sandboxes dynamic.ResourceInterface
	version   string
	pods      *podWatch
	client    *http.Client
}

func newClient(cfg Config) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.Insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	return &http.Client{
		Transport: t,
		// The first byte of the router's answer is what is timed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// warmUp opens a connection to the router (GET /healthz, without any
// sandbox key), so that the first wake-up does not pay for it. Its
// answer does not matter.
func (m *measurer) warmUp(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(m.cfg.Router, "/")+"/healthz", nil)
	if err != nil {
		return
	}
	if resp, err := m.client.Do(req); err == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
}

// suspended reports whether a Sandbox object is suspended.
func (m *measurer) suspended(obj map[string]any) bool {
	spec, _ := obj["spec"].(map[string]any)
	if m.version == "v1alpha1" {
		r, ok := spec["replicas"].(int64)
		return ok && r == 0
	}
	return spec["operatingMode"] == "Suspended"
}

func (m *measurer) patch(ctx context.Context, p map[string]any) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if _, err := m.sandboxes.Patch(ctx, m.cfg.Sandbox, types.MergePatchType, data, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch sandbox %s/%s: %w", m.cfg.Namespace, m.cfg.Sandbox, err)
	}
	return nil
}

// suspend sets spec.operatingMode Suspended (v1beta1) or spec.replicas 0
// (v1alpha1).
func (m *measurer) suspend(ctx context.Context) error {
	spec := map[string]any{"operatingMode": "Suspended"}
	if m.version == "v1alpha1" {
		spec = map[string]any{"replicas": 0}
	}
	return m.patch(ctx, map[string]any{"spec": spec})
}

// annotate sets the release-on annotation (nil removes it).
func (m *measurer) annotate(ctx context.Context, value any) error {
	return m.patch(ctx, map[string]any{"metadata": map[string]any{"annotations": map[string]any{ReleaseAnnotation: value}}})
}

// mode measures cfg.N wake-ups with the release-on annotation set to
// mode. The annotation is written before the first suspension, so the
// router has it before any request of the mode (it sees the Sandbox's
// changes in order).
func (m *measurer) mode(ctx context.Context, mode string) (ModeResult, error) {
	mr := ModeResult{Mode: mode}
	if err := m.annotate(ctx, mode); err != nil {
		return mr, err
	}
	var before snapshot
	if m.cfg.Metrics != "" {
		var err error
		if before, err = scrape(ctx, m.client, m.cfg.metricsURL()); err != nil {
			return mr, err
		}
	}
	for i := range m.cfg.N {
		w, err := m.wake(ctx)
		if err != nil {
			return mr, fmt.Errorf("wake-up %d: %w", i+1, err)
		}
		mr.Wakeups = append(mr.Wakeups, w)
		if m.cfg.Progress != nil {
			after := "-"
			if !w.ReadySeen.IsZero() {
				after = w.AfterReady().Round(time.Microsecond).String()
			}
			m.cfg.Progress("%s %d/%d: %d from pod %s, first byte - sent %v, first byte - Ready seen %s",
				mode, i+1, m.cfg.N, w.Status, w.Pod, w.Hold().Round(time.Microsecond), after)
		}
	}
	if m.cfg.Metrics != "" {
		d, err := m.settledMetrics(ctx, before, len(mr.Wakeups))
		if err != nil {
			return mr, err
		}
		mr.Router = routerPhases(d)
	}
	return mr, nil
}

// settledMetrics scrapes the router until its histograms count n more
// first bytes and Ready phases than before (bounded by metricsSettle:
// the router sees a pod Ready a moment before or after this process
// does), and returns the difference.
func (m *measurer) settledMetrics(ctx context.Context, before snapshot, n int) (snapshot, error) {
	deadline := time.Now().Add(metricsSettle)
	for {
		after, err := scrape(ctx, m.client, m.cfg.metricsURL())
		if err != nil {
			return snapshot{}, err
		}
		d := after.minus(before)
		if (d.phases["first_byte"].count >= float64(n) && d.phases["ready_seen"].count >= float64(n)) || time.Now().After(deadline) {
			return d, nil
		}
		select {
		case <-ctx.Done():
			return snapshot{}, context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// wake is one wake-up: suspend, wait until the pod is gone, one request,
// wait until the new pod is Ready.
func (m *measurer) wake(ctx context.Context) (Wakeup, error) {
	var w Wakeup
	if err := m.suspend(ctx); err != nil {
		return w, err
	}
	gctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	old, err := m.pods.waitGone(gctx)
	cancel()
	if err != nil {
		return w, fmt.Errorf("the sandbox's pod is not gone after %v: %w", m.cfg.Timeout, err)
	}

	req, err := m.cfg.newRequest()
	if err != nil {
		return w, err
	}
	rctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	req = req.WithContext(httptrace.WithClientTrace(rctx, &httptrace.ClientTrace{
		GotFirstResponseByte: func() { w.FirstByte = time.Now() },
	}))
	w.Sent = time.Now()
	resp, err := m.client.Do(req)
	if err != nil {
		return w, fmt.Errorf("request: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	w.Status = resp.StatusCode
	if w.Status >= 500 {
		return w, fmt.Errorf("the router answered %s: %s", resp.Status, snippet(body))
	}
	if w.Status >= 400 {
		// The sandbox's own answer (a path it does not serve) follows
		// a resume; a refusal by the router does not.
		nctx, cancel := context.WithTimeout(ctx, min(noPodWait, m.cfg.Timeout))
		_, err := m.pods.waitNewPod(nctx, old, func(podObs) bool { return true })
		cancel()
		if err != nil {
			return w, fmt.Errorf("the router answered %s without resuming the sandbox (check the routing key and the credentials): %s", resp.Status, snippet(body))
		}
	}
	pctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	pod, err := m.pods.waitNewPod(pctx, old, func(o podObs) bool { return !o.readySeen.IsZero() })
	if err != nil {
		return w, fmt.Errorf("served (%s), but no new pod was seen Ready within %v: %w", resp.Status, m.cfg.Timeout, err)
	}
	w.Pod, w.PodSeen, w.AddressSeen, w.ReadySeen = pod.name, pod.seen, pod.addressSeen, pod.readySeen
	return w, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
