package kube

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	v1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderOptions configure RunLeader. Durations default to client-go's
// usual 15s lease, 10s renew deadline and 2s retry period.
type LeaderOptions struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string // the Lease's name
	Identity  string // unique per replica (the pod name)

	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration

	// OnLeading is told when this replica gains and loses the lead.
	OnLeading func(leading bool)
	Log       *slog.Logger
}

// RunLeader campaigns for the Lease until ctx ends and runs lead while this
// replica holds it; lead's context ends when the lead is lost. A lost lead
// is campaigned for again, but only after the previous lead returned, so
// two runs of lead never overlap in one process. On ctx's end the Lease is
// released, so that a replica that stops hands over at once rather than
// after the lease expires.
func RunLeader(ctx context.Context, opts LeaderOptions, lead func(ctx context.Context)) error {
	if opts.Client == nil || opts.Namespace == "" || opts.Name == "" || opts.Identity == "" {
		return errors.New("leader election: Client, Namespace, Name and Identity are required")
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = 15 * time.Second
	}
	if opts.RenewDeadline <= 0 {
		opts.RenewDeadline = 10 * time.Second
	}
	if opts.RetryPeriod <= 0 {
		opts.RetryPeriod = 2 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.OnLeading == nil {
		opts.OnLeading = func(bool) {}
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  v1.ObjectMeta{Namespace: opts.Namespace, Name: opts.Name},
		Client:     opts.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: opts.Identity},
	}
	// The elector runs on its own context, ended only once the lead has
	// stopped: client-go releases the Lease when its context ends, and
	// work done under the lead must be over by then, or it would overlap
	// the next leader's.
	elCtx, endElection := context.WithCancel(context.WithoutCancel(ctx))
	defer endElection()
	var leadMu sync.Mutex
	stopAfterLead := context.AfterFunc(ctx, func() {
		leadMu.Lock() // a lead running sees ctx's end and returns first
		leadMu.Unlock()
		endElection()
	})
	defer stopAfterLead()
	// lead runs in a goroutine client-go starts; leadMu also keeps a lead
	// that is still stopping from overlapping the next one.
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   opts.LeaseDuration,
			RenewDeadline:   opts.RenewDeadline,
			RetryPeriod:     opts.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            opts.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					leadMu.Lock()
					defer leadMu.Unlock()
					if lctx.Err() != nil || ctx.Err() != nil {
						return
					}
					// The lead ends when it is lost or when ctx ends.
					lctx, cancel := context.WithCancel(lctx)
					defer cancel()
					defer context.AfterFunc(ctx, cancel)()
					opts.Log.Info("leading: this replica suspends idle sandboxes", "lease", opts.Namespace+"/"+opts.Name, "identity", opts.Identity)
					opts.OnLeading(true)
					defer opts.OnLeading(false)
					lead(lctx)
				},
				OnStoppedLeading: func() {
					opts.Log.Info("lead lost or released", "lease", opts.Namespace+"/"+opts.Name, "identity", opts.Identity)
				},
				OnNewLeader: func(id string) {
					if id != opts.Identity {
						opts.Log.Info("another replica leads", "lease", opts.Namespace+"/"+opts.Name, "leader", id)
					}
				},
			},
		})
		if err != nil {
			return err
		}
		le.Run(elCtx) // returns when the lead is lost or the election ends
	}
	leadMu.Lock() // wait for the last lead to stop
	leadMu.Unlock()
	return nil
}
