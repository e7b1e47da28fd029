// spawn, the Go reference: n goroutines, all started before the first is
// waited for (sync.WaitGroup); goroutine i stores i and the main goroutine
// sums the results and checks n(n-1)/2. Prints weft-bench's RESULT line.
// Go 1.19, standard library only.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

//go:noinline
func unit(i uint64) uint64 {
	return i
}

func main() {
	workers := flag.Int("workers", 1, "GOMAXPROCS")
	n := flag.Uint64("n", 1000000, "goroutines")
	flag.Uint64("cutoff", 0, "unused")
	flag.Uint64("parties", 0, "unused")
	flag.Parse()
	if *workers < 1 {
		fmt.Fprintln(os.Stderr, "spawn: bad --workers")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)

	start := time.Now()
	results := make([]uint64, *n)
	var wg sync.WaitGroup
	wg.Add(int(*n))
	for i := uint64(0); i < *n; i++ {
		go func(i uint64) {
			results[i] = unit(i)
			wg.Done()
		}(i)
	}
	wg.Wait()
	var sum uint64
	for _, r := range results {
		sum += r
	}
	ns := time.Since(start).Nanoseconds()

	want := *n * (*n - 1) / 2
	if *n == 0 {
		want = 0
	}
	check := "ok"
	if sum != want {
		check = "FAIL"
	}
	fmt.Printf("RESULT workload=spawn mode=go workers=%d n=%d ns_per_op=%.2f rss_kib=%d check=%s sum=%d\n",
		*workers, *n, float64(ns)/float64(*n), rssKiB(), check, sum)
	if check != "ok" {
		os.Exit(1)
	}
}
