// pingpong, the Go reference: two goroutines hand a token back and forth
// n times over a pair of unbuffered channels; one op is a round trip.
// --parties names the weft primitive the cell stands beside (1 events, 2
// one-slot queues): Go's answer to both is the unbuffered channel, so it
// changes nothing but the RESULT line. The token counts up by one at every
// hand-off: the first goroutine must get back 2, 4, ..., 2n, the second
// 1, 3, ..., 2n-1. Prints weft-bench's RESULT line. Go 1.19, standard
// library only.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
)

// second receives 1, 3, ... and answers each with the next token; it
// reports the last token it got, or 0 at the first one out of sequence.
func second(n uint64, in <-chan uint64, out chan<- uint64, done chan<- uint64) {
	var tok uint64
	for i := uint64(0); i < n; i++ {
		tok = <-in
		if tok != 2*i+1 {
			done <- 0
			close(out)
			return
		}
		out <- tok + 1
	}
	done <- tok
}

func main() {
	workers := flag.Int("workers", 1, "GOMAXPROCS")
	n := flag.Uint64("n", 1000000, "round trips")
	parties := flag.Uint64("parties", 1, "1 events, 2 one-slot queues (both: unbuffered channels)")
	flag.Uint64("cutoff", 0, "unused")
	flag.Parse()
	if *workers < 1 || *n < 1 || (*parties != 1 && *parties != 2) {
		fmt.Fprintln(os.Stderr, "pingpong: bad --workers, --n or --parties")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)
	ab := make(chan uint64)
	ba := make(chan uint64)
	done := make(chan uint64, 1)

	start := time.Now()
	go second(*n, ab, ba, done)
	var tok uint64
	ok := true
	ab <- 1
	for i := uint64(0); i < *n; i++ {
		tok = <-ba
		if tok != 2*i+2 {
			ok = false
			break
		}
		if i+1 < *n {
			ab <- tok + 1
		}
	}
	last := <-done
	ns := time.Since(start).Nanoseconds()

	check := "ok"
	if !ok || tok != 2**n || last != 2**n-1 {
		check = "FAIL"
	}
	fmt.Printf("RESULT workload=pingpong mode=go workers=%d n=%d ns_per_op=%.2f rss_kib=%d check=%s parties=%d via=chan token=%d\n",
		*workers, *n, float64(ns)/float64(*n), rssKiB(), check, *parties, tok)
	if check != "ok" {
		os.Exit(1)
	}
}
