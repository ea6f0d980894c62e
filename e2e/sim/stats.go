package sim

import (
	"strings"
	"sync/atomic"
	"time"
)

// PodStats counts what a pod's backend received on its HTTP ports (the
// ports grpc-go serves are not counted, nor are the connections of a TCP
// probe, which send no request).
type PodStats struct {
	// KubeletProbes: requests to ReadinessPath whose User-Agent starts
	// with "kube-probe/" (the sim's own kubelet sends "kube-probe/sim").
	KubeletProbes int
	// OtherProbes: requests to ReadinessPath from anyone else (the router).
	OtherProbes int
	// Requests: every other request, on any port; EarlyRequests: those
	// of them that arrived before the app was initialised.
	Requests, EarlyRequests int
	// FirstRequestAt: when the first of Requests arrived (zero if none).
	FirstRequestAt time.Time
}

// kubeletUserAgent is the User-Agent of the sim's kubelet's probes; a
// real kubelet sends "kube-probe/<major>.<minor>".
const kubeletUserAgent = "kube-probe/sim"

// podCounters is where a backend counts, without a lock: every request
// of every pod passes here.
type podCounters struct {
	kubeletProbes, otherProbes, requests, early atomic.Int64
	first                                       atomic.Pointer[time.Time]
}

func (c *podCounters) probe(userAgent string) {
	if strings.HasPrefix(userAgent, "kube-probe/") {
		c.kubeletProbes.Add(1)
	} else {
		c.otherProbes.Add(1)
	}
}

func (c *podCounters) request(early bool) {
	if c.first.Load() == nil {
		now := time.Now()
		c.first.CompareAndSwap(nil, &now)
	}
	c.requests.Add(1)
	if early {
		c.early.Add(1)
	}
}

func (c *podCounters) snapshot() PodStats {
	// early before requests, which request counts first: a snapshot
	// never shows more early requests than requests.
	early := c.early.Load()
	st := PodStats{
		KubeletProbes: int(c.kubeletProbes.Load()),
		OtherProbes:   int(c.otherProbes.Load()),
		Requests:      int(c.requests.Load()),
		EarlyRequests: int(early),
	}
	if t := c.first.Load(); t != nil {
		st.FirstRequestAt = *t
	}
	return st
}

// PodStats returns the counters of a pod by name: any pod the sim created
// in this process, also one that is gone since (they are kept for the
// life of the Sim).
func (s *Sim) PodStats(namespace, pod string) (PodStats, bool) {
	s.mu.Lock()
	c := s.stats[namespace+"/"+pod]
	s.mu.Unlock()
	if c == nil {
		return PodStats{}, false
	}
	return c.snapshot(), true
}
