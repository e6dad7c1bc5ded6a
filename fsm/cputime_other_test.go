//go:build !unix

package fsm

// cpuTimes is not measured on this platform.
func cpuTimes() (user, system int64) { return 0, 0 }
