package kube

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/sandbox-router/sandbox-router/resolver"
)

var memorySandboxes = flag.Int("memory-sandboxes", 100000, "sandboxes in BenchmarkCacheMemory")

// fixtures decodes n realistic Sandboxes and their Pods (full pod spec,
// managed fields, status) from testdata, each decoded on its own as an
// informer would, so no two objects share strings.
func fixtures(tb testing.TB, n int) (*unstructured.UnstructuredList, *corev1.PodList) {
	tb.Helper()
	podJSON, err := readFile("testdata/pod.json")
	if err != nil {
		tb.Fatal(err)
	}
	sbJSON, err := readFile("testdata/sandbox.json")
	if err != nil {
		tb.Fatal(err)
	}
	sandboxes := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "SandboxList"}}
	sandboxes.SetResourceVersion("1")
	pods := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: make([]corev1.Pod, n)}
	sandboxes.Items = make([]unstructured.Unstructured, n)
	for i := range n {
		name := "sandbox-" + strconv.Itoa(i)
		r := strings.NewReplacer("@NAME@", name, "@NS@", "team-"+strconv.Itoa(i%20), "@UID@", fmt.Sprintf("5c1e7a2b-0000-4000-8000-%012d", i),
			"@IP@", fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		if err := json.Unmarshal([]byte(r.Replace(podJSON)), &pods.Items[i]); err != nil {
			tb.Fatal(err)
		}
		if err := sandboxes.Items[i].UnmarshalJSON([]byte(r.Replace(sbJSON))); err != nil {
			tb.Fatal(err)
		}
	}
	return sandboxes, pods
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// listOnce serves one list, then forgets it (so that it can be
// collected), and a watch that never sends anything. It is a plain
// list-then-watch source: the reflector must not expect a watch-list
// stream from it.
func listOnce(list kruntime.Object, empty kruntime.Object) cache.ListerWatcher {
	var mu sync.Mutex
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (kruntime.Object, error) {
			mu.Lock()
			defer mu.Unlock()
			l := list
			list = empty
			return l, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			return watch.NewFake(), nil
		},
	}, noWatchList{})
}

// noWatchList is a client that declares it cannot stream lists.
type noWatchList struct{}

func (noWatchList) IsWatchListSemanticsUnSupported() bool { return true }

// cacheHeap fills informers with n sandboxes and their pods, and returns
// the heap they keep once the decoded lists are garbage: through the
// resolver's transforms and indexes (lean), or as plain informers that
// keep whole objects (the reference).
func cacheHeap(tb testing.TB, n int, lean bool) float64 {
	tb.Helper()
	before := heap()
	sandboxes, pods := fixtures(tb, n)
	sbInf := cache.NewSharedIndexInformerWithOptions(
		listOnce(sandboxes, &unstructured.UnstructuredList{Object: sandboxes.Object}),
		&unstructured.Unstructured{}, cache.SharedIndexInformerOptions{})
	podInf := cache.NewSharedIndexInformerWithOptions(
		listOnce(pods, &corev1.PodList{ListMeta: pods.ListMeta}),
		&corev1.Pod{}, cache.SharedIndexInformerOptions{})
	sandboxes, pods = nil, nil

	r := newResolver(Options{})
	var regs []cache.ResourceEventHandlerRegistration
	add := func(reg cache.ResourceEventHandlerRegistration, err error) {
		if err != nil {
			tb.Fatal(err)
		}
		regs = append(regs, reg)
	}
	if lean {
		add(r.watchSandboxes(sbInf, v1beta1))
		add(r.watchPods(podInf))
	} else {
		add(sbInf.AddEventHandler(cache.ResourceEventHandlerFuncs{}))
		add(podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { sbInf.RunWithContext(ctx) })
	wg.Go(func() { podInf.RunWithContext(ctx) })
	var synced []cache.DoneChecker
	for _, reg := range regs {
		synced = append(synced, reg.HasSyncedChecker())
	}
	if !cache.WaitFor(ctx, "memory fixtures", synced...) {
		tb.Fatal("informers did not sync")
	}
	after := heap()
	if lean {
		if got := len(r.Snapshot()); got != n {
			tb.Fatalf("resolver holds %d sandboxes, want %d", got, n)
		}
		if res := r.Lookup(resolver.Key{Namespace: "team-1", Name: "sandbox-1"}); res.State != resolver.StateRunning {
			tb.Fatalf("sandbox-1: %+v", res)
		}
	}
	runtime.KeepAlive(sbInf)
	runtime.KeepAlive(podInf)
	return float64(after-before) / float64(n)
}

func heap() uint64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestCacheMemoryPerSandbox holds the lean cache to its budget of 1 KiB
// per sandbox (Sandbox and Pod records, informer stores and indexes).
func TestCacheMemoryPerSandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes thousands of fixtures")
	}
	if got := cacheHeap(t, 20000, true); got > 1024 {
		t.Fatalf("%.0f B per sandbox, budget 1024", got)
	} else {
		t.Logf("%.0f B per sandbox", got)
	}
}

// BenchmarkCacheMemory reports the heap per sandbox at -memory-sandboxes
// (100,000 by default), lean against whole objects. Run it with
// -benchtime=1x: each iteration builds the whole cache.
func BenchmarkCacheMemory(b *testing.B) {
	n := *memorySandboxes
	for b.Loop() {
		lean := cacheHeap(b, n, true)
		whole := cacheHeap(b, n, false)
		b.ReportMetric(lean, "B/sandbox")
		b.ReportMetric(whole, "B/sandbox-whole-objects")
		b.ReportMetric(whole/lean, "x-smaller")
	}
}
