// timer, the Go reference: how late time.Sleep(1 ms) wakes, n times in a
// row in one goroutine, measured with the monotonic clock. With --parties
// K, K more goroutines each spin on the clock for 20 us and then call
// runtime.Gosched, until the samples are taken (a busy runtime).
// ns_per_op is the p99 lateness. Prints weft-bench's RESULT line.
// Go 1.19, standard library only.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

const (
	sleep = time.Millisecond
	step  = 20 * time.Microsecond
)

// Nearest rank: the smallest value with at least q of them at or below.
func quantile(v []int64, q float64) int64 {
	rank := int(q*float64(len(v)) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	return v[rank-1]
}

func main() {
	workers := flag.Int("workers", 1, "GOMAXPROCS")
	n := flag.Int("n", 1000, "sleeps")
	flag.Uint64("cutoff", 0, "unused")
	parties := flag.Int("parties", 0, "busy goroutines")
	flag.Parse()
	if *workers < 1 || *n < 1 || *parties < 0 {
		fmt.Fprintln(os.Stderr, "timer: bad --workers, --n or --parties")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)

	var stop int32
	var steps, idleBusy int64
	var wg sync.WaitGroup
	wg.Add(*parties)
	for i := 0; i < *parties; i++ {
		go func() {
			var mine int64
			for atomic.LoadInt32(&stop) == 0 {
				until := time.Now().Add(step)
				for time.Now().Before(until) {
				}
				mine++
				runtime.Gosched()
			}
			atomic.AddInt64(&steps, mine)
			if mine == 0 {
				atomic.AddInt64(&idleBusy, 1)
			}
			wg.Done()
		}()
	}
	if *parties > 0 {
		for i := 0; i < 10; i++ {
			time.Sleep(sleep)
		}
	}
	late := make([]int64, *n)
	for i := range late {
		t0 := time.Now()
		time.Sleep(sleep)
		late[i] = int64(time.Since(t0) - sleep)
	}
	atomic.StoreInt32(&stop, 1)
	wg.Wait()

	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	p50, p99 := quantile(late, 0.50), quantile(late, 0.99)
	check := "ok"
	if late[0] < 0 || idleBusy != 0 {
		check = "FAIL"
	}
	line := fmt.Sprintf("RESULT workload=timer mode=go workers=%d n=%d ns_per_op=%.2f rss_kib=%d check=%s",
		*workers, *n, float64(p99), rssKiB(), check)
	if *parties > 0 {
		line += fmt.Sprintf(" parties=%d", *parties)
	}
	line += fmt.Sprintf(" p50_us=%.1f p99_us=%.1f max_us=%.1f min_us=%.1f",
		float64(p50)/1e3, float64(p99)/1e3, float64(late[*n-1])/1e3,
		float64(late[0])/1e3)
	if *parties > 0 {
		line += fmt.Sprintf(" busy_steps=%d step_us=%d", steps, step.Microseconds())
	}
	fmt.Println(line)
	if check != "ok" {
		os.Exit(1)
	}
}
