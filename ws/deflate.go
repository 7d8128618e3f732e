package ws

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"sync"
)

// deflateThreshold is the smallest message worth compressing: below it the
// deflate framing costs more than it saves.
const deflateThreshold = 64

// deflateTail is the end of a flushed deflate block, removed from each
// message on the wire (RFC 7692 §7.2.1).
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// flaters pools compressors and decompressors; each message is
// compressed independently (no context takeover), so a connection keeps
// no compression state.
type flaters struct {
	writers sync.Pool
	readers sync.Pool
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
