// Package sim plays the sandbox controller and the kubelet against a real
// API server (e2e/cluster), for end-to-end tests and the local demo.
//
// For every Sandbox (agents.x-k8s.io, v1beta1 or v1alpha1) that should run
// it creates a Pod object the way the real controller does (name-hash
// label, controller ownerReference), starts a real HTTP backend for it on a
// fresh loopback address (127.0.1.1, 127.0.1.2, ...; an address is never
// handed out twice in one process), and after a start delay writes the Pod
// status (Running, podIP, Ready) and then the Sandbox status (podIPs,
// serviceFQDN, Ready/Suspended conditions) through the status
// subresources. Suspending stops the backend (connections are refused) and
// deletes the pod; resuming creates a new pod with a new address. It also
// keeps warm-pool pods and lets a Sandbox adopt one.
//
// It owns those pods, their backends and the status of the Sandboxes it
// watches, and nothing else: it talks to the API server only through
// client-go (a dynamic informer for Sandboxes, a typed one for Pods, a
// workqueue, no polling), never edits a Sandbox's spec, and must not depend
// on any router package. There is no garbage collector on the test API
// server, so the sim deletes the pods itself (with grace period 0, as a
// kubelet confirms a deletion). Run one sim per namespace: two would fight
// over the same pods.
package sim
