//go:build unix

package router

import "syscall"

// RaiseDescriptorLimit raises the soft RLIMIT_NOFILE to the hard one and
// returns both as they are then. The Go runtime does the same when the
// os package starts; this makes it explicit and reports the result, which
// the connection caps are derived from.
func RaiseDescriptorLimit() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	return uint64(lim.Cur), uint64(lim.Max), nil
}
