package ws

import (
	"bytes"
	"fmt"
	"testing"
)

// nopHandler is an event-mode handler that drops every message.
type nopHandler struct{}

func (nopHandler) OnOpen(*Conn)                         {}
func (nopHandler) OnMessage(*Conn, MessageType, []byte) {}
func (nopHandler) OnClose(*Conn, error)                 {}

// BenchmarkProcess is what a connection does with the bytes of one read
// (Conn.process): decode the frames and call the handler. With one small
// message per read, the frame reader is taken from the engine's pool and
// given back on every read; with a message split over two reads it stays
// with the connection in between.
func BenchmarkProcess(b *testing.B) {
	for _, tc := range []struct {
		name  string
		size  int
		split bool
	}{{"32", 32, false}, {"1024", 1024, false}, {"1024-split", 1024, true}} {
		b.Run(tc.name, func(b *testing.B) {
			c := loopbackConn(b, false)
			c.h = nopHandler{}
			frame := clientFrame(true, opText, bytes.Repeat([]byte("x"), tc.size), [4]byte{1, 2, 3, 4})
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				if tc.split {
					c.process(frame[:len(frame)/2])
					c.process(frame[len(frame)/2:])
				} else {
					c.process(frame)
				}
			}
			if st := c.eng.Stats(); st.ProtocolErrors != 0 {
				b.Fatal(fmt.Sprint("protocol errors: ", st.ProtocolErrors))
			}
		})
	}
}
