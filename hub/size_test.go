package hub

import (
	"testing"
	"unsafe"
)

// An idle connection is mostly its Session among a few other structs
// (docs/BENCHMARKS.md, "Memory per idle connection"): a field added to it
// must not silently move it to a larger size class.
func TestSessionSize(t *testing.T) {
	const budget = 256 // bytes: the allocator's size class
	if n := unsafe.Sizeof(Session{}); n > budget {
		t.Fatalf("hub.Session is %d bytes, over its budget of %d: pack the new fields after a mutex, or move rarely used ones behind a pointer made on demand", n, budget)
	}
}
