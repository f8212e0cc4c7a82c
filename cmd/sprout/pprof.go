package main

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux, served only when asked
	"os"
	"runtime"
)

// SPROUT_PPROF_ADDR, when set (for example 127.0.0.1:6060), serves Go's profiler on that address
// with the block and mutex profiles on, for measuring a node (docs/performance.md). Off by
// default: it is a debugging aid, not a product surface.
func init() {
	addr := os.Getenv("SPROUT_PPROF_ADDR")
	if addr == "" {
		return
	}
	runtime.SetBlockProfileRate(10000) // one blocking event sampled per 10 µs blocked
	runtime.SetMutexProfileFraction(10)
	go func() { _ = http.ListenAndServe(addr, nil) }()
}
