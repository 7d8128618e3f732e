package ws

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// A broadcast running behind has many messages in flight at once: the
// shared compression still finds (nearly) every one of them, and stays
// within its byte bound when the messages are large, serving correct
// compressions either way.
func TestDeflateSharedBacklog(t *testing.T) {
	e := newEngine(EngineConfig{})
	check := func(m, out []byte) {
		t.Helper()
		got, perr := e.decompress(out, int64(len(m))+1)
		if perr != nil || !bytes.Equal(got, m) {
			t.Fatalf("a %d-byte message inflates to %d bytes, %v", len(m), len(got), perr)
		}
	}
	var msgs [][]byte
	for i := range 300 {
		msgs = append(msgs, fmt.Appendf(nil, `{"channel":"news","offset":%d,"data":{"t":%d,"p":"%s"}}`, i, 1764683917250496183+int64(i)*7919, bytes.Repeat([]byte("x"), 24)))
	}
	for _, m := range msgs {
		check(m, e.compressShared(m))
	}
	hits0 := e.stats.deflateShared.Load()
	for _, m := range msgs {
		check(m, e.compressShared(m))
	}
	if hits := e.stats.deflateShared.Load() - hits0; hits < uint64(len(msgs))*90/100 {
		t.Errorf("300 messages in flight: %d found of %d (the rest compressed again)", hits, len(msgs))
	}

	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 60<<10)
	for range 300 { // ~36 MB of incompressible messages
		for i := range big {
			big[i] = byte(rng.Uint32())
		}
		check(big, e.compressShared(big))
		if kept := e.flate.kept.Load(); kept > sharedBytes || kept < 0 {
			t.Fatalf("the shared compressions keep %d bytes; the bound is %d", kept, sharedBytes)
		}
	}
}
