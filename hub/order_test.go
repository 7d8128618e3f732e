package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
)

// seqEncoder writes "seq:<n>" frames, so a test reads the order in which
// a session received a channel's publications.
type seqEncoder struct{ offsetEncoder }

func (seqEncoder) EncodePublication(ch string, pub switchyard.Publication, sp switchyard.StreamPosition) []byte {
	return fmt.Appendf(nil, "seq:%d", pub.Sequence.Seq)
}

func sequenced(key string, seq, prev int64) switchyard.Publication {
	return switchyard.Publication{Data: json.RawMessage(`{}`), Sequence: switchyard.Sequence{Key: key, Seq: seq, Prev: prev}}
}

// Publications of one key arriving out of order (two processes publishing
// changes of one record) reach subscribers in Seq order, exactly once;
// other keys are not held up; a predecessor that never comes stops
// holding its successor after ReorderWait.
func TestSequencedPublicationsInOrder(t *testing.T) {
	b := memory.New(memory.Config{})
	opts := config.DefaultChannelOptions()
	h, err := New(Config{Broker: b, Presence: b, Channels: config.Channels{Default: opts, Namespaces: []config.Namespace{{Name: "ns", ChannelOptions: opts}}}, ReorderWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); b.Close(context.Background()) })
	w := &recordWriter{}
	s := h.Connect("c", Principal{}, w, seqEncoder{})
	if err := h.Subscribe(context.Background(), s, "ns:r", nil, noReply); err != nil {
		t.Fatal(err)
	}
	deliver := func(p switchyard.Publication) { h.HandlePublication("ns:r", p, switchyard.StreamPosition{}) }
	deliver(sequenced("a", 10, 3))  // first of the channel: its predecessor is older than what it listens to
	deliver(sequenced("a", 13, 12)) // 12 is missing: held
	deliver(sequenced("b", 11, 0))  // another key goes through
	deliver(sequenced("a", 12, 10)) // releases 12, then 13
	deliver(sequenced("a", 12, 10)) // a duplicate
	deliver(sequenced("a", 9, 0))   // late: below the last delivered
	deliver(sequenced("c", 15, 14)) // an unknown key whose predecessor (14) is newer than the floor: held
	deliver(sequenced("c", 14, 0))  // its predecessor, a create
	deliver(sequenced("a", 20, 17)) // 17 never comes: delivered after the wait
	deliver(sequenced("b", 21, 11))
	want := "[ok seq:10 seq:11 seq:12 seq:13 seq:14 seq:15 seq:21 seq:20]"
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		w.mu.Lock()
		got := fmt.Sprint(w.frames)
		w.mu.Unlock()
		if got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %v, want %s", got, want)
		}
	}
	o := h.orderer("ns:r")
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.held != 0 {
		t.Fatalf("%d still held", o.held)
	}
}

// The keys a channel remembers are bounded; a forgotten key's next
// publication is not held (its predecessor is below the floor).
func TestSequenceKeysBounded(t *testing.T) {
	var o orderer
	now := time.Now()
	for i := range orderKeys + 10 {
		if got := o.admit(sequenced(fmt.Sprint(i), int64(100+i), 0), switchyard.StreamPosition{}, now); len(got) != 1 {
			t.Fatalf("key %d: %d released", i, len(got))
		}
	}
	if len(o.keys) != orderKeys || len(o.ring) != orderKeys {
		t.Fatalf("%d keys, %d in the ring", len(o.keys), len(o.ring))
	}
	// Key 0 was forgotten (last 100): its next change names 100.
	if got := o.admit(sequenced("0", 5000, 100), switchyard.StreamPosition{}, now); len(got) != 1 {
		t.Fatalf("a forgotten key's change held: %d released", len(got))
	}
}
