package kube

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// RouterEndpoints watches the EndpointSlices of one Service.
type RouterEndpoints struct {
	// Client reads EndpointSlices in Namespace (list and watch).
	Client    kubernetes.Interface
	Namespace string
	Service   string
	// PortName is the Service port that serves plain HTTP and h2c (the
	// router's --listen-http); "" takes the slice's only port.
	PortName string
	// Set receives every new set of ready addresses, sorted.
	Set func([]netip.AddrPort)
}

// Run watches until ctx ends. It reports the first set once the
// informer has synced.
func (w *RouterEndpoints) Run(ctx context.Context) error {
	f := informers.NewSharedInformerFactoryWithOptions(w.Client, 0,
		informers.WithNamespace(w.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelServiceName + "=" + w.Service
		}))
	inf := f.Discovery().V1().EndpointSlices().Informer()
	var last []netip.AddrPort
	report := func() {
		addrs := readyAddrs(inf.GetStore().List(), w.PortName)
		if !slices.Equal(addrs, last) {
			last = addrs
			w.Set(addrs)
		}
	}
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, DeleteFunc: poke, UpdateFunc: func(_, n any) { poke(n) },
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("endpoint slices of %s/%s: %w", w.Namespace, w.Service, ctx.Err())
	}
	report()
	for {
		select {
		case <-ctx.Done():
			f.Shutdown()
			return nil
		case <-changed:
			report()
		}
	}
}

// readyAddrs are the ready endpoints' addresses on the named port.
func readyAddrs(objs []any, portName string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, o := range objs {
		s, ok := o.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		var port int32
		for _, p := range s.Ports {
			if p.Port != nil && (portName == "" && len(s.Ports) == 1 || p.Name != nil && *p.Name == portName) {
				port = *p.Port
			}
		}
		if port <= 0 || port > 65535 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					out = append(out, netip.AddrPortFrom(ip, uint16(port)))
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return slices.Compact(out)
}
