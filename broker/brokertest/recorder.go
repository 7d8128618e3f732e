package brokertest

import (
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
)

// kind tells what a recorded event is.
type kind int

const (
	kindPublication kind = iota
	kindJoin
	kindLeave
)

func (k kind) String() string {
	switch k {
	case kindPublication:
		return "publication"
	case kindJoin:
		return "join"
	}
	return "leave"
}

// event is one call of the Handler.
type event struct {
	kind kind
	pub  switchyard.Publication
	sp   switchyard.StreamPosition
	info switchyard.ClientInfo
}

func (e event) String() string {
	if e.kind == kindPublication {
		return fmt.Sprintf("publication %d %q (position %d/%s)", e.pub.Offset, e.pub.Data, e.sp.Offset, e.sp.Epoch)
	}
	return fmt.Sprintf("%s %s", e.kind, e.info.ClientID)
}

// recorder is a broker.Handler that records every call per channel. It is
// safe for concurrent use and never blocks for long.
type recorder struct {
	mu     sync.Mutex
	events map[string][]event
}

func newRecorder() *recorder {
	return &recorder{events: make(map[string][]event)}
}

func (r *recorder) add(ch string, e event) {
	r.mu.Lock()
	r.events[ch] = append(r.events[ch], e)
	r.mu.Unlock()
}

func (r *recorder) HandlePublication(ch string, pub switchyard.Publication, sp switchyard.StreamPosition) {
	r.add(ch, event{kind: kindPublication, pub: pub, sp: sp})
}

func (r *recorder) HandleJoin(ch string, info switchyard.ClientInfo) {
	r.add(ch, event{kind: kindJoin, info: info})
}

func (r *recorder) HandleLeave(ch string, info switchyard.ClientInfo) {
	r.add(ch, event{kind: kindLeave, info: info})
}

// channel returns a copy of the events recorded for ch.
func (r *recorder) channel(ch string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events[ch]...)
}

// waitEvents waits until ch has at least n events and returns them.
func (r *recorder) waitEvents(t testing.TB, ch string, n int) []event {
	t.Helper()
	var evs []event
	eventually(t, waitTimeout, func() error {
		evs = r.channel(ch)
		if len(evs) < n {
			return fmt.Errorf("channel %s: %d events, want %d: %v", ch, len(evs), n, evs)
		}
		return nil
	})
	return evs
}

// waitData waits until a publication with data arrived on ch and returns
// all events of ch up to and including it.
func (r *recorder) waitData(t testing.TB, ch string, data string) []event {
	t.Helper()
	var evs []event
	eventually(t, waitTimeout, func() error {
		evs = r.channel(ch)
		for i, e := range evs {
			if e.kind == kindPublication && string(e.pub.Data) == data {
				evs = evs[:i+1]
				return nil
			}
		}
		return fmt.Errorf("channel %s: no publication %s among %v", ch, data, evs)
	})
	return evs
}

// waitTimeout bounds every wait of the suite.
const waitTimeout = 10 * time.Second

// eventually calls f until it returns nil, failing t with f's last error
// if that takes longer than timeout.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// channelName returns a channel name unique to t and to this call, so
// parallel subtests and repeated runs against a shared backend never meet.
func channelName(t testing.TB, suffix string) string {
	return fmt.Sprintf("brokertest:%s:%s:%s", t.Name(), rand.Text()[:10], suffix)
}
