package dfws

import (
	"encoding/json"
	"testing"

	"github.com/switchyardhq/switchyard/signal"
	"github.com/switchyardhq/switchyard/ws"
)

// A trigger is encoded once per protocol, then shared by every window.
func BenchmarkEncodeSignal(b *testing.B) {
	p := signal.Push{Signal: "html.content", Kwargs: json.RawMessage(`{"selector":"#x","content":"<b>y</b>"}`), SignalID: "1b4e28ba-2fa1-41d2-883f-0016d3cca427"}
	b.ReportAllocs()
	for b.Loop() {
		pushEncoder{}.EncodeSignal(p)
	}
}

func BenchmarkTopic(b *testing.B) {
	v := json.RawMessage(`"room1"`)
	b.ReportAllocs()
	for b.Loop() {
		Topic(v)
	}
}

// The heartbeat a minute from every open page.
func BenchmarkHeartbeat(b *testing.B) {
	f := newFixture(b, Config{})
	b.ReportAllocs()
	for b.Loop() {
		f.h.handle(f.sess, ws.Text, []byte(Heartbeat))
		f.out.take()
	}
}
