// idle, the Go reference: the CPU the Go runtime burns while the program
// sleeps n milliseconds (process CPU time, every thread, from getrusage).
// Prints weft-bench's RESULT line. Go 1.19, standard library only.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
)

func usage() (cpuNs int64, rssKiB int64) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano(), ru.Maxrss
}

func main() {
	workers := flag.Int("workers", 1, "GOMAXPROCS")
	n := flag.Uint64("n", 1000, "milliseconds to idle")
	flag.Uint64("cutoff", 0, "unused")
	flag.Uint64("parties", 0, "unused")
	flag.Parse()
	if *workers < 1 || *n == 0 {
		fmt.Fprintln(os.Stderr, "idle: bad --workers or --n")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)

	// One goroutine first, so that the scheduler has started and stopped.
	done := make(chan int)
	go func() { done <- 42 }()
	answer := <-done

	cpu0, _ := usage()
	start := time.Now()
	time.Sleep(time.Duration(*n) * time.Millisecond)
	wall := time.Since(start).Nanoseconds()
	cpu1, rss := usage()
	cpu := cpu1 - cpu0

	check := "ok"
	if answer != 42 {
		check = "FAIL"
	}
	fmt.Printf("RESULT workload=idle mode=go workers=%d n=%d ns_per_op=%.2f rss_kib=%d check=%s cpu_pct=%.3f wall_ms=%.1f\n",
		*workers, *n, float64(cpu)/float64(*n), rss, check,
		100*float64(cpu)/float64(wall), float64(wall)/1e6)
}
