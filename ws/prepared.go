package ws

import "sync"

// PreparedMessage is a message encoded once as a frame and sent as is to
// many connections (a broadcast), so its cost does not grow with the
// number of receivers. It is safe for concurrent use.
type PreparedMessage struct {
	op   byte
	data []byte

	plainOnce sync.Once
	plain     []byte

	deflateOnce sync.Once
	deflated    []byte
}

// NewPreparedMessage prepares data as a message of type typ. The caller
// must not modify data afterwards.
func NewPreparedMessage(typ MessageType, data []byte) *PreparedMessage {
	op := byte(opText)
	if typ == Binary {
		op = opBinary
	}
	return &PreparedMessage{op: op, data: data}
}

// Data returns the message's payload.
func (m *PreparedMessage) Data() []byte { return m.data }

// frame returns the whole frame, compressed for connections that
// negotiated permessage-deflate.
func (m *PreparedMessage) frame(deflate bool, e *Engine) []byte {
	if deflate && len(m.data) >= deflateThreshold {
		m.deflateOnce.Do(func() {
			payload := e.compress(m.data)
			b := appendFrameHeader(make([]byte, 0, 10+len(payload)), true, true, m.op, len(payload))
			m.deflated = append(b, payload...)
		})
		return m.deflated
	}
	m.plainOnce.Do(func() {
		b := appendFrameHeader(make([]byte, 0, 10+len(m.data)), true, false, m.op, len(m.data))
		m.plain = append(b, m.data...)
	})
	return m.plain
}

// Len returns the size of the frame on the wire without compression.
func (m *PreparedMessage) Len() int {
	n := len(m.data) + 2
	switch {
	case len(m.data) > 0xFFFF:
		n += 8
	case len(m.data) > 125:
		n += 2
	}
	return n
}
