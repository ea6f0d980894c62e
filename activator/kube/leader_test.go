package kube

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestLeadEndsBeforeRelease: when ctx ends, the lead returns while this
// replica still holds the Lease, and only then is the Lease released, so
// work done under the lead never overlaps the next leader's. (A fake
// clientset pins the order; e2e/activator hands the lead over between
// router processes on the real API server.)
func TestLeadEndsBeforeRelease(t *testing.T) {
	cs := fake.NewSimpleClientset()
	ctx, cancel := context.WithCancel(context.Background())
	holderAtLeadEnd := make(chan string, 1)
	leading := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- RunLeader(ctx, LeaderOptions{
			Client: cs, Namespace: "sandbox-router", Name: "lease", Identity: "me",
			LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 100 * time.Millisecond,
		}, func(lctx context.Context) {
			close(leading)
			<-lctx.Done()
			l, err := cs.CoordinationV1().Leases("sandbox-router").Get(context.Background(), "lease", metav1.GetOptions{})
			if err != nil {
				holderAtLeadEnd <- "error: " + err.Error()
				return
			}
			holderAtLeadEnd <- *l.Spec.HolderIdentity
		})
	}()
	select {
	case <-leading:
	case <-time.After(30 * time.Second):
		t.Fatal("never led")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h := <-holderAtLeadEnd; h != "me" {
		t.Fatalf("holder when the lead ended: %q, want me (not yet released)", h)
	}
	l, err := cs.CoordinationV1().Leases("sandbox-router").Get(context.Background(), "lease", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := l.Spec.HolderIdentity; h != nil && *h != "" {
		t.Fatalf("holder after RunLeader returned: %q, want released", *h)
	}
}
