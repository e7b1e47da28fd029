// echo and mixed, the Go server: net.Listen on 127.0.0.1 and a goroutine
// per connection that reads a 64-byte request (io.ReadFull), answers it
// and writes the reply, until end of file. weft-bench's cell runs this
// program as its server and drives it with its own load generator
// (bench/loadgen.c), which measures this process's CPU time; this program
// prints no RESULT line. Built a second time under the name mixed.
//
// The protocol (bench/loadgen.h): with --rounds 0 (echo) the reply is the
// request; with --rounds R > 0 (mixed) the first 8 bytes, read as a
// little-endian integer, are XORed with R rounds of FNV-1a over the other
// 56, exactly as bench_echo_work in C.
//
// The control protocol: the first line on stdout is "port=P work_ns=W"
// (W: one request's work as timed here); end of file on stdin means stop.
// Go sets TCP_NODELAY on every TCP connection by default. Go 1.19,
// standard library only.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"time"
)

const reqLen = 64

// work is bench_echo_work: FNV-1a over p, rounds times, the hash carried
// from round to round.
func work(p []byte, rounds int) uint64 {
	h := uint64(14695981039346656037)
	for r := 0; r < rounds; r++ {
		for _, b := range p {
			h ^= uint64(b)
			h *= 1099511628211
		}
	}
	return h
}

func answer(buf []byte, rounds int) {
	if rounds == 0 {
		return
	}
	tag := binary.LittleEndian.Uint64(buf) ^ work(buf[8:], rounds)
	binary.LittleEndian.PutUint64(buf, tag)
}

// serve answers requests on c until end of file or an error; the load
// generator sees and reports any error itself.
func serve(c net.Conn, rounds int) {
	defer c.Close()
	buf := make([]byte, reqLen)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		answer(buf, rounds)
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// workNs times one request's work, as the C servers do.
func workNs(rounds int) float64 {
	if rounds == 0 {
		return 0
	}
	p := make([]byte, reqLen-8)
	p[0] = 1
	var sink uint64
	const calls = 64
	start := time.Now()
	for i := 0; i < calls; i++ {
		p[0] = byte(i)
		sink += work(p, rounds)
	}
	ns := float64(time.Since(start).Nanoseconds()) / calls
	if sink == 42 { // keeps the calls; never true in practice
		ns++
	}
	return ns
}

func main() {
	workers := flag.Int("workers", 1, "GOMAXPROCS")
	flag.Uint64("n", 0, "connections (the load generator's business)")
	flag.Uint64("cutoff", 0, "unused")
	flag.Uint64("parties", 0, "unused")
	rounds := flag.Int("rounds", 0, "FNV-1a rounds per request; 0: a plain echo")
	flag.Parse()
	if *workers < 1 || *rounds < 0 {
		fmt.Fprintln(os.Stderr, "echo: bad --workers or --rounds")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo: listen:", err)
		os.Exit(1)
	}
	fmt.Printf("port=%d work_ns=%.0f\n", ln.Addr().(*net.TCPAddr).Port, workNs(*rounds))
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo: accept:", err)
			os.Exit(1)
		}
		go serve(c, *rounds)
	}
}
