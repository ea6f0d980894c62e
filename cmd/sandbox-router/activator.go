package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sandbox-router/sandbox-router/activator"
	akube "github.com/sandbox-router/sandbox-router/activator/kube"
	"github.com/sandbox-router/sandbox-router/resolver"
	"github.com/sandbox-router/sandbox-router/resolver/kube"
	"github.com/sandbox-router/sandbox-router/router"
)

// startActivator wires scale to zero for the cluster resolver: the hold
// path the router calls, the activity tracker and its reporter on every
// replica, and the idle suspender on the elected one. The reporter runs
// until lifeCtx ends, after the drain: connections still open on a
// draining replica must go on keeping their sandboxes awake. The lead
// ends with leadCtx, at SIGTERM, so another replica takes it over while
// this one drains.
func startActivator(lifeCtx, leadCtx context.Context, cfg *config, kr *kube.Resolver, restCfg *rest.Config, reg prometheus.Registerer, log *slog.Logger) (*activatorParts, error) {
	log = log.With("component", "activator")
	// Writes get their own client and budget: a relist burst of the
	// informers must not delay a resume, nor activity writes the reverse.
	wcfg := rest.CopyConfig(restCfg)
	wcfg.QPS, wcfg.Burst = float32(cfg.ActivatorQPS), int(2*cfg.ActivatorQPS)
	dyn, err := dynamic.NewForConfig(wcfg)
	if err != nil {
		return nil, err
	}
	nsTimeouts, _ := parseNamespaceTimeouts(cfg.NamespaceIdleTimeouts) // validated
	release, _ := resolver.ParseRelease(cfg.ReleaseOn)                 // validated
	policy := activator.Policy{HoldTimeout: cfg.HoldTimeout, IdleTimeout: cfg.SandboxIdleTimeout, NamespaceIdleTimeouts: nsTimeouts, Release: release}
	waker := akube.NewWaker(dyn, kr)
	metrics := activator.NewMetrics(reg)
	// One history of wake-ups, suspensions and failures per sandbox, for
	// the dashboard: the hold path, the idle suspender and the router's
	// error answers write to it.
	events := activator.NewRecorder(0)
	act, err := activator.New(activator.Options{
		Sandboxes:          kr,
		Waker:              waker,
		Policy:             policy,
		MaxHeldPerSandbox:  cfg.MaxHeldPerSandbox,
		MaxHeldTotal:       cfg.MaxHeldTotal,
		ReleaseConcurrency: cfg.ReleaseConcurrency,
		ProbeInterval:      cfg.ProbeInterval,
		AllowLoopbackPodIP: cfg.AllowLoopbackPodIP,
		Events:             events,
		Metrics:            metrics,
		Log:                log,
	})
	if err != nil {
		return nil, err
	}
	tracker := activator.NewTracker()
	reporter := activator.NewReporter(activator.ReporterOptions{
		Tracker: tracker, Sandboxes: kr, Waker: waker, Policy: policy,
		Tick: cfg.ActivityTick, Metrics: metrics, Log: log,
	})
	idle := activator.NewIdleSuspender(activator.IdleOptions{
		Sandboxes: kr, Catalog: kr, Waker: waker, Tracker: tracker, Policy: policy,
		ReportTick: cfg.ActivityTick, Events: events, Metrics: metrics, Log: log,
	})
	go func() {
		// Nothing is decided on a cache that is not complete yet.
		select {
		case <-kr.SyncedC():
		case <-lifeCtx.Done():
			return
		}
		// Reported also when SIGTERM came before the sync: the drain
		// serves on, and its requests keep their sandboxes awake.
		go reporter.Run(lifeCtx)
		if leadCtx.Err() != nil {
			return
		}
		if !cfg.LeaderElection {
			metrics.SetLeader(true)
			idle.Run(leadCtx)
			return
		}
		cs, err := kubernetes.NewForConfig(wcfg)
		if err != nil {
			log.Error("leader election disabled: no client", "err", err)
			return
		}
		err = akube.RunLeader(leadCtx, akube.LeaderOptions{
			Client:        cs,
			Namespace:     leaderNamespace(cfg),
			Name:          cfg.LeaderElectionName,
			Identity:      leaderIdentity(cfg),
			LeaseDuration: cfg.LeaderLeaseDuration,
			RenewDeadline: cfg.LeaderRenewDeadline,
			RetryPeriod:   cfg.LeaderRetryPeriod,
			OnLeading:     metrics.SetLeader,
			Log:           log,
		}, idle.Run)
		if err != nil {
			log.Error("leader election failed", "err", err)
		}
	}()
	return &activatorParts{
		activator: act,
		tracker:   activityTracker{tracker},
		events:    events,
		view:      activator.View{Tracker: tracker, Activator: act, Policy: policy, Events: events},
	}, nil
}

// activatorParts are what the router and the dashboard take of the
// activator.
type activatorParts struct {
	activator *activator.Activator
	tracker   activityTracker
	events    *activator.Recorder
	view      activator.View
}

// activityTracker adapts the activator's tracker to the router's interface.
type activityTracker struct{ t *activator.Tracker }

func (a activityTracker) Begin(k resolver.Key) router.Activity { return a.t.Begin(k) }

func leaderNamespace(cfg *config) string {
	if cfg.LeaderElectionNamespace != "" {
		return cfg.LeaderElectionNamespace
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "sandbox-router"
}

// leaderIdentity must differ between replicas, also between a replica and
// its own restart on the same host (the old lead may still be on record).
func leaderIdentity(cfg *config) string {
	if cfg.LeaderElectionIdentity != "" {
		return cfg.LeaderElectionIdentity
	}
	if name := os.Getenv("POD_NAME"); name != "" {
		return name
	}
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s_%s", host, hex.EncodeToString(b[:]))
}
