package live

import (
	"testing"
	"unsafe"
)

// Every idle /live connection holds one session (docs/BENCHMARKS.md,
// "Memory per idle connection"): a field added to it must not silently
// move it to a larger size class.
func TestSessionSize(t *testing.T) {
	const budget = 64 // bytes: the allocator's size class
	if n := unsafe.Sizeof(session{}); n > budget {
		t.Fatalf("live's session is %d bytes, over its budget of %d: move rarely used fields behind a pointer made on demand", n, budget)
	}
}
