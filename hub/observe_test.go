package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
)

// waitFrames waits until a writer holds n frames.
func waitFrames(t *testing.T, w *recordWriter, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for w.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("got frames %q, want %d", w.snapshot(), n)
		}
		time.Sleep(time.Millisecond)
	}
	return w.snapshot()
}

// An observer receives a channel's publications and its join and leave
// events, but is nobody's subscriber: not in presence, not in the
// channel's count, not among the sessions, and its coming and going
// sends no join or leave to the clients.
func TestObserver(t *testing.T) {
	b := memory.New(memory.Config{})
	opts := config.DefaultChannelOptions()
	opts.Presence = true
	h, err := New(Config{Broker: b, Presence: b, Channels: config.Channels{Default: config.DefaultChannelOptions(), Namespaces: []config.Namespace{{Name: "room", ChannelOptions: opts}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); b.Close(context.Background()) })
	ctx := context.Background()

	client := &recordWriter{}
	c := h.Connect("client-1", Principal{User: "alice", Transport: "websocket", Protocol: "live", RemoteAddr: "192.0.2.1:4000"}, client, offsetEncoder{})
	if err := h.Subscribe(ctx, c, "room:a", nil, func(SubscribeResult) []byte { return []byte("ok") }); err != nil {
		t.Fatal(err)
	}
	waitFrames(t, client, 2) // ok, its own join

	watcher := &recordWriter{}
	o := h.Observe("dashboard-1", watcher, offsetEncoder{})
	if err := h.SubscribeSilent(ctx, o, "room:a"); err != nil {
		t.Fatal(err)
	}
	if err := h.SubscribeSilent(ctx, o, "room:only-observed"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(ctx, nil, "room:a", json.RawMessage(`1`)); err != nil {
		t.Fatal(err)
	}
	if got := waitFrames(t, client, 3); got[2] != "pub:0" {
		t.Fatalf("client frames %q", got)
	}
	waitFrames(t, watcher, 1)

	pres, err := h.Presence(ctx, nil, "room:a")
	if err != nil {
		t.Fatal(err)
	}
	if len(pres) != 1 || pres[0].ClientID != "client-1" {
		t.Fatalf("presence %+v: the observer must not be present", pres)
	}
	if got := h.Channels(); len(got) != 1 || got["room:a"] != 1 {
		t.Fatalf("channels %v: the observer counts nowhere", got)
	}
	st := h.Stats()
	if st.Sessions != 1 || st.Users != 1 || st.Channels != 1 || st.Publications < 1 || st.Deliveries < 2 {
		t.Fatalf("stats %+v", st)
	}
	if ss := h.Sessions(); len(ss) != 1 || ss[0] != c {
		t.Fatalf("sessions %v", ss)
	}
	if h.Session("client-1") != c || h.Session("dashboard-1") != nil {
		t.Fatal("Session finds clients, not observers")
	}
	ci := c.Conn()
	if ci.Transport != "websocket" || ci.Protocol != "live" || ci.RemoteAddr != "192.0.2.1:4000" || ci.Since.IsZero() {
		t.Fatalf("conn info %+v", ci)
	}

	// Another client joins: the observer sees it; the observer leaving
	// tells the clients nothing.
	other := &recordWriter{}
	c2 := h.Connect("client-2", Principal{User: "bob"}, other, offsetEncoder{})
	if err := h.Subscribe(ctx, c2, "room:a", nil, func(SubscribeResult) []byte { return []byte("ok") }); err != nil {
		t.Fatal(err)
	}
	if got := waitFrames(t, watcher, 2); got[1] != "join" {
		t.Fatalf("observer frames %q", got)
	}
	h.Disconnect(o)
	if got := h.Channels(); len(got) != 1 || got["room:a"] != 2 {
		t.Fatalf("channels after the observer left: %v", got)
	}
	if _, err := h.Publish(ctx, nil, "room:a", json.RawMessage(`2`)); err != nil {
		t.Fatal(err)
	}
	got := waitFrames(t, client, 5)                                             // + bob's join, the publication
	if slices.Contains(got, "leave") || fmt.Sprint(got[3:]) != "[join pub:0]" { // no history: offsets stay 0
		t.Fatalf("client frames %q: no leave for an observer", got)
	}
	// An observer coming back to a channel its clients left: no client
	// channel is counted.
	o2 := h.Observe("dashboard-2", &recordWriter{}, offsetEncoder{})
	if err := h.SubscribeSilent(ctx, o2, "room:a"); err != nil {
		t.Fatal(err)
	}
	h.Disconnect(c)
	h.Disconnect(c2)
	if st := h.Stats(); st.Channels != 0 || st.Sessions != 0 || st.Users != 0 {
		t.Fatalf("stats with observers only: %+v", st)
	}
	if got := h.Channels(); len(got) != 0 {
		t.Fatalf("channels with observers only: %v", got)
	}
	h.Disconnect(o2)
}
