package ws

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MessageType tells a text message from a binary one.
type MessageType int

// The message types of RFC 6455.
const (
	Text   MessageType = 1
	Binary MessageType = 2
)

// Frame opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes used by this package (RFC 6455 §7.4.1) and the application
// range used by Switchyard.
const (
	CloseNormal           = 1000 // the purpose of the connection is fulfilled
	CloseGoingAway        = 1001 // the server is shutting down or the peer left
	CloseProtocolError    = 1002 // a frame broke RFC 6455
	CloseUnsupportedData  = 1003 // a message type the endpoint cannot accept
	CloseNoStatus         = 1005 // a close frame without a code (never sent)
	CloseAbnormal         = 1006 // the TCP connection ended without a close frame (never sent)
	CloseInvalidPayload   = 1007 // a text message that is not UTF-8
	ClosePolicyViolation  = 1008 // a generic policy violation
	CloseMessageTooBig    = 1009 // a message over the size limit
	CloseMandatoryExt     = 1010 // the client wanted an extension the server did not offer
	CloseInternalError    = 1011 // the server failed (a panic in a handler)
	CloseServiceRestart   = 1012
	CloseTryAgainLater    = 1013
	closeTLSHandshakeFail = 1015
)

// CloseError reports a connection that was closed with a close frame: the
// code and reason that were sent (when this side closed it) or received.
type CloseError struct {
	Code   int
	Reason string
	// Local is true when this side started the close (a limit, a protocol
	// error, a server shutdown).
	Local bool
}

func (e *CloseError) Error() string {
	who := "peer"
	if e.Local {
		who = "server"
	}
	if e.Reason == "" {
		return fmt.Sprintf("ws: closed by %s with code %d", who, e.Code)
	}
	return fmt.Sprintf("ws: closed by %s with code %d: %s", who, e.Code, e.Reason)
}

// ErrClosed is returned by Send and friends once the connection is closed
// or closing.
var ErrClosed = errors.New("ws: connection closed")

// validCloseCode reports whether a code may appear in a close frame.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// appendFrameHeader appends a server frame header (never masked).
func appendFrameHeader(b []byte, fin bool, rsv1 bool, op byte, n int) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	if rsv1 {
		b0 |= 0x40
	}
	switch {
	case n <= 125:
		return append(b, b0, byte(n))
	case n <= 0xFFFF:
		return append(b, b0, 126, byte(n>>8), byte(n))
	default:
		b = append(b, b0, 127)
		return binary.BigEndian.AppendUint64(b, uint64(n))
	}
}

// maskBytes XORs b with the mask key starting at position pos and returns
// the next position.
func maskBytes(key [4]byte, pos int, b []byte) int {
	// Word at a time for the bulk, byte at a time for the ends.
	i := 0
	if len(b) >= 16 {
		for ; pos&3 != 0 && i < len(b); i++ {
			b[i] ^= key[pos&3]
			pos++
		}
		var k [8]byte
		for j := range k {
			k[j] = key[(pos+j)&3]
		}
		kw := binary.LittleEndian.Uint64(k[:])
		for ; i+8 <= len(b); i += 8 {
			v := binary.LittleEndian.Uint64(b[i:])
			binary.LittleEndian.PutUint64(b[i:], v^kw)
		}
	}
	for ; i < len(b); i++ {
		b[i] ^= key[pos&3]
		pos++
	}
	return pos & 3
}

// frameSink receives what the frame reader decodes.
type frameSink interface {
	// message is called with a whole data message, already unmasked (and
	// not yet inflated when compressed is true). The sink owns data.
	message(op byte, compressed bool, data []byte)
	// control is called with a ping, pong or close frame's payload; the
	// payload is only valid during the call.
	control(op byte, payload []byte)
	// violation is called when the peer breaks the protocol or a limit;
	// the sink closes the connection with code.
	violation(code int, reason string)
}

// protocolError is a violation that closes the connection with code.
type protocolError struct {
	code   int
	reason string
}

// frameReader is an incremental decoder of client frames: it accepts the
// bytes of the stream in pieces of any size and keeps only what it needs
// between calls (a partial header, the message being assembled). An idle
// connection holds no buffer.
//
// After a violation it goes on decoding when the framing is still sound
// (an oversized message is skipped, a bad UTF-8 text dropped) so that the
// peer's answering close frame is seen; after a framing error it ignores
// everything.
type frameReader struct {
	maxMessage  int64
	compression bool // permessage-deflate was negotiated: RSV1 allowed
	broken      bool

	hdr  [14]byte
	hdrN uint8

	// The frame whose payload is being read.
	inPayload bool
	fin       bool
	op        byte
	mask      [4]byte
	maskPos   int
	remaining int64

	// The data message being assembled across frames.
	inMessage  bool
	dropMsg    bool // the message broke a rule: read its frames, keep nothing
	msgOp      byte
	compressed bool
	msg        []byte
	utf8Done   int // bytes of msg (a text message) known to be whole valid runes

	// The control frame being assembled (at most 125 bytes).
	ctrl []byte
}

// feed decodes p, calling the sink for each complete message, control
// frame and violation.
func (fr *frameReader) feed(p []byte, sink frameSink) {
	for len(p) > 0 && !fr.broken {
		if !fr.inPayload {
			n, perr := fr.readHeader(p)
			p = p[n:]
			if perr != nil {
				if perr.code != CloseMessageTooBig {
					fr.broken = true
					sink.violation(perr.code, perr.reason)
					return
				}
				// Skip the oversized message, frame by frame, so that the
				// peer's answering close frame is still seen.
				fr.dropMessage()
				sink.violation(perr.code, perr.reason)
			}
			if !fr.inPayload {
				continue // header still partial: p is empty
			}
			if fr.remaining == 0 {
				fr.endFrame(sink)
			}
			continue
		}
		n := int64(len(p))
		if n > fr.remaining {
			n = fr.remaining
		}
		chunk := p[:n]
		p = p[n:]
		switch {
		case fr.op >= opClose:
			start := len(fr.ctrl)
			fr.ctrl = append(fr.ctrl, chunk...)
			fr.maskPos = maskBytes(fr.mask, fr.maskPos, fr.ctrl[start:])
		case fr.dropMsg:
		default:
			start := len(fr.msg)
			fr.msg = append(fr.msg, chunk...)
			fr.maskPos = maskBytes(fr.mask, fr.maskPos, fr.msg[start:])
			if fr.msgOp == opText && !fr.compressed && !fr.checkUTF8() {
				// Fail fast (RFC 6455 §8.1): the message cannot become
				// valid, whatever follows.
				fr.dropMessage()
				sink.violation(CloseInvalidPayload, "text message is not UTF-8")
			}
		}
		fr.remaining -= n
		if fr.remaining == 0 {
			fr.endFrame(sink)
		}
	}
}

// dropMessage discards the message being assembled; its remaining frames
// are read and ignored.
func (fr *frameReader) dropMessage() {
	fr.dropMsg = true
	fr.msg = nil
	fr.utf8Done = 0
}

// checkUTF8 validates the text received since the last call; an
// incomplete rune at the end is fine until the message ends.
func (fr *frameReader) checkUTF8() bool {
	n, ok := validPrefix(fr.msg[fr.utf8Done:])
	fr.utf8Done += n
	return ok
}

// validPrefix reports whether p is valid UTF-8 except for an incomplete
// last rune that some continuation bytes could still complete, and how
// many bytes of p are whole runes.
func validPrefix(p []byte) (int, bool) {
	start := len(p) // the start of the last rune
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			start = i
			break
		}
	}
	if start == len(p) {
		return len(p), utf8.Valid(p)
	}
	if !utf8.Valid(p[:start]) {
		return 0, false
	}
	tail := p[start:]
	if !utf8.FullRune(tail) {
		return start, true // an incomplete rune that may still be completed
	}
	r, size := utf8.DecodeRune(tail)
	if (r == utf8.RuneError && size == 1) || size != len(tail) {
		return 0, false
	}
	return len(p), true
}

// readHeader consumes header bytes from p and returns how many it used.
func (fr *frameReader) readHeader(p []byte) (int, *protocolError) {
	used := 0
	need := 2
	for {
		if int(fr.hdrN) >= 2 {
			need = 2 + 4
			switch fr.hdr[1] & 0x7F {
			case 126:
				need += 2
			case 127:
				need += 8
			}
		}
		if int(fr.hdrN) >= need {
			break
		}
		if used == len(p) {
			return used, nil
		}
		c := copy(fr.hdr[fr.hdrN:need], p[used:])
		fr.hdrN += uint8(c)
		used += c
	}
	h := fr.hdr[:fr.hdrN]
	fr.hdrN = 0
	b0, b1 := h[0], h[1]
	fin := b0&0x80 != 0
	rsv1 := b0&0x40 != 0
	op := b0 & 0x0F
	if b0&0x30 != 0 {
		return used, &protocolError{CloseProtocolError, "reserved bits set"}
	}
	if b1&0x80 == 0 {
		return used, &protocolError{CloseProtocolError, "client frame not masked"}
	}
	var length int64
	off := 2
	switch b1 & 0x7F {
	case 126:
		length = int64(binary.BigEndian.Uint16(h[2:]))
		off = 4
	case 127:
		v := binary.BigEndian.Uint64(h[2:])
		if v>>63 != 0 {
			return used, &protocolError{CloseProtocolError, "frame length has its high bit set"}
		}
		length = int64(v)
		off = 10
	default:
		length = int64(b1 & 0x7F)
	}
	copy(fr.mask[:], h[off:off+4])
	fr.maskPos = 0

	switch op {
	case opClose, opPing, opPong:
		if !fin {
			return used, &protocolError{CloseProtocolError, "fragmented control frame"}
		}
		if length > 125 {
			return used, &protocolError{CloseProtocolError, "control frame over 125 bytes"}
		}
		if rsv1 {
			return used, &protocolError{CloseProtocolError, "RSV1 on a control frame"}
		}
		fr.ctrl = fr.ctrl[:0]
	case opText, opBinary:
		if fr.inMessage {
			return used, &protocolError{CloseProtocolError, "new message before the previous one finished"}
		}
		if rsv1 && !fr.compression {
			return used, &protocolError{CloseProtocolError, "RSV1 set without permessage-deflate"}
		}
		fr.inMessage = true
		fr.dropMsg = false
		fr.msgOp = op
		fr.compressed = rsv1
		fr.msg = nil
		fr.utf8Done = 0
	case opContinuation:
		if !fr.inMessage {
			return used, &protocolError{CloseProtocolError, "continuation frame without a message"}
		}
		if rsv1 {
			return used, &protocolError{CloseProtocolError, "RSV1 on a continuation frame"}
		}
	default:
		return used, &protocolError{CloseProtocolError, fmt.Sprintf("unknown opcode %d", op)}
	}
	if op < opClose && !fr.dropMsg {
		if fr.maxMessage > 0 && int64(len(fr.msg))+length > fr.maxMessage {
			fr.inPayload, fr.fin, fr.op, fr.remaining = true, fin, op, length
			return used, &protocolError{CloseMessageTooBig, fmt.Sprintf("message over %d bytes", fr.maxMessage)}
		}
		if fr.msg == nil && length > 0 {
			// Reserve the first frame's payload; a fragmented message grows
			// by append.
			fr.msg = make([]byte, 0, length)
		}
	}
	fr.inPayload = true
	fr.fin = fin
	fr.op = op
	fr.remaining = length
	return used, nil
}

// endFrame finishes the frame whose payload was read whole.
func (fr *frameReader) endFrame(sink frameSink) {
	fr.inPayload = false
	if fr.op >= opClose {
		payload := fr.ctrl
		fr.ctrl = fr.ctrl[:0]
		if fr.op == opClose {
			if len(payload) == 1 {
				fr.broken = true
				sink.violation(CloseProtocolError, "close frame with a one-byte payload")
				return
			}
			if len(payload) >= 2 {
				code := int(binary.BigEndian.Uint16(payload))
				if !validCloseCode(code) {
					fr.broken = true
					sink.violation(CloseProtocolError, fmt.Sprintf("invalid close code %d", code))
					return
				}
				if !utf8.Valid(payload[2:]) {
					fr.broken = true
					sink.violation(CloseInvalidPayload, "close reason is not UTF-8")
					return
				}
			}
		}
		sink.control(fr.op, payload)
		return
	}
	if !fr.fin {
		return
	}
	msg, op, compressed, dropped := fr.msg, fr.msgOp, fr.compressed, fr.dropMsg
	fr.inMessage, fr.dropMsg = false, false
	fr.msg = nil
	if dropped {
		return
	}
	if msg == nil {
		msg = []byte{}
	}
	if op == opText && !compressed && fr.utf8Done != len(msg) {
		fr.utf8Done = 0
		sink.violation(CloseInvalidPayload, "text message is not UTF-8")
		return
	}
	fr.utf8Done = 0
	sink.message(op, compressed, msg)
}

// idle reports whether the reader holds no partial frame or message.
func (fr *frameReader) idle() bool {
	return fr.hdrN == 0 && !fr.inPayload && !fr.inMessage
}

// reset empties an idle reader for its pool, keeping the control frame
// buffer (at most 125 bytes, which no sink keeps).
func (fr *frameReader) reset() {
	*fr = frameReader{ctrl: fr.ctrl[:0]}
}
