// Package cluster starts a real etcd and a real kube-apiserver on loopback
// for end-to-end tests: Start(t) builds both from source through the
// separate e2e/tools module (cached in e2e/tools/bin, rebuilt when the tools
// module's go.mod or go.sum is newer), runs each in its own t.TempDir() on
// free 127.0.0.1 ports, waits for /readyz, and writes an admin kubeconfig.
//
// It owns the life of the processes it starts and nothing else: every
// process is stopped by its PID (SIGTERM, then SIGKILL after a deadline) in
// t.Cleanup, never by name; process output goes to log files that are
// printed only when the test failed. There is no kubelet, scheduler or
// controller-manager; tests play those roles themselves.
//
// It must not depend on client-go or any router package: tests talk to the
// API server over plain HTTPS with the tokens and CA file exposed here.
package cluster
