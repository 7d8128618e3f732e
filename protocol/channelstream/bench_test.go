package channelstream

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
)

// BenchmarkEncodeMessage is the once-per-publication encoding of a
// Channelstream message for every Channelstream subscriber (the check
// that it is one, and its frame).
func BenchmarkEncodeMessage(b *testing.B) {
	s := &Server{prefix: "channelstream:"}
	e := &encoder{srv: s}
	msg := object{{"catchup", raw(false)}, {"channel", raw("room")}, {"uuid", raw(newUUID())}, {"timestamp", raw("2026-12-01T10:00:00.123456")},
		{"user", raw("alice")}, {"message", json.RawMessage(`{"text":"hello, world","n":42}`)}, {"edited", json.RawMessage("null")}, {"type", raw("message")}}
	pub := switchyard.Publication{Data: raw(msg)}
	b.ReportAllocs()
	for b.Loop() {
		if f := e.EncodePublication("channelstream:room", pub, switchyard.StreamPosition{}); len(f) == 0 {
			b.Fatal("empty frame")
		}
	}
}

// BenchmarkEncodeNative wraps a /live or server API publication.
func BenchmarkEncodeNative(b *testing.B) {
	s := &Server{prefix: "channelstream:"}
	s.cfg.Now = time.Now
	e := &encoder{srv: s}
	pub := switchyard.Publication{Data: json.RawMessage(`{"text":"hello, world","n":42}`), Info: &switchyard.ClientInfo{User: "bob"}}
	b.ReportAllocs()
	for b.Loop() {
		e.EncodePublication("channelstream:room", pub, switchyard.StreamPosition{})
	}
}

// BenchmarkCatchup is what a connection between polls pays per frame.
func BenchmarkCatchup(b *testing.B) {
	s := &Server{channels: map[string]*channel{"room": {settings: defaultSettings()}}}
	f := [][]byte{frame(raw(object{{"catchup", raw(false)}, {"channel", raw("room")}, {"uuid", raw(newUUID())}, {"message", json.RawMessage(`{"text":"hello"}`)}}))}
	b.ReportAllocs()
	for b.Loop() {
		if len(s.catchup(f)) != 1 {
			b.Fatal("dropped")
		}
	}
}
