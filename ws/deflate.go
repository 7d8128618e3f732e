package ws

import (
	"bytes"
	"compress/flate"
	"fmt"
	"hash/maphash"
	"io"
	"sync"
	"sync/atomic"
)

// deflateThreshold is the smallest message worth compressing: below it the
// deflate framing costs more than it saves.
const deflateThreshold = 64

// deflateTail is the end of a flushed deflate block, removed from each
// message on the wire (RFC 7692 §7.2.1).
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// flaters pools compressors and decompressors; each message is
// compressed independently (no context takeover), so a connection keeps
// no compression state, and one message's compressed bytes are the same
// for every connection: recent remembers the last ones (see compressShared).
type flaters struct {
	writers sync.Pool
	readers sync.Pool

	seed   maphash.Seed
	recent [sharedSlots]atomic.Pointer[sharedDeflate]
	kept   atomic.Int64  // bytes of originals and compressed forms in recent
	seq    atomic.Uint64 // numbers the remembered messages, oldest first
}

// sharedSlots is the number of messages compressShared remembers,
// sharedMax the largest it remembers (bigger ones are compressed per
// call), and sharedBytes the most it keeps in all (originals and
// compressed forms; past it a message is compressed per call until
// space is freed). The slots are many because a broadcast that runs
// behind has as many messages in flight as publications queued in the
// outboxes: with 64 slots, 1,000 subscribers 1–2 s behind 100
// publications/s evicted each other's messages on nearly every call and
// compression took ~65 % of the server's CPU (docs/BENCHMARKS.md, issue
// 20); 1,024 slots cost 8 KiB of pointers per engine.
const (
	sharedSlots = 1024
	sharedMax   = 64 << 10
	sharedBytes = 8 << 20
)

// sharedDeflate is one remembered compression: a copy of the message (so
// a caller reusing its buffer can never be answered with another
// message's bytes) and its compressed form.
type sharedDeflate struct {
	hash uint64
	seq  uint64 // the order it was remembered in
	data []byte
	out  []byte
}

// compressShared is compress for messages that many connections send in
// the same moment (a hub broadcast: one frame, encoded once, written to
// every subscriber). A message just compressed for another connection is
// not compressed again: it is found by its hash, and only served when its
// bytes are equal, so a hit costs a hash and a comparison of the message
// (tens of nanoseconds per KiB) instead of a deflate (microseconds per
// KiB). Messages that do not repeat cost one extra copy.
func (e *Engine) compressShared(data []byte) []byte {
	if len(data) > sharedMax {
		return e.compress(data)
	}
	// Two slots may hold a message (h's low and high bits choose them),
	// so two messages in flight that share one slot do not evict each
	// other; a new one replaces the older of the two.
	h := maphash.Bytes(e.flate.seed, data)
	a, b := &e.flate.recent[h%sharedSlots], &e.flate.recent[(h>>32)%sharedSlots]
	da, db := a.Load(), b.Load()
	for _, d := range [2]*sharedDeflate{da, db} {
		if d != nil && d.hash == h && bytes.Equal(d.data, data) {
			e.stats.deflateShared.Add(1)
			return d.out
		}
	}
	out := e.compress(data)
	slot, old := a, da
	if da != nil && (db == nil || db.seq < da.seq) {
		slot, old = b, db
	}
	grow := int64(len(data) + len(out))
	if old != nil {
		grow -= int64(len(old.data) + len(old.out))
	}
	if e.flate.kept.Load()+grow > sharedBytes {
		return out
	}
	if slot.CompareAndSwap(old, &sharedDeflate{hash: h, seq: e.flate.seq.Add(1), data: bytes.Clone(data), out: out}) {
		e.flate.kept.Add(grow)
	}
	return out
}

// compress returns data compressed as one permessage-deflate message.
func (e *Engine) compress(data []byte) []byte {
	var buf bytes.Buffer
	w, _ := e.flate.writers.Get().(*flate.Writer)
	if w == nil {
		w, _ = flate.NewWriter(&buf, flate.BestSpeed)
	} else {
		w.Reset(&buf)
	}
	w.Write(data)
	w.Flush()
	e.flate.writers.Put(w)
	out := buf.Bytes()
	return out[:len(out)-len(deflateTail)]
}

// decompress inflates one message, refusing output over limit bytes.
func (e *Engine) decompress(data []byte, limit int64) ([]byte, *protocolError) {
	src := io.MultiReader(bytes.NewReader(data), bytes.NewReader(deflateTail), bytes.NewReader([]byte{0x01, 0x00, 0x00, 0xff, 0xff}))
	r, _ := e.flate.readers.Get().(io.ReadCloser)
	if r == nil {
		r = flate.NewReader(src)
	} else {
		r.(flate.Resetter).Reset(src, nil)
	}
	defer e.flate.readers.Put(r)
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, &protocolError{CloseProtocolError, fmt.Sprintf("invalid compressed message: %v", err)}
	}
	if int64(len(out)) > limit {
		return nil, &protocolError{CloseMessageTooBig, fmt.Sprintf("message over %d bytes", limit)}
	}
	return out, nil
}
