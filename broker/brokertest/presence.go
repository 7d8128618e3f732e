package brokertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
)

// RunPresence runs the presence contract suite, one parallel subtest per
// property. newPM returns a presence manager ready for use; the factory
// registers its own cleanup (closing a broker it started, for example).
func RunPresence(t *testing.T, newPM func(t *testing.T) broker.PresenceManager) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, pm broker.PresenceManager)
	}{
		{"AddListRemove", testPresenceAddListRemove},
		{"ReAddRefreshes", testPresenceReAdd},
		{"Expiry", testPresenceExpiry},
		{"Stats", testPresenceStats},
		{"ChannelIsolation", testPresenceIsolation},
		{"ResultIsCopy", testPresenceCopy},
		{"DoneContext", testPresenceDoneContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newPM(t))
		})
	}
}

// presenceTTL is long enough never to expire during a test.
const presenceTTL = time.Minute

func addPresence(t testing.TB, pm broker.PresenceManager, ch string, info switchyard.ClientInfo, expire time.Duration) {
	t.Helper()
	if err := pm.AddPresence(context.Background(), ch, info.ClientID, info, expire); err != nil {
		t.Fatalf("AddPresence(%s, %s): %v", ch, info.ClientID, err)
	}
}

func removePresence(t testing.TB, pm broker.PresenceManager, ch, clientID string) {
	t.Helper()
	if err := pm.RemovePresence(context.Background(), ch, clientID); err != nil {
		t.Fatalf("RemovePresence(%s, %s): %v", ch, clientID, err)
	}
}

func presence(t testing.TB, pm broker.PresenceManager, ch string) map[string]switchyard.ClientInfo {
	t.Helper()
	p, err := pm.Presence(context.Background(), ch)
	if err != nil {
		t.Fatalf("Presence(%s): %v", ch, err)
	}
	return p
}

func presenceStats(t testing.TB, pm broker.PresenceManager, ch string) broker.PresenceStats {
	t.Helper()
	s, err := pm.PresenceStats(context.Background(), ch)
	if err != nil {
		t.Fatalf("PresenceStats(%s): %v", ch, err)
	}
	return s
}

// checkPresence checks that the presence of ch is exactly want.
func checkPresence(t testing.TB, pm broker.PresenceManager, ch string, want ...switchyard.ClientInfo) {
	t.Helper()
	got := presence(t, pm, ch)
	w := make(map[string]switchyard.ClientInfo, len(want))
	for _, info := range want {
		w[info.ClientID] = info
	}
	if len(got) != len(w) {
		t.Fatalf("presence of %s: %v, want %v", ch, got, w)
	}
	for id, info := range w {
		if g, ok := got[id]; !ok || !reflect.DeepEqual(g, info) {
			t.Fatalf("presence of %s: %v, want %v", ch, got, w)
		}
	}
}

func testPresenceAddListRemove(t *testing.T, pm broker.PresenceManager) {
	ch := channelName(t, "a")
	checkPresence(t, pm, ch)
	c1 := switchyard.ClientInfo{ClientID: "c1", User: "u1", Info: json.RawMessage(`{"name":"Ann"}`)}
	c2 := switchyard.ClientInfo{ClientID: "c2", User: "u2"}
	addPresence(t, pm, ch, c1, presenceTTL)
	addPresence(t, pm, ch, c2, presenceTTL)
	checkPresence(t, pm, ch, c1, c2)
	removePresence(t, pm, ch, "c1")
	checkPresence(t, pm, ch, c2)
	removePresence(t, pm, ch, "c1")
	removePresence(t, pm, ch, "nobody")
	removePresence(t, pm, ch, "c2")
	checkPresence(t, pm, ch)
	if s := presenceStats(t, pm, ch); s != (broker.PresenceStats{}) {
		t.Fatalf("stats of an empty channel: %+v", s)
	}
}

// testPresenceReAdd: adding a client again replaces its info and restarts
// its expiry.
func testPresenceReAdd(t *testing.T, pm broker.PresenceManager) {
	ch := channelName(t, "a")
	c1 := switchyard.ClientInfo{ClientID: "c1", User: "u1", Info: json.RawMessage(`{"v":1}`)}
	addPresence(t, pm, ch, c1, presenceTTL)
	c1.Info = json.RawMessage(`{"v":2}`)
	addPresence(t, pm, ch, c1, presenceTTL)
	checkPresence(t, pm, ch, c1)
	if s := presenceStats(t, pm, ch); s != (broker.PresenceStats{NumClients: 1, NumUsers: 1}) {
		t.Fatalf("stats after adding twice: %+v", s)
	}

	// Refreshed every ttl/4, an entry with expiry 2*ttl outlives it.
	refreshed := channelName(t, "refreshed")
	start := time.Now()
	for time.Since(start) < 6*ttl {
		addPresence(t, pm, refreshed, c1, 2*ttl)
		checkPresence(t, pm, refreshed, c1)
		time.Sleep(ttl / 4) // pace the refreshes; not an assertion
	}
}

// testPresenceExpiry: an entry not refreshed within its expiry goes.
func testPresenceExpiry(t *testing.T, pm broker.PresenceManager) {
	ch := channelName(t, "a")
	short := switchyard.ClientInfo{ClientID: "short", User: "u1"}
	long := switchyard.ClientInfo{ClientID: "long", User: "u2"}
	addPresence(t, pm, ch, short, ttl)
	addPresence(t, pm, ch, long, presenceTTL)
	eventually(t, waitTimeout, func() error {
		if p := presence(t, pm, ch); len(p) != 1 {
			return fmt.Errorf("presence %v, want only %s", p, long.ClientID)
		}
		return nil
	})
	checkPresence(t, pm, ch, long)
	if s := presenceStats(t, pm, ch); s != (broker.PresenceStats{NumClients: 1, NumUsers: 1}) {
		t.Fatalf("stats after expiry: %+v", s)
	}
}

// testPresenceStats: NumClients counts clients, NumUsers distinct
// non-empty users.
func testPresenceStats(t *testing.T, pm broker.PresenceManager) {
	ch := channelName(t, "a")
	for _, info := range []switchyard.ClientInfo{
		{ClientID: "c1", User: "u1"},
		{ClientID: "c2", User: "u1"},
		{ClientID: "c3", User: "u2"},
		{ClientID: "c4"},
		{ClientID: "c5"},
	} {
		addPresence(t, pm, ch, info, presenceTTL)
	}
	if s := presenceStats(t, pm, ch); s != (broker.PresenceStats{NumClients: 5, NumUsers: 2}) {
		t.Fatalf("stats %+v, want 5 clients and 2 users (anonymous clients are no users)", s)
	}
	removePresence(t, pm, ch, "c1")
	if s := presenceStats(t, pm, ch); s != (broker.PresenceStats{NumClients: 4, NumUsers: 2}) {
		t.Fatalf("stats %+v after removing one of u1's clients, want 4 clients and 2 users", s)
	}
	if s := presenceStats(t, pm, channelName(t, "empty")); s != (broker.PresenceStats{}) {
		t.Fatalf("stats of a channel without presence: %+v", s)
	}
}

// testPresenceIsolation: channels do not share presence.
func testPresenceIsolation(t *testing.T, pm broker.PresenceManager) {
	a, b := channelName(t, "a"), channelName(t, "b")
	c1 := switchyard.ClientInfo{ClientID: "c1", User: "u1"}
	c2 := switchyard.ClientInfo{ClientID: "c2", User: "u2"}
	addPresence(t, pm, a, c1, presenceTTL)
	addPresence(t, pm, b, c2, presenceTTL)
	addPresence(t, pm, b, c1, presenceTTL)
	removePresence(t, pm, b, "c1")
	checkPresence(t, pm, a, c1)
	checkPresence(t, pm, b, c2)
	if s := presenceStats(t, pm, a); s != (broker.PresenceStats{NumClients: 1, NumUsers: 1}) {
		t.Fatalf("stats of %s: %+v", a, s)
	}
}

// testPresenceCopy: changing the map Presence returned changes nothing.
func testPresenceCopy(t *testing.T, pm broker.PresenceManager) {
	ch := channelName(t, "a")
	c1 := switchyard.ClientInfo{ClientID: "c1", User: "u1"}
	addPresence(t, pm, ch, c1, presenceTTL)
	p := presence(t, pm, ch)
	delete(p, "c1")
	p["c9"] = switchyard.ClientInfo{ClientID: "c9"}
	checkPresence(t, pm, ch, c1)
}

// testPresenceDoneContext: operations with a done context fail with its
// error.
func testPresenceDoneContext(t *testing.T, pm broker.PresenceManager) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ch := channelName(t, "a")
	if err := pm.AddPresence(ctx, ch, "c1", switchyard.ClientInfo{ClientID: "c1"}, presenceTTL); !errors.Is(err, context.Canceled) {
		t.Fatalf("AddPresence: %v, want context.Canceled", err)
	}
	if _, err := pm.Presence(ctx, ch); !errors.Is(err, context.Canceled) {
		t.Fatalf("Presence: %v, want context.Canceled", err)
	}
}
