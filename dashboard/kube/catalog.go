package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Options configures a Catalog.
type Options struct {
	// Config reaches the API server. The catalog only reads: it needs
	// list and watch on sandboxtemplates, sandboxwarmpools and
	// sandboxclaims (extensions.agents.x-k8s.io; deploy/rbac/dashboard),
	// and discovery.
	Config *rest.Config
	// Namespaces limits the catalog to these namespaces (one informer per
	// kind each, so a RoleBinding per namespace is enough); empty watches
	// all.
	Namespaces []string
	// Log receives discovery and watch messages.
	Log *slog.Logger
	// DiscoveryRetry is the first wait before discovery is asked again
	// while a kind is not served or the API server is unreachable
	// (default 2 s); each failed try doubles it up to DiscoveryRetryMax
	// (default 2 min). Once every kind is served, discovery is asked
	// again only when a watched kind's list answers NotFound.
	DiscoveryRetry, DiscoveryRetryMax time.Duration
}

// Catalog is the dashboard's read-only view of the extensions API.
type Catalog struct {
	opts       Options
	log        *slog.Logger
	namespaces []string // watched; [""] for all
	templates  *table[Template]
	pools      *table[WarmPool]
	claims     *table[Claim]
	changes    chan struct{}
	rediscover chan struct{}

	mu         sync.Mutex
	discovered bool
	state      [len(kinds)]*kindState // nil: not watched
}

// kindState is one kind's running informers.
type kindState struct {
	version string
	stop    context.CancelFunc
	done    chan struct{} // closed when the informers have returned
	synced  []func() bool
	errs    map[string]string // last list/watch error by namespace
}

// kindTable is what the wiring needs of a table, whatever its record.
type kindTable interface {
	transform() cache.TransformFunc
	currentEpoch() uint64
	handler(epoch uint64, changed func()) cache.ResourceEventHandler
	reset() bool
}

// New checks opts and builds the catalog; Run starts it.
func New(opts Options) (*Catalog, error) {
	if opts.Config == nil {
		return nil, errors.New("dashboard catalog: no API server config")
	}
	if slices.Contains(opts.Namespaces, "") {
		return nil, errors.New("dashboard catalog: empty namespace name (leave Namespaces empty to watch all)")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.DiscoveryRetry <= 0 {
		opts.DiscoveryRetry = 2 * time.Second
	}
	if opts.DiscoveryRetryMax < opts.DiscoveryRetry {
		opts.DiscoveryRetryMax = max(2*time.Minute, opts.DiscoveryRetry)
	}
	namespaces := []string{metav1.NamespaceAll}
	if len(opts.Namespaces) > 0 {
		namespaces = slices.Compact(slices.Sorted(slices.Values(opts.Namespaces)))
	}
	return &Catalog{
		opts:       opts,
		log:        opts.Log,
		namespaces: namespaces,
		templates:  newTable(templateOf),
		pools:      newTable(warmPoolOf),
		claims:     newTable(claimOf),
		changes:    make(chan struct{}, 1),
		rediscover: make(chan struct{}, 1),
	}, nil
}

func (c *Catalog) table(i int) kindTable {
	switch kinds[i].kind {
	case KindTemplate:
		return c.templates
	case KindWarmPool:
		return c.pools
	}
	return c.claims
}

// Changes signals, coalesced, that something changed since the last
// signal was taken: a record, a kind served or gone, a kind synced, a
// list/watch error set or cleared. One buffered signal: a reader that
// falls behind gets one, not a backlog. There is one channel for all
// readers; a fan-out belongs to the caller.
func (c *Catalog) Changes() <-chan struct{} { return c.changes }

func (c *Catalog) signal() {
	select {
	case c.changes <- struct{}{}:
	default:
	}
}

// Templates returns the SandboxTemplates of namespace ("" for every
// watched namespace), sorted by namespace and name. The slices inside the
// records are shared: read them, do not modify them.
func (c *Catalog) Templates(namespace string) []Template { return c.templates.list(namespace) }

// WarmPools returns the SandboxWarmPools of namespace ("" for all),
// sorted by namespace and name.
func (c *Catalog) WarmPools(namespace string) []WarmPool { return c.pools.list(namespace) }

// Claims returns the SandboxClaims of namespace ("" for all), sorted by
// namespace and name, with the Template of a claim that names none filled
// in from its warm pool when the catalog has the pool.
func (c *Catalog) Claims(namespace string) []Claim {
	out := c.claims.list(namespace)
	for i := range out {
		cl := &out[i]
		if cl.Template == "" && cl.WarmPool != "" {
			if p, ok := c.pools.get(cl.Namespace, cl.WarmPool); ok {
				cl.Template = p.Template
			}
		}
	}
	return out
}

// Synced reports whether discovery has answered once and every informer
// of every served kind has delivered its initial list. Kinds not served
// do not hold it back; a served kind that cannot be listed (Forbidden)
// does, until it can: Kinds tells which kind and why, so a page can show
// the others meanwhile.
func (c *Catalog) Synced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.discovered {
		return false
	}
	for _, ks := range c.state {
		if ks != nil && !ks.hasSynced() {
			return false
		}
	}
	return true
}

func (ks *kindState) hasSynced() bool {
	for _, f := range ks.synced {
		if !f() {
			return false
		}
	}
	return true
}

// Kinds reports, for each kind, whether it is served, in which version,
// whether it is synced and its last list/watch error.
func (c *Catalog) Kinds() []KindStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]KindStatus, len(kinds))
	for i, k := range kinds {
		out[i] = KindStatus{Kind: k.kind, Resource: k.resource}
		ks := c.state[i]
		if ks == nil {
			continue
		}
		out[i].Version, out[i].Synced = ks.version, ks.hasSynced()
		for _, ns := range c.namespaces { // sorted: the first error wins
			if msg := ks.errs[ns]; msg != "" {
				if ns != metav1.NamespaceAll {
					msg = "namespace " + ns + ": " + msg
				}
				out[i].Error = msg
				break
			}
		}
	}
	return out
}

// Run discovers the served kinds, runs their informers and blocks until
// ctx ends. A kind the API server does not serve gets no informer;
// discovery is asked again with backoff until every kind is served, and
// at once when a watched kind's list answers NotFound (its CRD deleted):
// a kind that is no longer served is dropped, one that appears is
// watched. While the API server is unreachable the informers keep their
// last state and retry with client-go's backoff.
func (c *Catalog) Run(ctx context.Context) error {
	dyn, err := dynamic.NewForConfig(c.opts.Config)
	if err != nil {
		return fmt.Errorf("dashboard catalog: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.opts.Config)
	if err != nil {
		return fmt.Errorf("dashboard catalog: %w", err)
	}
	defer c.stopAll()
	wait := c.opts.DiscoveryRetry
	for {
		served, err := servedVersions(dc)
		complete := false
		if err != nil {
			c.log.Warn("dashboard catalog: discovery failed; retrying", "error", err, "retry", wait)
		} else {
			if c.apply(ctx, dyn, served) {
				wait = c.opts.DiscoveryRetry
			}
			complete = !slices.Contains(served[:], "")
		}
		var retry <-chan time.Time
		var timer *time.Timer
		if !complete {
			timer = time.NewTimer(wait)
			retry = timer.C
			wait = min(2*wait, c.opts.DiscoveryRetryMax)
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return ctx.Err()
		case <-c.rediscover:
		case <-retry:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// apply starts and stops informers so that each kind is watched in its
// served version, and reports whether any kind changed.
func (c *Catalog) apply(ctx context.Context, dyn dynamic.Interface, served [len(kinds)]string) bool {
	changed := false
	c.mu.Lock()
	first := !c.discovered
	c.mu.Unlock()
	for i, k := range kinds {
		c.mu.Lock()
		cur := ""
		if c.state[i] != nil {
			cur = c.state[i].version
		}
		c.mu.Unlock()
		if cur == served[i] {
			if first && cur == "" {
				c.log.Info("dashboard catalog: kind not served", "kind", k.kind)
			}
			continue
		}
		changed = true
		if cur != "" {
			c.stopKind(i)
		}
		if served[i] != "" {
			c.startKind(ctx, dyn, i, served[i])
		}
		if served[i] == "" {
			c.log.Info("dashboard catalog: kind not served", "kind", k.kind, "was", cur)
		} else {
			c.log.Info("dashboard catalog: watching", "kind", k.kind, "version", served[i], "namespaces", c.opts.Namespaces)
		}
	}
	c.mu.Lock()
	c.discovered = true
	c.mu.Unlock()
	if changed || first {
		c.signal()
	}
	return changed
}

// startKind runs one informer per watched namespace for kinds[i] read
// through version.
func (c *Catalog) startKind(ctx context.Context, dyn dynamic.Interface, i int, version string) {
	gvr := schema.GroupVersionResource{Group: Group, Version: version, Resource: kinds[i].resource}
	tbl := c.table(i)
	epoch := tbl.currentEpoch()
	kctx, stop := context.WithCancel(ctx)
	ks := &kindState{version: version, stop: stop, done: make(chan struct{}), errs: map[string]string{}}
	var informers []cache.SharedIndexInformer
	var checkers []cache.DoneChecker
	for _, ns := range c.namespaces {
		inf := c.informer(kctx, dyn, gvr, ns, i, ks)
		if err := inf.SetTransform(tbl.transform()); err != nil {
			panic(err) // only fails once started
		}
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			c.log.Debug("dashboard catalog: watch ended", "resource", gvr.String(), "namespace", ns, "error", err)
		}); err != nil {
			panic(err)
		}
		reg, err := inf.AddEventHandler(tbl.handler(epoch, c.signal))
		if err != nil {
			panic(err)
		}
		informers = append(informers, inf)
		ks.synced = append(ks.synced, reg.HasSynced)
		checkers = append(checkers, reg.HasSyncedChecker())
	}
	c.mu.Lock()
	c.state[i] = ks
	c.mu.Unlock()

	var wg sync.WaitGroup
	for _, inf := range informers {
		wg.Go(func() { inf.RunWithContext(kctx) })
	}
	go func() {
		defer close(ks.done)
		defer wg.Wait()
		for _, ch := range checkers {
			select {
			case <-ch.Done():
			case <-kctx.Done():
				return
			}
		}
		c.log.Info("dashboard catalog: synced", "kind", kinds[i].kind, "version", version)
		c.signal()
	}()
}

// informer builds the informer of gvr in ns, with a list/watch that
// records its errors in ks (observe).
func (c *Catalog) informer(kctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns string, i int, ks *kindState) cache.SharedIndexInformer {
	res := dyn.Resource(gvr).Namespace(ns)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := res.List(ctx, o)
			c.observe(kctx, i, ks, ns, err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := res.Watch(ctx, o)
			c.observe(kctx, i, ks, ns, err)
			return w, err
		},
	}
	return cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, dyn),
		&unstructured.Unstructured{}, cache.SharedIndexInformerOptions{ObjectDescription: gvr.String()})
}

// observe records the outcome of a list or watch call of kinds[i] in ns.
// A NotFound answer means the kind may be gone: discovery is asked again.
func (c *Catalog) observe(kctx context.Context, i int, ks *kindState, ns string, err error) {
	if kctx.Err() != nil {
		return // stopping
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	c.mu.Lock()
	if c.state[i] != ks {
		c.mu.Unlock()
		return
	}
	old := ks.errs[ns]
	if msg == "" {
		delete(ks.errs, ns)
	} else {
		ks.errs[ns] = msg
	}
	c.mu.Unlock()
	if old != msg {
		// Warn once per failure spell: a refused list and the refused
		// watch after it differ only in the verb.
		switch {
		case old == "":
			c.log.Warn("dashboard catalog: list/watch failed", "kind", kinds[i].kind, "namespace", ns, "error", err)
		case msg == "":
			c.log.Info("dashboard catalog: list/watch recovered", "kind", kinds[i].kind, "namespace", ns)
		default:
			c.log.Debug("dashboard catalog: list/watch still failing", "kind", kinds[i].kind, "namespace", ns, "error", err)
		}
		c.signal()
	}
	if apierrors.IsNotFound(err) {
		select {
		case c.rediscover <- struct{}{}:
		default:
		}
	}
}

// stopKind stops kinds[i]'s informers, waits for them and drops its
// records.
func (c *Catalog) stopKind(i int) {
	c.mu.Lock()
	ks := c.state[i]
	c.state[i] = nil
	c.mu.Unlock()
	if ks == nil {
		return
	}
	ks.stop()
	<-ks.done
	c.table(i).reset()
	c.signal()
}

func (c *Catalog) stopAll() {
	for i := range kinds {
		c.stopKind(i)
	}
}
