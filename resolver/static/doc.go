// Package static is a resolver backed by a YAML file of routes. It serves
// tests, the benchmarks (bench/) and deployments without Kubernetes
// (deploy/overlays/static).
//
// The file is re-read when it changes (including the symlink swap a
// Kubernetes ConfigMap mount performs); a file that fails to parse leaves
// the previous table in force. Lookups read an immutable table through an
// atomic pointer, so they never block a reload and never allocate.
package static
