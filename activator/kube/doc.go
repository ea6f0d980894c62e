// Package kube is the activator's Kubernetes side: a Waker that resumes,
// suspends and records activity on Sandbox objects with JSON merge patches
// (v1beta1 spec.operatingMode, v1alpha1 spec.replicas), and the leader
// election (a coordination.k8s.io Lease through client-go) that picks the
// one replica running the idle suspender.
//
// It decides nothing: when to resume or suspend is the activator's
// business; this package only turns those decisions into API calls and
// API errors into the activator's error kinds.
package kube
