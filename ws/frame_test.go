package ws

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"unicode/utf8"
)

// clientFrame encodes a masked frame as a client sends it.
func clientFrame(fin bool, op byte, payload []byte, key [4]byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	n := len(payload)
	switch {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	maskBytes(key, 0, b[start:])
	return b
}

type recorder struct {
	msgs       []string
	ctrls      []string
	violations []int
}

func (r *recorder) message(op byte, compressed bool, data []byte) {
	r.msgs = append(r.msgs, fmt.Sprintf("%d:%s", op, data))
}
func (r *recorder) control(op byte, payload []byte) {
	r.ctrls = append(r.ctrls, fmt.Sprintf("%d:%s", op, payload))
}
func (r *recorder) violation(code int, reason string) { r.violations = append(r.violations, code) }

// feedSplit feeds stream in random pieces.
func feedSplit(fr *frameReader, stream []byte, sink frameSink, rng *rand.Rand) {
	for len(stream) > 0 {
		n := 1 + rng.IntN(min(len(stream), 40))
		fr.feed(stream[:n], sink)
		stream = stream[n:]
	}
}

func TestFrameReaderReassembles(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	big := bytes.Repeat([]byte("0123456789"), 7000) // 70 KB: 64-bit length
	mid := bytes.Repeat([]byte("m"), 300)           // 16-bit length
	var stream []byte
	stream = append(stream, clientFrame(true, opText, []byte("hello"), key)...)
	stream = append(stream, clientFrame(false, opText, []byte("frag"), key)...)
	stream = append(stream, clientFrame(true, opPing, []byte("p"), key)...) // control between fragments
	stream = append(stream, clientFrame(false, opContinuation, []byte("men"), key)...)
	stream = append(stream, clientFrame(true, opContinuation, []byte("ted"), key)...)
	stream = append(stream, clientFrame(true, opBinary, mid, key)...)
	stream = append(stream, clientFrame(true, opBinary, big, key)...)
	stream = append(stream, clientFrame(true, opText, nil, key)...)
	stream = append(stream, clientFrame(true, opClose, []byte{0x03, 0xe8, 'o', 'k'}, key)...)
	want := []string{"1:hello", "1:fragmented", "2:" + string(mid), "2:" + string(big), "1:"}
	for seed := range 50 {
		fr := &frameReader{maxMessage: 1 << 20}
		rec := &recorder{}
		feedSplit(fr, stream, rec, rand.New(rand.NewPCG(uint64(seed), 1)))
		if len(rec.violations) > 0 {
			t.Fatalf("seed %d: violations %v", seed, rec.violations)
		}
		if fmt.Sprint(rec.msgs) != fmt.Sprint(want) {
			t.Fatalf("seed %d: messages differ", seed)
		}
		if len(rec.ctrls) != 2 || rec.ctrls[0] != "9:p" || rec.ctrls[1] != "8:\x03\xe8ok" {
			t.Fatalf("seed %d: controls %q", seed, rec.ctrls)
		}
		if !fr.idle() {
			t.Fatalf("seed %d: reader not idle after whole frames", seed)
		}
	}
}

func TestFrameReaderViolations(t *testing.T) {
	key := [4]byte{9, 8, 7, 6}
	unmasked := clientFrame(true, opText, []byte("x"), key)
	unmasked[1] &^= 0x80
	rsv := clientFrame(true, opText, []byte("x"), key)
	rsv[0] |= 0x20
	rsv1 := clientFrame(true, opText, []byte("x"), key)
	rsv1[0] |= 0x40
	cases := []struct {
		name   string
		stream []byte
		code   int
	}{
		{"unmasked", unmasked, CloseProtocolError},
		{"reserved bits", rsv, CloseProtocolError},
		{"rsv1 without deflate", rsv1, CloseProtocolError},
		{"unknown opcode", clientFrame(true, 0x3, nil, key), CloseProtocolError},
		{"long control", clientFrame(true, opPing, make([]byte, 126), key), CloseProtocolError},
		{"fragmented control", clientFrame(false, opPing, nil, key), CloseProtocolError},
		{"stray continuation", clientFrame(true, opContinuation, []byte("x"), key), CloseProtocolError},
		{"interleaved message", append(clientFrame(false, opText, []byte("a"), key), clientFrame(true, opText, []byte("b"), key)...), CloseProtocolError},
		{"one byte close", clientFrame(true, opClose, []byte{3}, key), CloseProtocolError},
		{"bad close code", clientFrame(true, opClose, []byte{0x03, 0xed}, key), CloseProtocolError}, // 1005
		{"bad close reason", clientFrame(true, opClose, []byte{0x03, 0xe8, 0xff}, key), CloseInvalidPayload},
		{"invalid utf-8", clientFrame(true, opText, []byte{0xc3, 0x28}, key), CloseInvalidPayload},
		{"too big", clientFrame(true, opBinary, make([]byte, 101), key), CloseMessageTooBig},
		{"too big fragmented", append(clientFrame(false, opBinary, make([]byte, 60), key), clientFrame(true, opContinuation, make([]byte, 60), key)...), CloseMessageTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fr := &frameReader{maxMessage: 100}
			rec := &recorder{}
			fr.feed(tc.stream, rec)
			if len(rec.violations) == 0 || rec.violations[0] != tc.code {
				t.Fatalf("violations %v, want %d", rec.violations, tc.code)
			}
		})
	}
}

// After an oversized message the reader skips it and still sees the
// peer's close frame.
func TestFrameReaderSkipsOversized(t *testing.T) {
	key := [4]byte{1, 1, 1, 1}
	stream := clientFrame(true, opText, make([]byte, 5000), key)
	stream = append(stream, clientFrame(true, opClose, []byte{0x03, 0xe8}, key)...)
	fr := &frameReader{maxMessage: 1000}
	rec := &recorder{}
	feedSplit(fr, stream, rec, rand.New(rand.NewPCG(1, 2)))
	if len(rec.violations) != 1 || rec.violations[0] != CloseMessageTooBig || len(rec.msgs) != 0 {
		t.Fatalf("violations %v msgs %d", rec.violations, len(rec.msgs))
	}
	if len(rec.ctrls) != 1 || rec.ctrls[0] != "8:\x03\xe8" {
		t.Fatalf("close frame not seen: %q", rec.ctrls)
	}
}

// Invalid UTF-8 fails the message as soon as the byte that makes it
// invalid arrives, not when the message ends (Autobahn 6.4.x), and the
// peer's close frame is still seen after it.
func TestFrameReaderFailsFastOnInvalidUTF8(t *testing.T) {
	key := [4]byte{5, 6, 7, 8}
	const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
	t.Run("fragments", func(t *testing.T) {
		fr := &frameReader{maxMessage: 1 << 20}
		rec := &recorder{}
		fr.feed(clientFrame(false, opText, []byte(kosme), key), rec)
		if len(rec.violations) != 0 {
			t.Fatalf("valid first fragment refused: %v", rec.violations)
		}
		fr.feed(clientFrame(false, opContinuation, []byte("\xf4"), key), rec) // may still be valid
		if len(rec.violations) != 0 {
			t.Fatalf("incomplete rune refused: %v", rec.violations)
		}
		fr.feed(clientFrame(false, opContinuation, []byte("\x90"), key), rec) // F4 90: above U+10FFFF
		if len(rec.violations) != 1 || rec.violations[0] != CloseInvalidPayload {
			t.Fatalf("violations %v, want 1007 before the message ends", rec.violations)
		}
		fr.feed(clientFrame(true, opContinuation, []byte("edited"), key), rec)
		fr.feed(clientFrame(true, opClose, []byte{0x03, 0xe8}, key), rec)
		if len(rec.msgs) != 0 || len(rec.violations) != 1 || len(rec.ctrls) != 1 || rec.ctrls[0] != "8:\x03\xe8" {
			t.Fatalf("after the violation: msgs %q violations %v controls %q", rec.msgs, rec.violations, rec.ctrls)
		}
	})
	t.Run("within a frame", func(t *testing.T) {
		payload := []byte(kosme + "\xed\xa0\x80edited") // a surrogate at byte 12
		frame := clientFrame(true, opText, payload, key)
		hdr := len(frame) - len(payload)
		fr := &frameReader{maxMessage: 1 << 20}
		rec := &recorder{}
		fr.feed(frame[:hdr+12], rec)
		if len(rec.violations) != 0 {
			t.Fatalf("valid part refused: %v", rec.violations)
		}
		fr.feed(frame[hdr+12:hdr+13], rec)
		if len(rec.violations) != 1 || rec.violations[0] != CloseInvalidPayload {
			t.Fatalf("violations %v, want 1007 at the invalid byte", rec.violations)
		}
	})
	t.Run("valid text split anywhere", func(t *testing.T) {
		text := []byte("Hello-µ@ßöäüàá-UTF-8!! " + kosme + " \xf0\x9f\x98\x80 \xef\xbf\xbd")
		stream := clientFrame(true, opText, text, key)
		for step := 1; step <= 5; step++ {
			fr := &frameReader{maxMessage: 1 << 20}
			rec := &recorder{}
			for b := stream; len(b) > 0; b = b[min(step, len(b)):] {
				fr.feed(b[:min(step, len(b))], rec)
			}
			if len(rec.violations) != 0 || len(rec.msgs) != 1 || rec.msgs[0] != "1:"+string(text) {
				t.Fatalf("step %d: violations %v msgs %q", step, rec.violations, rec.msgs)
			}
		}
	})
	t.Run("incomplete rune at the end", func(t *testing.T) {
		fr := &frameReader{maxMessage: 1 << 20}
		rec := &recorder{}
		fr.feed(clientFrame(true, opText, []byte("ok\xe2\x82"), key), rec)
		if len(rec.violations) != 1 || rec.violations[0] != CloseInvalidPayload || len(rec.msgs) != 0 {
			t.Fatalf("violations %v msgs %q", rec.violations, rec.msgs)
		}
	})
}

func TestValidPrefix(t *testing.T) {
	cases := []struct {
		in       string
		complete int
		ok       bool
	}{
		{"", 0, true},
		{"abc", 3, true},
		{"ab\xc3", 2, true},
		{"ab\xc3\xa9", 4, true},
		{"\xf0\x9f\x98", 0, true},
		{"\xf4\x90", 0, false},     // would be above U+10FFFF
		{"\xed\xa0", 0, false},     // a surrogate
		{"\xe0\x80", 0, false},     // overlong
		{"\xc0", 0, false},         // never valid
		{"\xc3\xa9\x80", 0, false}, // a stray continuation byte
		{"\x80\x80\x80\x80\x80", 0, false},
		{"a\xff", 0, false},
	}
	for _, c := range cases {
		n, ok := validPrefix([]byte(c.in))
		if ok != c.ok || (ok && n != c.complete) {
			t.Errorf("validPrefix(%q) = %d, %v; want %d, %v", c.in, n, ok, c.complete, c.ok)
		}
	}
}

// FuzzValidPrefix checks validPrefix against utf8.Valid: it accepts what
// is valid, and what it accepts is valid up to an unfinished last rune.
func FuzzValidPrefix(f *testing.F) {
	f.Add([]byte("h\xc3\xa9llo"))
	f.Add([]byte("\xf0\x9f\x98"))
	f.Add([]byte("\xed\xa0\x80"))
	f.Fuzz(func(t *testing.T, p []byte) {
		n, ok := validPrefix(p)
		if utf8.Valid(p) && (!ok || n != len(p)) {
			t.Fatalf("valid %q refused: %d %v", p, n, ok)
		}
		if !ok {
			return
		}
		if !utf8.Valid(p[:n]) {
			t.Fatalf("%q: accepted prefix %q is invalid", p, p[:n])
		}
		if rest := p[n:]; len(rest) > 0 && (len(rest) >= utf8.UTFMax || utf8.FullRune(rest)) {
			t.Fatalf("%q: accepted %q as an unfinished rune", p, rest)
		}
	})
}

func TestMaskBytesMatchesNaive(t *testing.T) {
	key := [4]byte{0xde, 0xad, 0xbe, 0xef}
	for n := range 70 {
		for pos := range 4 {
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(i * 7)
			}
			want := bytes.Clone(data)
			for i := range want {
				want[i] ^= key[(pos+i)&3]
			}
			next := maskBytes(key, pos, data)
			if !bytes.Equal(data, want) || next != (pos+n)&3 {
				t.Fatalf("n=%d pos=%d", n, pos)
			}
		}
	}
}

func TestAcceptKey(t *testing.T) {
	// The example of RFC 6455 §1.3.
	if got := acceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatal(got)
	}
}

func FuzzFrameReader(f *testing.F) {
	key := [4]byte{1, 2, 3, 4}
	f.Add(clientFrame(true, opText, []byte("hello"), key), uint8(3))
	f.Add(append(clientFrame(false, opBinary, []byte("ab"), key), clientFrame(true, opContinuation, []byte("cd"), key)...), uint8(1))
	f.Add(clientFrame(true, opClose, []byte{0x03, 0xe8}, key), uint8(7))
	f.Add([]byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}, uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, split uint8) {
		fr := &frameReader{maxMessage: 1 << 16, compression: split%2 == 0}
		rec := &recorder{}
		step := int(split%16) + 1
		for len(stream) > 0 {
			n := min(step, len(stream))
			fr.feed(stream[:n], rec)
			stream = stream[n:]
		}
		for _, m := range rec.msgs {
			if len(m) > 1<<16+2 {
				t.Fatalf("message over the limit: %d", len(m))
			}
		}
	})
}

func BenchmarkFrameReader(b *testing.B) {
	for _, size := range []int{32, 1024, 16 << 10} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			frame := clientFrame(true, opBinary, make([]byte, size), [4]byte{1, 2, 3, 4})
			stream := bytes.Repeat(frame, 64)
			fr := &frameReader{maxMessage: 1 << 20}
			sink := &countSink{}
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				fr.feed(stream, sink)
			}
		})
	}
}

type countSink struct{ n int }

func (s *countSink) message(byte, bool, []byte) { s.n++ }
func (s *countSink) control(byte, []byte)       {}
func (s *countSink) violation(int, string)      { panic("violation") }

func BenchmarkPreparedFrame(b *testing.B) {
	data := bytes.Repeat([]byte("x"), 256)
	b.ReportAllocs()
	for b.Loop() {
		m := NewPreparedMessage(Text, data)
		_ = m.frame(false, nil)
	}
}

// BenchmarkBroadcastDeflate is the compression cost of one delivery of a
// 1 KiB broadcast frame to a permessage-deflate connection: compressed per
// connection (the cost before compressShared) and shared.
func BenchmarkBroadcastDeflate(b *testing.B) {
	e := newEngine(EngineConfig{})
	msg := bytes.Repeat([]byte(`{"stream":"$channels","payload":{"channel":"news","data":{"n":1}}} `), 15)
	b.Run("per-connection", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = e.compress(msg)
		}
	})
	b.Run("shared", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = e.compressShared(msg)
		}
	})
	b.Run("off", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := NewPreparedMessage(Text, msg)
			_ = m.frame(false, nil)
		}
	})
	// backlog: 256 distinct messages in flight (a broadcast running
	// behind: each subscriber's outbox holds the last publications), each
	// sent in turn; ns/op is per message sent, compressions/op how many
	// of them were compressed rather than found.
	b.Run("shared-backlog", func(b *testing.B) {
		e := newEngine(EngineConfig{})
		var msgs [][]byte
		for i := range 256 {
			msgs = append(msgs, fmt.Appendf(nil, `{"stream":"$channels","payload":{"channel":"news","offset":%d,"data":{"t":%d,"p":"%s"}}}`, i, 1764683917250496183+int64(i)*7919, bytes.Repeat([]byte("x"), 24)))
		}
		for _, m := range msgs {
			e.compressShared(m)
		}
		hits0 := e.stats.deflateShared.Load()
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			_ = e.compressShared(msgs[n%len(msgs)])
			n++
		}
		b.ReportMetric(float64(uint64(n)-(e.stats.deflateShared.Load()-hits0))/float64(n), "compressions/op")
	})
}

// loopbackConn is a server Conn over loopback TCP to a peer that reads
// and discards everything.
func loopbackConn(tb testing.TB, deflate bool) *Conn {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		peer, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, peer)
		peer.Close()
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	nc = detach(nc) // as upgrade does for an epoll engine
	tb.Cleanup(func() { nc.Close() })
	return &Conn{nc: nc, eng: newEngine(EngineConfig{}), o: resolve(nil), deflate: deflate}
}

// sendBatchMessage is a small broadcast frame's payload, over
// deflateThreshold.
var sendBatchMessage = bytes.Repeat([]byte(`{"stream":"$channels","payload":{"channel":"news","data":{"n":1}}} `), 4)

// BenchmarkSendBatch is one write of a writer's batch (what a hub session
// writer does per flush) over loopback TCP to a reader that discards, with
// compression off and on (the message compressed once, as in a broadcast).
func BenchmarkSendBatch(b *testing.B) {
	for _, tc := range []struct {
		name    string
		deflate bool
		n       int
	}{{"1", false, 1}, {"8", false, 8}, {"8-deflate", true, 8}} {
		b.Run(tc.name, func(b *testing.B) {
			c := loopbackConn(b, tc.deflate)
			msgs := make([][]byte, tc.n)
			for i := range msgs {
				msgs[i] = sendBatchMessage
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.SendBatch(ctx, msgs...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSendsDoNotAllocate guards issue 20: a hub session's writer calls
// SendBatch once per flush, for each subscriber of a broadcast.
func TestSendsDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops items")
	}
	for _, deflate := range []bool{false, true} {
		c := loopbackConn(t, deflate)
		ctx := context.Background()
		short := []byte("short")
		msgs := [][]byte{sendBatchMessage, short, sendBatchMessage}
		prepared := NewPreparedMessage(Text, sendBatchMessage)
		for name, send := range map[string]func(){
			"SendBatch":     func() { c.SendBatch(ctx, msgs...) },
			"TrySendBatch":  func() { c.TrySendBatch(msgs...) },
			"Send":          func() { c.Send(ctx, short) },
			"WritePrepared": func() { c.WritePrepared(ctx, prepared) },
		} {
			send() // the pool's batch, the shared compression
			if allocs := testing.AllocsPerRun(100, send); allocs > 0 {
				t.Errorf("%s (deflate %v): %.1f allocations per call, want 0", name, deflate, allocs)
			}
		}
	}
}
