// Shared by every Go reference: CMake builds each bench/go/<workload>.go
// together with this file.
package main

import "syscall"

// rssKiB is the peak RSS of this process, for the RESULT line.
func rssKiB() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss
}
