package main

import "golang.org/x/sys/unix"

// mono is CLOCK_MONOTONIC in nanoseconds: one clock for both processes
// (Go's own monotonic readings count from each process's start).
func mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}
