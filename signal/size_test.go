package signal

import (
	"testing"
	"unsafe"
)

// Every /live connection is a window (docs/BENCHMARKS.md, "Memory per
// idle connection"): a field added to it must not silently move it to a
// larger size class.
func TestWindowSize(t *testing.T) {
	const budget = 192 // bytes: the allocator's size class
	if n := unsafe.Sizeof(window{}); n > budget {
		t.Fatalf("signal's window is %d bytes, over its budget of %d: move rarely used fields behind a pointer made on demand", n, budget)
	}
}
