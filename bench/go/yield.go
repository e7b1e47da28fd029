// yield, the Go reference: runtime.Gosched() n times in one goroutine
// (parties=1), or n/2 times in each of two goroutines (parties=2).
// Prints weft-bench's RESULT line. Go 1.19, standard library only.
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

// takeTurns yields per times; it counts the turns after which the other
// party had run in between (a statistic, so relaxed is enough).
func takeTurns(per uint64, me int32, last *int32) (handoffs uint64) {
	for i := uint64(0); i < per; i++ {
		atomic.StoreInt32(last, me)
		runtime.Gosched()
		if atomic.LoadInt32(last) != me {
			handoffs++
		}
	}
	return handoffs
}

func main() {
	workers := flag.Int("workers", 1, "GOMAXPROCS")
	n := flag.Uint64("n", 10000000, "yields in all")
	parties := flag.Uint64("parties", 1, "goroutines taking turns: 1 or 2")
	flag.Uint64("cutoff", 0, "unused")
	flag.Parse()
	if *parties == 0 {
		*parties = 1
	}
	if *workers < 1 || (*parties != 1 && *parties != 2) || *n%*parties != 0 {
		fmt.Fprintln(os.Stderr, "yield: bad --workers, --parties or --n")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)
	per := *n / *parties
	var last int32
	var total, handoffs uint64

	start := time.Now()
	if *parties == 1 {
		takeTurns(per, 0, &last)
		total = per
	} else {
		var wg sync.WaitGroup
		for p := int32(0); p < 2; p++ {
			wg.Add(1)
			go func(me int32) {
				h := takeTurns(per, me, &last)
				atomic.AddUint64(&handoffs, h)
				atomic.AddUint64(&total, per)
				wg.Done()
			}(p)
		}
		wg.Wait()
	}
	ns := time.Since(start).Nanoseconds()

	check := "ok"
	if total != *n {
		check = "FAIL"
	}
	fmt.Printf("RESULT workload=yield mode=go workers=%d n=%d ns_per_op=%.2f rss_kib=%d check=%s parties=%d",
		*workers, *n, float64(ns)/float64(*n), rssKiB(), check, *parties)
	if *parties == 2 {
		fmt.Printf(" handoff_pct=%.1f", 100*float64(handoffs)/float64(*n))
	}
	fmt.Println()
	if check != "ok" {
		os.Exit(1)
	}
}
