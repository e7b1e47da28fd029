// sleepers, the Go reference: n goroutines each time.Sleep one second,
// then end; all are started before the main goroutine waits for them
// (sync.WaitGroup). Each reads the monotonic clock around its sleep; the
// check fails unless all n ended and every one slept at least a second.
// asleep_ms is when the last goroutine went to sleep, from the first start.
// ns_per_op is (wall - 1 s) / n; bytes_per_sleeper is the peak RSS growth
// over n (Maxrss at the end against /proc/self/statm before the first
// start). Prints weft-bench's RESULT line. Go 1.19, standard library only.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

const sleep = time.Second

// Resident memory now, KiB, from /proc/self/statm; -1 if unreadable.
func rssNowKiB() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return -1
	}
	return resident * int64(os.Getpagesize()) / 1024
}

// *at = max(*at, v), atomically.
func storeMax(at *int64, v int64) {
	for {
		max := atomic.LoadInt64(at)
		if v <= max || atomic.CompareAndSwapInt64(at, max, v) {
			return
		}
	}
}

func main() {
	workers := flag.Int("workers", 1, "GOMAXPROCS")
	n := flag.Int64("n", 100000, "sleepers")
	flag.Uint64("cutoff", 0, "unused")
	flag.Uint64("parties", 0, "unused")
	flag.Parse()
	if *workers < 1 || *n < 1 {
		fmt.Fprintln(os.Stderr, "sleepers: bad --workers or --n")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)

	var ended, short, lateMax, asleep int64
	var wg sync.WaitGroup
	base := rssNowKiB()
	start := time.Now()
	wg.Add(int(*n))
	for i := int64(0); i < *n; i++ {
		go func() {
			t0 := time.Now()
			time.Sleep(sleep)
			late := int64(time.Since(t0) - sleep)
			if late < 0 {
				atomic.AddInt64(&short, 1)
			}
			storeMax(&lateMax, late)
			storeMax(&asleep, int64(t0.Sub(start)))
			atomic.AddInt64(&ended, 1)
			wg.Done()
		}()
	}
	spawn := time.Since(start)
	wg.Wait()
	wall := time.Since(start)
	peak := rssKiB()

	check := "ok"
	if ended != *n || short != 0 || wall < sleep {
		check = "FAIL"
	}
	bytes := -1.0
	if base >= 0 {
		bytes = float64(peak-base) * 1024 / float64(*n)
	}
	fmt.Printf("RESULT workload=sleepers mode=go workers=%d n=%d ns_per_op=%.2f rss_kib=%d check=%s wall_ms=%.1f spawn_ms=%.1f asleep_ms=%.1f bytes_per_sleeper=%.0f late_max_ms=%.2f ended=%d base_kib=%d\n",
		*workers, *n, float64(wall-sleep)/float64(*n), peak, check,
		float64(wall)/1e6, float64(spawn)/1e6, float64(asleep)/1e6, bytes,
		float64(lateMax)/1e6, ended, base)
	if check != "ok" {
		os.Exit(1)
	}
}
