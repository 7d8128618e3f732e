package live

// Fuzz targets for the payload of every /live stream: $session, $channels
// and a resource stream with every DCRF action. Each input is one
// payload, wrapped in the stream's envelope and handled on a fresh
// session; the replies must be well-formed envelopes, every request gets
// one, and bad input is a 4xx, never a 500 (a 500 is a server fault, or
// an input the decoders let through). Seed corpora are in
// testdata/fuzz/Fuzz*Payload.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyardhq/switchyard/auth"
	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/store/sqlite"
)

const fuzzSecret = "fuzz-secret-0123456789abcdef"

// fuzzMarker is queued after the request: once the writer sees it, every
// reply to the request has been written.
var fuzzMarker = []byte("\x00fuzz-marker")

// fuzzWriter collects a session's frames up to the marker.
type fuzzWriter struct {
	mu     sync.Mutex
	got    [][]byte
	marker chan struct{}
}

func (w *fuzzWriter) WriteFrames(ctx context.Context, frames [][]byte) error {
	for _, f := range frames {
		if bytes.Equal(f, fuzzMarker) {
			w.marker <- struct{}{}
			continue
		}
		w.mu.Lock()
		w.got = append(w.got, f)
		w.mu.Unlock()
	}
	return nil
}

func (w *fuzzWriter) Close(int, string) error { return nil }

// fuzzLive is a /live handler on the memory broker and SQLite with a
// resource that has a field of every type, owner permissions, search and
// a JWT verifier.
type fuzzLive struct {
	h  *Handler
	hb *hub.Hub
}

func newFuzzLive(tb testing.TB) *fuzzLive {
	tb.Helper()
	b := memory.New(memory.Config{})
	open := config.ChannelPermissions{Subscribe: "anyone", Publish: "anyone", Presence: "anyone", History: "anyone"}
	hb, err := hub.New(hub.Config{Broker: b, Presence: b, Channels: config.Channels{
		Default: config.DefaultChannelOptions(),
		Namespaces: []config.Namespace{
			{Name: "chat", ChannelOptions: config.ChannelOptions{Presence: true, HistorySize: 10, HistoryTTL: config.Duration(time.Hour), Recover: true, Permissions: open}},
			{Name: "private", ChannelOptions: config.ChannelOptions{Permissions: config.ChannelPermissions{Subscribe: "none", Publish: "none", Presence: "none", History: "none"}}},
		},
	}, Reserved: map[string]config.ChannelOptions{"$resource": {}}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { hb.Close(); b.Close(context.Background()) })
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(tb.TempDir(), "fuzz.db")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	maxLen, minRank, maxRank := 50, 0.0, 100.0
	svc, err := resource.NewService(context.Background(), resource.ServiceConfig{Store: db, Resources: []config.Resource{{
		Name: "notes", PKField: "id", PageSize: 25, Search: []string{"title", "body"}, Ordering: []string{"-id"},
		Fields: []config.Field{
			{Name: "title", Type: config.FieldString, Required: true, MaxLength: &maxLen},
			{Name: "body", Type: config.FieldText},
			{Name: "rank", Type: config.FieldInt, Min: &minRank, Max: &maxRank, Default: 1},
			{Name: "score", Type: config.FieldFloat},
			{Name: "done", Type: config.FieldBool, Default: false},
			{Name: "due", Type: config.FieldDatetime},
			{Name: "meta", Type: config.FieldJSON},
			{Name: "owner", Type: config.FieldString},
		},
		Permissions: config.ResourcePermissions{Read: "anyone", Create: "authenticated", Update: "owner:owner", Delete: "owner:owner"},
	}}})
	if err != nil {
		tb.Fatal(err)
	}
	for _, row := range []string{`{"title": "one", "owner": "alice"}`, `{"title": "two", "owner": "bob", "meta": {"k": [1]}}`} {
		if _, err := svc.Create(context.Background(), "notes", resource.AsServer(), json.RawMessage(row)); err != nil {
			tb.Fatal(err)
		}
	}
	v, err := auth.NewVerifier(config.Auth{Anonymous: true, JWT: config.JWT{HMACSecret: fuzzSecret}})
	if err != nil {
		tb.Fatal(err)
	}
	return &fuzzLive{h: New(Config{Hub: hb, Resources: svc, Verifier: v}), hb: hb}
}

// run handles one frame on a fresh session of alice's and returns the
// frames written in answer.
func (fl *fuzzLive) run(t *testing.T, frame []byte) [][]byte {
	w := &fuzzWriter{marker: make(chan struct{}, 1)}
	hs := fl.hb.Connect("fuzz", hub.Principal{User: "alice"}, w, fl.h.enc)
	defer fl.hb.Disconnect(hs)
	sess := &session{hs: hs}
	hs.SetValue(sess)
	fl.h.handle(sess, frame)
	hs.Send(fuzzMarker)
	select {
	case <-w.marker:
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer within 10 s to %q", frame)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.got
}

// checkReplies applies the invariants to the frames answering frame.
func checkReplies(t *testing.T, frame []byte, got [][]byte) {
	if len(got) == 0 {
		t.Fatalf("no reply to %q", frame)
	}
	for _, fr := range got {
		var env struct {
			Stream  string          `json:"stream"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(fr, &env); err != nil || env.Stream == "" || len(env.Payload) == 0 || env.Payload[0] != '{' {
			t.Fatalf("malformed frame %q for %q", fr, frame)
		}
		var p struct {
			Status *int  `json:"response_status"`
			Errors []any `json:"errors"`
		}
		if err := json.Unmarshal(env.Payload, &p); err != nil {
			t.Fatalf("payload %q for %q: %v", env.Payload, frame, err)
		}
		if p.Status == nil {
			continue // a push (message, event), not a reply
		}
		switch s := *p.Status; {
		case s >= 500:
			t.Fatalf("status %d for %q: %s", s, frame, fr)
		case s < 200:
			t.Fatalf("status %d for %q: %s", s, frame, fr)
		case s >= 400 && len(p.Errors) == 0:
			t.Fatalf("status %d without errors for %q: %s", s, frame, fr)
		}
	}
}

func fuzzPayload(f *testing.F, stream string) {
	fl := newFuzzLive(f)
	f.Fuzz(func(t *testing.T, payload []byte) {
		frame := fmt.Appendf(nil, `{"stream":%q,"payload":%s}`, stream, payload)
		if !json.Valid(frame) {
			// The envelope decoder's own answer, on the raw payload: the
			// payload is still what the fuzzer varies.
			frame = fmt.Appendf(nil, `{"stream":%q,"payload":%q}`, stream, payload)
		}
		checkReplies(t, frame, fl.run(t, frame))
	})
}

// FuzzSessionPayload fuzzes $session (refresh with a JWT).
func FuzzSessionPayload(f *testing.F) {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(24 * 365 * time.Hour))}).SignedString([]byte(fuzzSecret))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fmt.Appendf(nil, `{"action":"refresh","request_id":1,"token":%q}`, tok))
	fuzzPayload(f, "$session")
}

// FuzzChannelsPayload fuzzes $channels (subscribe, unsubscribe, publish,
// presence, history, with since positions).
func FuzzChannelsPayload(f *testing.F) { fuzzPayload(f, "$channels") }

// FuzzResourcePayload fuzzes a resource stream with every DCRF action
// (create, retrieve, list, update, patch, delete, subscribe_instance with
// since, unsubscribe_instance, subscribe_list, subscribe_many ...).
func FuzzResourcePayload(f *testing.F) { fuzzPayload(f, "notes") }
