package live

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/sqlite"
)

// countFrames is a transport that only counts frames.
type countFrames struct{ n atomic.Int64 }

func (w *countFrames) WriteFrames(ctx context.Context, b [][]byte) error {
	w.n.Add(int64(len(b)))
	return nil
}
func (w *countFrames) Close(int, string) error { return nil }

// BenchmarkResourceEvent measures one resource event's fan-out to N
// live-query subscribers of one collection, half with a filter the record
// matches and half not, alternating two users under read: owner:owner
// (so a quarter receive it), against a plain channel publication to N
// subscribers of the same encoder in the same run. ns/subscriber is the
// per-subscriber cost of either; the goal is resource ≤ 2× channel.
func BenchmarkResourceEvent(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, kind := range []string{"channel", "live-query"} {
			b.Run(fmt.Sprintf("%s/subscribers=%d", kind, n), func(b *testing.B) {
				benchEvents(b, kind, n)
			})
		}
	}
}

func benchEvents(b *testing.B, kind string, n int) {
	ctx := context.Background()
	br := memory.New(memory.Config{})
	hb, err := hub.New(hub.Config{Broker: br, Presence: br, Channels: config.Channels{
		Default: config.DefaultChannelOptions(),
		Namespaces: []config.Namespace{{Name: "room", ChannelOptions: config.ChannelOptions{
			Permissions: config.ChannelPermissions{Subscribe: "anyone", Publish: "anyone", Presence: "anyone", History: "anyone"},
		}}},
	}, Reserved: map[string]config.ChannelOptions{resource.ChannelNamespace: {}}, MaxQueuedBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { hb.Close(); br.Close(ctx) })
	db, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(b.TempDir(), "bench.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	svc, err := resource.NewService(ctx, resource.ServiceConfig{Store: db, Resources: []config.Resource{{
		Name: "notes", PKField: "id", PageSize: 25,
		Fields:      []config.Field{{Name: "title", Type: config.FieldString}, {Name: "tag", Type: config.FieldString}, {Name: "owner", Type: config.FieldString}},
		Permissions: config.ResourcePermissions{Read: "owner:owner", Create: "authenticated", Update: "owner:owner", Delete: "owner:owner"},
	}}})
	if err != nil {
		b.Fatal(err)
	}
	h := New(Config{Hub: hb, Resources: svc})
	w := &countFrames{}
	ch := "room:a"
	if kind == "live-query" {
		ch = resource.CollectionChannel("notes")
	}
	for i := range n {
		user := []string{"alice", "bob"}[i%2]
		hs := hb.Connect(fmt.Sprint(i), hub.Principal{User: user}, w, h.enc)
		sess := &session{hs: hs}
		hs.SetValue(sess)
		if kind == "channel" {
			if err := hb.Subscribe(ctx, hs, ch, nil, func(hub.SubscribeResult) []byte { return nil }); err != nil {
				b.Fatal(err)
			}
			continue
		}
		tag := []string{"a", "a", "b", "b"}[i%4] // half match; alice and bob alike
		q, err := svc.LiveQuery("notes", resource.As(user), resource.LiveFilter{Filter: map[string]json.RawMessage{"tag": json.RawMessage(`"` + tag + `"`)}})
		if err != nil {
			b.Fatal(err)
		}
		sess.addList(ch, &listSub{rid: json.RawMessage(`"q"`), q: q})
		if err := hb.SubscribeSilent(ctx, hs, ch); err != nil {
			b.Fatal(err)
		}
	}
	// The payload: a record of alice's updated, as the service publishes it.
	rec := json.RawMessage(`{"id":1,"title":"Buy milk, then oat milk","tag":"a","owner":"alice"}`)
	ev := resource.Event{Resource: "notes", PK: 1, Op: store.OpUpdate, Seq: 1, Data: rec, Before: rec}
	chData := json.RawMessage(`{"id":1,"title":"Buy milk, then oat milk","tag":"a","owner":"alice"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var err error
		if kind == "channel" {
			_, err = hb.Publish(ctx, nil, ch, chData)
		} else {
			ev.Seq++ // each event is a new change
			_, err = hb.Publish(ctx, nil, ch, ev.Payload())
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	hb.Close() // writers drained
	want := int64(n) * int64(b.N)
	if kind == "live-query" {
		want = int64(n/4) * int64(b.N)
	}
	if got := w.n.Load(); got != want {
		b.Fatalf("delivered %d frames, want %d", got, want)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/subscriber")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(w.n.Load()), "ns/delivery")
}
