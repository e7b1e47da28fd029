// fib, the Go reference: fib(n) runs fib(n-1) and fib(n-2) as goroutines
// and waits for both (sync.WaitGroup), down to n < 2 or, with a cutoff, to
// n <= cutoff, computed serially. ns_per_op is wall time per goroutine
// made (tasks=, counted as weft-bench counts them: the root included).
// Prints weft-bench's RESULT line. Go 1.19, standard library only.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

var cutoff uint64

func splits(n uint64) bool {
	return n >= 2 && n > cutoff
}

func serial(n uint64) uint64 {
	if n < 2 {
		return n
	}
	return serial(n-1) + serial(n-2)
}

func fib(n uint64) uint64 {
	if !splits(n) {
		return serial(n)
	}
	var a, b uint64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		a = fib(n - 1)
		wg.Done()
	}()
	go func() {
		b = fib(n - 2)
		wg.Done()
	}()
	wg.Wait()
	return a + b
}

func units(n uint64) uint64 {
	if !splits(n) {
		return 1
	}
	return 1 + units(n-1) + units(n-2)
}

func value(n uint64) uint64 {
	a, b := uint64(0), uint64(1)
	for i := uint64(0); i < n; i++ {
		a, b = b, a+b
	}
	return a
}

func main() {
	workers := flag.Int("workers", 1, "GOMAXPROCS")
	n := flag.Uint64("n", 30, "fib(n)")
	flag.Uint64Var(&cutoff, "cutoff", 0, "serial at n <= cutoff; 0: none")
	flag.Uint64("parties", 0, "unused")
	flag.Parse()
	if *workers < 1 || *n > 92 {
		fmt.Fprintln(os.Stderr, "fib: bad --workers or --n")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)

	// The root runs as a goroutine too, as the root is a task in weft.
	start := time.Now()
	done := make(chan uint64)
	go func() { done <- fib(*n) }()
	v := <-done
	ns := time.Since(start).Nanoseconds()

	tasks := units(*n)
	check := "ok"
	if v != value(*n) {
		check = "FAIL"
	}
	fmt.Printf("RESULT workload=fib mode=go workers=%d n=%d ns_per_op=%.2f rss_kib=%d check=%s",
		*workers, *n, float64(ns)/float64(tasks), rssKiB(), check)
	if cutoff > 0 {
		fmt.Printf(" cutoff=%d", cutoff)
	}
	fmt.Printf(" value=%d tasks=%d wall_ms=%.1f\n", v, tasks, float64(ns)/1e6)
	if check != "ok" {
		os.Exit(1)
	}
}
