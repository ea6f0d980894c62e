//go:build !unix

package router

import "net"

type readiness struct{ buffers bool }

// readinessOf: without a non-blocking peek, directions read with their
// buffer.
func readinessOf(net.Conn) *readiness { return nil }

func (*readiness) wait() error { return nil }
