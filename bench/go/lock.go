// lock, the Go reference: T goroutines (--parties) make n increments of
// one counter in all, each under one sync.Mutex; goroutine i makes n/T,
// one more if i < n%T. They start together when a channel closes; the
// clock runs from there to the last one's end. The increment reads and
// writes the counter as two steps, and the counter must end at exactly n.
// handoff_pct is the share of acquires that took the lock from another
// goroutine. Run as lock_yield (the same program under a second name, see
// bench/CMakeLists.txt) it calls runtime.Gosched() inside the critical
// section, between the read and the write. Prints weft-bench's RESULT
// line. Go 1.19, standard library only.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// shared is the counter and its statistics, all under mu.
type shared struct {
	mu       sync.Mutex
	counter  uint64
	last     int
	handoffs uint64
}

func party(s *shared, me int, share uint64, yield bool, start <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	<-start
	for i := uint64(0); i < share; i++ {
		s.mu.Lock()
		if s.last != me && s.last >= 0 {
			s.handoffs++
		}
		s.last = me
		v := s.counter
		if yield {
			runtime.Gosched()
		}
		s.counter = v + 1
		s.mu.Unlock()
	}
}

func main() {
	workload := filepath.Base(os.Args[0])
	yield := workload == "lock_yield"
	workers := flag.Int("workers", 1, "GOMAXPROCS")
	n := flag.Uint64("n", 1000000, "increments in all")
	parties := flag.Uint64("parties", 4, "goroutines sharing the lock")
	flag.Uint64("cutoff", 0, "unused")
	flag.Parse()
	if *workers < 1 || *parties < 1 {
		fmt.Fprintln(os.Stderr, workload+": bad --workers or --parties")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)
	s := &shared{last: -1}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := uint64(0); i < *parties; i++ {
		share := *n / *parties
		if i < *n%*parties {
			share++
		}
		wg.Add(1)
		go party(s, int(i), share, yield, start, &wg)
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	ns := time.Since(t0).Nanoseconds()

	check := "ok"
	if s.counter != *n {
		check = "FAIL"
	}
	fmt.Printf("RESULT workload=%s mode=go workers=%d n=%d ns_per_op=%.2f rss_kib=%d check=%s parties=%d counter=%d handoff_pct=%.1f\n",
		workload, *workers, *n, float64(ns)/float64(*n), rssKiB(), check, *parties,
		s.counter, 100*float64(s.handoffs)/float64(*n))
	if check != "ok" {
		os.Exit(1)
	}
}
