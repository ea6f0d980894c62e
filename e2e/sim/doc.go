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
// subresources. Every backend port speaks HTTP/1.1 and h2c (prior
// knowledge); POST /echo streams the body back, and for a gRPC content
// type it is a bidirectional echo stream ending with grpc-status 0, so a
// gRPC client with a raw codec can call it. Every backend also serves the
// sandbox runtime API the agent-sandbox SDKs call (runtime.go: /execute,
// /upload, /download/, /list/, /exists/) on a bounded in-memory tree of
// its own, with a few interpreted commands and never a real process.
// RunClaims (claims.go) plays upstream's SandboxClaim controller in a
// namespace: a claim gets a Sandbox of its name, which goes with it;
// ClaimCRDPath is our own minimal SandboxClaim CRD.
// Options.GRPCPorts are served
// by a real grpc-go server instead, with the standard health service.
// GET /ready (ReadinessPath) on every HTTP port is the app's readiness:
// 503 while it initialises (Kubelet mode), then 200. Each backend counts
// what it receives (PodStats: kubelet probes, other probes, requests and
// those early, before the app was initialised) with atomics, kept by pod
// name for the life of the Sim.
// Suspending stops the backend
// (connections are refused) and deletes the pod; resuming creates a new
// pod with a new address. It also keeps warm-pool pods and lets a Sandbox
// adopt one.
//
// The order of a start, which a router may rely on:
//
//  1. the backend listens on the pod's address (it accepts connections
//     from here on, so a pod is never Ready before its backend serves);
//  2. the Pod object is created (Pending, no podIP), and the Sandbox
//     status says Ready=False (PodNotReady) without podIPs;
//  3. after StartDelay (or at MarkReady) the Pod status is written Running
//     and Ready with its podIP; PodInfo.ReadySentAt is when that request
//     was sent;
//  4. then the Sandbox status: Ready=True, podIPs.
//
// With Options.Kubelet a sandbox's pod starts as a real kubelet starts it
// instead (warm-pool pods keep the order above), so a router can reach a
// pod that has an address before Kubernetes calls it Ready:
//
//  1. the Pod object is created (no status); its backend holds a fresh
//     address (bound, not listening: connections are refused), and the
//     Sandbox status says Ready=False (PodNotReady) without podIPs;
//  2. after AddressDelay the Pod status is written Pending with its podIP,
//     Ready=False, the container waiting (PodInfo.AddressSentAt);
//  3. after ListenDelay (plus jitter), or at Listen, the backend listens
//     (ListeningAt); /ready answers 503 until after InitDelay, or at
//     Initialise, the app is initialised (InitialisedAt), then 200;
//  4. the pod's kubelet runs its readiness probe (HTTP GET /ready with
//     User-Agent kube-probe/sim, a TCP connect, or for an exec probe the
//     same GET), over the network, at the address write and every
//     ProbePeriod after; the first success writes the Pod Running and
//     Ready (ReadySentAt), and the kubelet stops probing;
//  5. after SandboxStatusDelay (the controller's reaction time, which an
//     adoption of a warm-pool pod waits too) the Sandbox status:
//     Ready=True, podIPs.
//
// So AddressSentAt < ListeningAt <= InitialisedAt (Listen waits for the
// address write), and ReadySentAt comes after a probe that found the
// backend listening, and for an HTTP or exec probe initialised.
// ReplacePod ends a pod as a graceful termination does: its object is
// deleted with a grace period and stays with a deletionTimestamp, its
// backend goes on serving (and can be initialised with InitialisePod)
// until StopPod or Close, and the sandbox gets a new pod that starts
// again.
//
// A stop is the reverse, as when a pod dies: the backend stops first (its
// connections close, new ones are refused), the Pod object is deleted,
// then the Sandbox status goes Ready=False without podIPs.
//
// The sim is level-triggered like a real controller: each reconcile reads
// the newest Sandbox from its cache, so a burst of suspend and resume
// patches ends in the state of the last one, whichever it saw in between
// (a suspension it did see ends the pod, and the resume after it gets a
// new pod; one it missed leaves the running pod alone). Changes of
// metadata only (annotations, labels, such as the router's last-activity
// annotation) and of spec fields it does not read leave the pod, its
// backend and its open connections alone; the conditions' observedGeneration
// follows the spec's generation.
//
// It owns those pods, their backends and the status of the Sandboxes it
// watches, and nothing else: it talks to the API server only through
// client-go (a dynamic informer for Sandboxes, a typed one for Pods, a
// workqueue, no polling), never edits a Sandbox's spec, and must not depend
// on any router package. There is no garbage collector on the test API
// server, so the sim deletes the pods itself (with grace period 0, as a
// kubelet confirms a deletion; a pod that ReplacePod deleted gracefully
// at StopPod). Run one sim per namespace: two would fight over the same
// pods.
package sim
