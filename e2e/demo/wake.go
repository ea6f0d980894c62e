package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
)

// routerFieldManager is the field manager of the router's patches
// (activator/kube.FieldManager): who last set spec.operatingMode.
const routerFieldManager = "sandbox-router"

// woken is one wake-up of a sandbox: the pod that answered and when the
// answer was read.
type woken struct {
	pod string
	at  time.Time
}

// sleepy is the request for sleepy that the demo prints (twice in -smoke).
func sleepy(e *env) request {
	return request{url: "http://" + e.http + "/", headers: [][2]string{{"X-Sandbox-ID", "sleepy"}}}
}

// seconds renders d as "0.5s".
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// wakeCheck is a request for a sandbox that is not running: the router
// holds it while the activator resumes the sandbox, then the sandbox
// answers, from a new pod. last is the previous wake-up (its pod must not
// be the one answering, which proves the sandbox was really woken, not
// answered by a pod on its way out); the check records this one there.
func wakeCheck(client *http.Client, note []string, r request, sandbox string, last *woken) check {
	return check{note: note, curl: r.curl("", ""), want: "200 from " + sandbox + ", from a new pod", timed: true,
		do: func(ctx context.Context) (string, bool) {
			status, body, err := r.send(ctx, client, false)
			if err != nil {
				return err.Error(), false
			}
			got := fmt.Sprintf("%d %s", status, excerpt(body, ""))
			var m struct{ Sandbox, Pod string }
			if status != http.StatusOK || json.Unmarshal([]byte(body), &m) != nil || m.Sandbox != sandbox {
				return got, false
			}
			if last.pod != "" && m.Pod == last.pod {
				return got + " (still the pod " + last.pod + ": not woken)", false
			}
			*last = woken{pod: m.Pod, at: time.Now()}
			return got, true
		}}
}

// activatorMetricsCheck shows the activator's series (the histogram's
// buckets left out): this replica leads, sleepy's wake-up was one resume.
func activatorMetricsCheck(client *http.Client, e *env) check {
	r := request{url: "http://" + e.admin + "/metrics"}
	const prefix = "sandbox_router_activator_"
	return check{
		curl: r.curl("", "| grep '^"+prefix+"' | grep -v _bucket"),
		want: "200 with leader 1 and resumes_total{result=\"ok\"} at least 1",
		do: func(ctx context.Context) (string, bool) {
			status, body, err := r.send(ctx, client, false)
			if err != nil {
				return err.Error(), false
			}
			m := map[string]string{}
			for line := range strings.Lines(body) {
				line = strings.TrimSpace(line)
				name, value, ok := strings.Cut(line, " ")
				if ok && strings.HasPrefix(name, prefix) {
					m[strings.TrimPrefix(name, prefix)] = value
				}
			}
			var parts []string
			for _, k := range []string{"leader", "held_requests", `resumes_total{result="ok"}`, "resume_duration_seconds_count",
				"resume_duration_seconds_sum", `suspensions_total{reason="idle"}`} {
				if v, ok := m[k]; ok {
					if f, err := strconv.ParseFloat(v, 64); err == nil && strings.HasSuffix(k, "_sum") {
						v = strconv.FormatFloat(f, 'f', 3, 64)
					}
					parts = append(parts, k+" "+v)
				}
			}
			got := fmt.Sprintf("%d %s", status, strings.Join(parts, ", "))
			resumes, _ := strconv.ParseFloat(m[`resumes_total{result="ok"}`], 64)
			return got, status == http.StatusOK && m["leader"] == "1" && resumes >= 1
		},
	}
}

// suspendedCheck waits, on a watch of the Sandbox, until the sim reports
// it suspended: its Suspended condition True and no pod address.
func suspendedCheck(e *env, note []string, name string) check {
	return check{note: note, want: "Suspended=True and no status.podIPs", timed: true, do: func(ctx context.Context) (string, bool) {
		return awaitSandbox(ctx, e, name, func(u *unstructured.Unstructured) bool {
			return condition(u, "Suspended") == "True" && !hasPodIPs(u)
		})
	}}
}

// awaitSandbox watches default/name until cond holds (or readyTimeout
// passes) and describes the last status it read.
func awaitSandbox(ctx context.Context, e *env, name string, cond func(*unstructured.Unstructured) bool) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last *unstructured.Unstructured
	err := watchSandbox(ctx, e.dyn, "default", name, func(u *unstructured.Unstructured) bool {
		last = u
		return cond(u)
	})
	got := "no Sandbox read"
	if last != nil {
		got = describeStatus(last)
	}
	if err != nil {
		return got + ": " + err.Error(), false
	}
	return got, true
}

// idleChecks (with -smoke) wait until the router suspends sleepy again
// for idleness, and wake it once more.
func idleChecks(e *env, client *http.Client) []check {
	wait := check{
		note: []string{
			"sleepy goes back to sleep: with its " + idleTimeoutAnnotation + " of " + e.idleTimeout.String() +
				" the router suspends it once no request came for that long,",
			"plus the slack it allows other replicas' activity reports (about " + latestSuspension(e).String() + " after the last request here);",
			"waiting for that on a watch of the Sandbox (kubectl get sandbox sleepy -w shows it too)",
		},
		want: "sleepy suspended by " + routerFieldManager + " (spec.operatingMode Suspended), its pod gone",
		do: func(ctx context.Context) (string, bool) {
			// A sandbox is suspended between T and about 1.25 T after
			// its last activity (docs/activator.md); the rest is room.
			ctx, cancel := context.WithTimeout(ctx, 2*e.idleTimeout+readyTimeout)
			defer cancel()
			var suspendedAt time.Time
			var last *unstructured.Unstructured
			err := watchSandbox(ctx, e.dyn, "default", "sleepy", func(u *unstructured.Unstructured) bool {
				last = u
				if operatingMode(u) == "Suspended" && modeManager(u) == routerFieldManager && suspendedAt.IsZero() {
					suspendedAt = time.Now()
				}
				return !suspendedAt.IsZero() && condition(u, "Suspended") == "True" && !hasPodIPs(u)
			})
			if err != nil {
				got := "no Sandbox read"
				if last != nil {
					got = describeStatus(last)
				}
				return got + ": " + err.Error(), false
			}
			return fmt.Sprintf("sleepy idle for %s: suspended again by the router %s after its last request "+
				"(spec.operatingMode: Suspended, field manager %s; the sim deleted its pod %s); the next request wakes it again",
				e.idleTimeout, suspendedAt.Sub(e.sleepy.at).Round(10*time.Millisecond), routerFieldManager, e.sleepy.pod), true
		},
	}
	return []check{
		wait,
		wakeCheck(client, []string{"... and the same curl wakes it again: held ~" + seconds(e.startDelay) + " while the router resumes sleepy, then 200 from a new pod"},
			sleepy(e), "sleepy", &e.sleepy),
	}
}

// printIdleHint tells the interactive user what happens to sleepy next.
func printIdleHint(out io.Writer, e *env) {
	fmt.Fprintf(out, `
  # sleepy goes back to sleep: with its %s of %s the router suspends it once no request came
  # for that long, plus the slack it allows other replicas' coarse activity reports (so about %s after the last
  # request here); this demo says so below when it happens. Then try the curl again: it is held while the router
  # resumes sleepy, then 200 from a new pod.
  %s
  # or over xDS with gRPC: answered by the router, which resumes sleepy; run it again and sleepy's pod answers
  %s
`, idleTimeoutAnnotation, e.idleTimeout, latestSuspension(e), sleepy(e).curl("", ""), xdsCommand(e, xdsTarget("default", "sleepy")))
}

// latestSuspension is how long after its last activity an idle sandbox is
// suspended at the latest: the timeout, and the slack the router allows
// for other replicas' reports (a quarter of the timeout, 1s to 5m, and
// two activity ticks; docs/activator.md).
func latestSuspension(e *env) time.Duration {
	report := min(max(e.idleTimeout/4, time.Second), 5*time.Minute)
	return e.idleTimeout + report + 2*e.activityTick
}

// reportIdle prints, until ctx ends, when an idle sandbox is suspended
// (by the router, after its idle timeout) and when it is woken again.
func reportIdle(ctx context.Context, out io.Writer, e *env, logf func(string, ...any)) {
	var mu sync.Mutex // one line at a time
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "  [%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	var wg sync.WaitGroup
	for _, sb := range sandboxes {
		if !sb.idle {
			continue
		}
		wg.Go(func() {
			prev := ""
			if sb.name == "sleepy" && e.sleepy.pod != "" {
				prev = "Running" // the demo woke it
			}
			err := watchSandbox(ctx, e.dyn, sb.namespace, sb.name, func(u *unstructured.Unstructured) bool {
				mode, by := operatingMode(u), modeManager(u)
				if mode == prev || mode == "" {
					return false
				}
				switch {
				case prev == "":
				case mode == "Suspended" && by == routerFieldManager:
					idle := ""
					if at, ok := lastActivity(u); ok {
						idle = fmt.Sprintf(", %s after the last activity the router recorded", time.Since(at).Round(100*time.Millisecond))
					}
					say("%s idle for %s: suspended again by the router (spec.operatingMode: Suspended%s); the next request wakes it again",
						sb.name, e.idleTimeout, idle)
				case mode == "Running" && by == routerFieldManager:
					say("%s woken by a request: the router set spec.operatingMode: Running; idle for %s again (about %s here), it sleeps again",
						sb.name, e.idleTimeout, latestSuspension(e))
				default:
					say("%s: spec.operatingMode: %s (set by %s)", sb.name, mode, by)
				}
				prev = mode
				return false
			})
			if err != nil && ctx.Err() == nil {
				logf("watching %s/%s: %v", sb.namespace, sb.name, err)
			}
		})
	}
	wg.Wait()
}

// watchSandbox calls seen with the Sandbox as it is now and then after
// each change, until seen returns true (nil) or ctx ends (its error). A
// watch that ends or fails is started again from a fresh read.
func watchSandbox(ctx context.Context, dyn dynamic.Interface, namespace, name string, seen func(*unstructured.Unstructured) bool) error {
	res := dyn.Resource(sandboxGVR).Namespace(namespace)
	for {
		u, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return errors.Join(ctx.Err(), err)
		}
		if seen(u) {
			return nil
		}
		w, err := res.Watch(ctx, metav1.ListOptions{
			FieldSelector:   "metadata.name=" + name,
			ResourceVersion: u.GetResourceVersion(),
		})
		if err != nil {
			return errors.Join(ctx.Err(), err)
		}
		done, err := watchEvents(ctx, w, seen)
		w.Stop()
		if done || err != nil {
			return err
		}
		// Ended (a timeout, or an expired revision): read afresh, a
		// moment later so that a watch that keeps failing is not a loop.
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// watchEvents feeds a watch's objects to seen; done when seen returned
// true, neither when the watch ended.
func watchEvents(ctx context.Context, w watch.Interface, seen func(*unstructured.Unstructured) bool) (done bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if u, ok := ev.Object.(*unstructured.Unstructured); ok && seen(u) {
					return true, nil
				}
			case watch.Deleted:
				return false, errors.New("the Sandbox was deleted")
			case watch.Error:
				return false, nil // e.g. 410 Gone: read afresh
			}
		}
	}
}

func operatingMode(u *unstructured.Unstructured) string {
	s, _, _ := unstructured.NestedString(u.Object, "spec", "operatingMode")
	return s
}

// condition is the status of the Sandbox's condition typ ("" if absent).
func condition(u *unstructured.Unstructured, typ string) string {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

// modeManager is the field manager that owns spec.operatingMode: who set
// it last to its current value.
func modeManager(u *unstructured.Unstructured) string {
	for _, mf := range u.GetManagedFields() {
		if mf.Subresource != "" || mf.FieldsV1 == nil {
			continue
		}
		var f struct {
			Spec map[string]json.RawMessage `json:"f:spec"`
		}
		if json.Unmarshal(mf.FieldsV1.Raw, &f) == nil {
			if _, ok := f.Spec["f:operatingMode"]; ok {
				return mf.Manager
			}
		}
	}
	return ""
}

// lastActivity is the router's last-activity annotation.
func lastActivity(u *unstructured.Unstructured) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, u.GetAnnotations()["sandbox-router.dev/last-activity"])
	return t, err == nil
}

func hasPodIPs(u *unstructured.Unstructured) bool {
	_, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "podIPs")
	return ok
}

// describeStatus sums up what the sim reports in a Sandbox's status.
func describeStatus(u *unstructured.Unstructured) string {
	var conds []string
	list, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range list {
		if m, ok := c.(map[string]any); ok {
			conds = append(conds, fmt.Sprintf("%v=%v (%v)", m["type"], m["status"], m["reason"]))
		}
	}
	sort.Strings(conds)
	ips, _, _ := unstructured.NestedStringSlice(u.Object, "status", "podIPs")
	pods := "no status.podIPs"
	if len(ips) > 0 {
		pods = "status.podIPs " + strings.Join(ips, ",")
	}
	return fmt.Sprintf("spec.operatingMode %s (set by %s), status %s, %s", operatingMode(u), modeManager(u), strings.Join(conds, ", "), pods)
}
