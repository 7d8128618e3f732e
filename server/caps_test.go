package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
)

// status returns a reply's response_status.
func status(p map[string]any) int {
	f, _ := p["response_status"].(float64)
	return int(f)
}

// requestAs sends a request with a given request_id (an unsubscribe
// names the subscription's) and returns the reply.
func requestAs(lc *liveClient, stream, action string, rid any) map[string]any {
	lc.t.Helper()
	if err := lc.c.WriteJSON(map[string]any{"stream": stream, "payload": map[string]any{"action": action, "request_id": rid}}); err != nil {
		lc.t.Fatal(err)
	}
	m := lc.waitFor(func(m map[string]any) bool {
		p, _ := m["payload"].(map[string]any)
		return p["request_id"] == rid && p["action"] == action
	})
	return m["payload"].(map[string]any)
}

// The reproduction: one connection held 10,000 channel subscriptions and
// 10,000 live queries. limits.max_subscriptions bounds every kind on a
// connection, limits.max_subscriptions_per_user the sum over a user's
// connections; both answer 429 naming the key, and a refused
// subscription delivers nothing.
func TestSubscriptionCaps(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		channelsConfig(c)
		resourcesConfig(c)
		c.Auth.JWT.HMACSecret = testSecret
		c.Limits.MaxSubscriptions = 5
		c.Limits.MaxSubscriptionsPerUser = 8
	}, Options{})
	tok := token(t, "alice", time.Hour, nil)
	a := newLiveClientWith(t, base, tok)
	rec := a.request("things", "create", map[string]any{"data": map[string]any{"name": "r"}})
	pk := rec["data"].(map[string]any)["pk"]
	for i := range 3 {
		a.ok("subscribe", map[string]any{"channel": fmt.Sprint("news:", i)})
	}
	if p := a.request("things", "subscribe_instance", map[string]any{"pk": pk}); status(p) != 201 {
		t.Fatalf("instance: %v", p)
	}
	list := a.request("things", "subscribe_list", map[string]any{})
	if status(list) != 201 {
		t.Fatalf("list: %v", list)
	}
	over := func(p map[string]any, key string) {
		t.Helper()
		if status(p) != 429 || !strings.Contains(fmt.Sprint(p["errors"]), "("+key+")") {
			t.Fatalf("want 429 naming %s, got %v", key, p)
		}
	}
	over(a.request("$channels", "subscribe", map[string]any{"channel": "news:x"}), "limits.max_subscriptions")
	over(a.request("things", "subscribe_instance", map[string]any{"pk": pk}), "limits.max_subscriptions")
	over(a.request("things", "subscribe_instance", map[string]any{"pk": pk, "since": 0}), "limits.max_subscriptions")
	refused := a.request("things", "subscribe_list", map[string]any{})
	over(refused, "limits.max_subscriptions")
	// Unsubscribing makes room.
	if p := requestAs(a, "things", "unsubscribe_list", list["request_id"]); status(p) != 204 {
		t.Fatalf("unsubscribe_list: %v", p)
	}
	kept := a.request("things", "subscribe_list", map[string]any{})
	if status(kept) != 201 {
		t.Fatalf("after an unsubscribe: %v", kept)
	}
	// The refused live query gets no events; the kept one does.
	restWrite(t, "POST", base+"/api/resources/things/", `{"name": "new"}`)
	a.waitFor(func(m map[string]any) bool {
		p, _ := m["payload"].(map[string]any)
		return p["request_id"] == kept["request_id"] && p["action"] == "create"
	})
	a.mu.Lock()
	for _, m := range a.in {
		if p, _ := m["payload"].(map[string]any); p["request_id"] == refused["request_id"] {
			t.Errorf("an event for a refused subscription: %v", m)
		}
	}
	a.mu.Unlock()

	// A second connection of alice: 3 more reach her limit of 8.
	b := newLiveClientWith(t, base, tok)
	for i := range 3 {
		b.ok("subscribe", map[string]any{"channel": fmt.Sprint("news:b", i)})
	}
	over(b.request("$channels", "subscribe", map[string]any{"channel": "news:b9"}), "limits.max_subscriptions_per_user")
	// Anonymous connections and other users have their own counts.
	anon := newLiveClient(t, base)
	for i := range 5 {
		anon.ok("subscribe", map[string]any{"channel": fmt.Sprint("news:", i)})
	}
	bob := newLiveClientWith(t, base, token(t, "bob", time.Hour, nil))
	bob.ok("subscribe", map[string]any{"channel": "news:0"})
}

// The reproduction: after a user stored two 1 MB rows, every client's
// unpaginated /live list was closed with 4008 "slow consumer" however
// fast it read. The reply now goes through; one over
// limits.max_outgoing_message_size is a 413 naming the key, and the
// connection stays open either way.
func TestBigRowsDoNotMakeSlowConsumers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		outgoing config.Size
		status   int
	}{
		{"within the outgoing limit", 4 * config.MiB, 200},
		{"over it", 3 * config.MiB / 2, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, _ := start(t, func(c *config.Config) {
				c.Resources = []config.Resource{{Name: "blobs", Fields: []config.Field{{Name: "body", Type: "text"}}}}
				c.Limits.MaxRequestBody = 2 * config.MiB
				c.Limits.MaxOutgoingMessageSize = tc.outgoing
			}, Options{})
			for range 2 {
				restWrite(t, "POST", base+"/api/resources/blobs/", `{"body": "`+strings.Repeat("x", 1<<20)+`"}`)
			}
			c := newLiveClient(t, base)
			p := c.request("blobs", "list", nil)
			if status(p) != tc.status {
				t.Fatalf("list: %d %v", status(p), p["errors"])
			}
			if tc.status == 200 && len(p["data"].([]any)) != 2 {
				t.Fatalf("list: %d rows", len(p["data"].([]any)))
			}
			if tc.status == 413 && !strings.Contains(fmt.Sprint(p["errors"]), "limits.max_outgoing_message_size") {
				t.Fatalf("413 without the key: %v", p["errors"])
			}
			// Still connected, and paginating works.
			if p := c.request("blobs", "list", map[string]any{"limit": 1}); status(p) != 200 {
				t.Fatalf("paginated: %v", p)
			}
		})
	}
}

// The reproduction: the server API could publish into the reserved
// $resource: channels, and subscribers received a malformed event. Every
// server API path that takes a channel refuses "$" channels with 403.
func TestServerAPIRefusesReservedChannels(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		authConfig(true)(c)
		resourcesConfig(c)
	}, Options{})
	w := newLiveClient(t, base)
	rec := w.request("things", "create", map[string]any{"data": map[string]any{"name": "r"}})
	pk := rec["data"].(map[string]any)["pk"]
	watch := w.request("things", "subscribe_instance", map[string]any{"pk": pk})
	chat := newLiveClient(t, base)
	chat.ok("subscribe", map[string]any{"channel": "chat:x"})
	channel := fmt.Sprintf("$resource:things:%v", pk)
	for _, tc := range []struct {
		method string
		body   map[string]any
	}{
		{"publish", map[string]any{"channel": channel, "data": map[string]any{"op": "delete", "pk": pk}}},
		{"publish", map[string]any{"channel": "$resource:things", "data": "garbage"}},
		{"broadcast", map[string]any{"channels": []string{"chat:x", channel}, "data": 1}},
		{"subscribe", map[string]any{"user": "alice", "channel": "$resource:things"}},
		{"unsubscribe", map[string]any{"user": "alice", "channel": channel}},
		{"history", map[string]any{"channel": channel}},
	} {
		st, out := callAPI(t, base, testAPIKey, tc.method, tc.body)
		e, _ := out["error"].(map[string]any)
		if st != 403 || e["code"] != "forbidden" || !strings.Contains(fmt.Sprint(e["message"]), "reserved") {
			t.Fatalf("%s %v: %d %v", tc.method, tc.body, st, out)
		}
	}
	// Nothing reached anyone: the watcher's next event is the real
	// change, and the broadcast's first channel got nothing either.
	restWrite(t, "PATCH", fmt.Sprintf("%s/api/resources/things/%v/", base, pk), `{"counter": 7}`)
	ev := w.waitFor(func(m map[string]any) bool {
		p, _ := m["payload"].(map[string]any)
		return p["request_id"] == watch["request_id"]
	})
	if p := ev["payload"].(map[string]any); p["action"] != "update" || p["data"].(map[string]any)["counter"] != 7.0 {
		t.Fatalf("the first event after the refused publishes: %v", ev)
	}
	callAPI(t, base, testAPIKey, "publish", map[string]any{"channel": "chat:x", "data": "after"})
	if m := chat.push("message", "chat:x"); m["data"] != "after" {
		t.Fatalf("chat:x got %v before the real message", m)
	}
}

// The reproduction: one user published 2,000 × 60 KiB to 2,000 channels,
// and the process held 180 MiB more for the history TTL. History is
// bounded by limits.max_history_bytes: the oldest channels lose theirs,
// with a new epoch, so their subscribers are told recovery failed; and
// by limits.max_channels_per_namespace.
func TestRetainedHistoryIsBounded(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		channelsConfig(c)
		c.Limits.MaxHistoryBytes = config.MiB
		c.Limits.MaxChannelsPerNamespace = 100
	}, Options{})
	pub := newLiveClient(t, base)
	payload := strings.Repeat("x", 60<<10)
	first := pub.ok("publish", map[string]any{"channel": "chat:0", "data": payload})
	for i := 1; i < 200; i++ {
		pub.ok("publish", map[string]any{"channel": fmt.Sprint("chat:", i), "data": payload})
	}
	// The first channel's history is gone, with its epoch: recovery says so.
	c := newLiveClient(t, base)
	since := map[string]any{"offset": 0, "epoch": first["epoch"]}
	if r := c.ok("subscribe", map[string]any{"channel": "chat:0", "since": since}); r["recovered"] != false || r["epoch"] == first["epoch"] {
		t.Fatalf("recovering the oldest channel: %v", r)
	}
	h := c.ok("history", map[string]any{"channel": "chat:0"})
	if len(h["publications"].([]any)) != 0 {
		t.Fatalf("the oldest channel still has history: %d", len(h["publications"].([]any)))
	}
	// The newest keeps its own.
	if h := c.ok("history", map[string]any{"channel": "chat:199"}); len(h["publications"].([]any)) != 1 {
		t.Fatalf("the newest channel: %v", h)
	}
	// Small messages to many channels: at most 100 channels keep history.
	for i := range 150 {
		pub.ok("publish", map[string]any{"channel": fmt.Sprint("short:", i), "data": i})
	}
	kept := 0
	for i := range 150 {
		if h := c.ok("history", map[string]any{"channel": fmt.Sprint("short:", i)}); len(h["publications"].([]any)) > 0 {
			kept++
		}
	}
	if kept != 100 {
		t.Fatalf("%d short: channels kept history, want 100", kept)
	}
}
