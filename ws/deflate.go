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
}

// sharedSlots is the number of messages compressShared remembers, and
// sharedMax the largest it remembers (bigger ones are compressed per
// call): at most sharedSlots × sharedMax bytes of originals are kept.
const (
	sharedSlots = 64
	sharedMax   = 64 << 10
)

// sharedDeflate is one remembered compression: a copy of the message (so
// a caller reusing its buffer can never be answered with another
// message's bytes) and its compressed form.
type sharedDeflate struct {
	hash uint64
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
	h := maphash.Bytes(e.flate.seed, data)
	slot := &e.flate.recent[h%sharedSlots]
	if d := slot.Load(); d != nil && d.hash == h && bytes.Equal(d.data, data) {
		e.stats.deflateShared.Add(1)
		return d.out
	}
	out := e.compress(data)
	slot.Store(&sharedDeflate{hash: h, data: bytes.Clone(data), out: out})
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
