package brokertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
)

// Run runs the broker contract suite, one parallel subtest per property.
// newBroker returns a new broker on which Run has not been called; the
// suite calls Run with its own Handler and closes the broker when the
// subtest ends (a second Close must return nil or broker.ErrClosed).
func Run(t *testing.T, newBroker func(t *testing.T) broker.Broker) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, b broker.Broker, rec *recorder)
	}{
		{"OffsetsStartAtOneAndIncrease", testOffsets},
		{"NoHistory", testNoHistory},
		{"NeverPublished", testNeverPublished},
		{"HistoryLimit", testHistoryLimit},
		{"HistorySince", testHistorySince},
		{"HistoryReverse", testHistoryReverse},
		{"HistoryTrimmedToSize", testHistoryTrimmed},
		{"HistoryTTLExpiry", testHistoryTTL},
		{"HistoryTTLRefreshedByPublish", testHistoryTTLRefresh},
		{"RemoveHistory", testRemoveHistory},
		{"DeliveryOnlyWhenSubscribed", testDeliveryOnlyWhenSubscribed},
		{"SubscribeIdempotent", testSubscribeIdempotent},
		{"JoinLeave", testJoinLeave},
		{"ConcurrentPublishersKeepOrder", testConcurrentPublishers},
		{"ManyChannelsInParallel", testManyChannels},
		{"PublishInfo", testPublishInfo},
		{"PublishAudience", testPublishAudience},
		{"PublishSequence", testPublishSequence},
		{"DoneContext", testDoneContext},
		{"PublishAfterClose", testPublishAfterClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBroker(t)
			rec := newRecorder()
			if err := b.Run(rec); err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Cleanup(func() {
				if err := b.Close(context.Background()); err != nil && !errors.Is(err, broker.ErrClosed) {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, b, rec)
		})
	}
}

// withHistory keeps n publications for as long as the test runs.
func withHistory(n int) broker.PublishOptions {
	return broker.PublishOptions{HistorySize: n}
}

func publish(t testing.TB, b broker.Broker, ch, data string, opts broker.PublishOptions) switchyard.StreamPosition {
	t.Helper()
	sp, err := b.Publish(context.Background(), ch, []byte(data), opts)
	if err != nil {
		t.Fatalf("Publish(%s, %s): %v", ch, data, err)
	}
	return sp
}

func history(t testing.TB, b broker.Broker, ch string, opts broker.HistoryOptions) ([]switchyard.Publication, switchyard.StreamPosition) {
	t.Helper()
	pubs, sp, err := b.History(context.Background(), ch, opts)
	if err != nil {
		t.Fatalf("History(%s): %v", ch, err)
	}
	return pubs, sp
}

func subscribe(t testing.TB, b broker.Broker, ch string) {
	t.Helper()
	if err := b.Subscribe(context.Background(), ch); err != nil {
		t.Fatalf("Subscribe(%s): %v", ch, err)
	}
}

func unsubscribe(t testing.TB, b broker.Broker, ch string) {
	t.Helper()
	if err := b.Unsubscribe(context.Background(), ch); err != nil {
		t.Fatalf("Unsubscribe(%s): %v", ch, err)
	}
}

// all selects every kept publication.
var all = broker.HistoryOptions{Limit: -1}

// since selects every kept publication after offset in epoch.
func since(offset uint64, epoch string, limit int) broker.HistoryOptions {
	return broker.HistoryOptions{Since: &switchyard.StreamPosition{Offset: offset, Epoch: epoch}, Limit: limit}
}

// data returns the payload of publication n of a test, a JSON string.
func data(n int) string { return fmt.Sprintf(`"p%d"`, n) }

// checkPubs checks that pubs are the publications with the given offsets,
// made by publish(…, data(offset), …).
func checkPubs(t testing.TB, what string, pubs []switchyard.Publication, offsets ...uint64) {
	t.Helper()
	got := make([]uint64, len(pubs))
	for i, p := range pubs {
		got[i] = p.Offset
	}
	if !slicesEqual(got, offsets) {
		t.Fatalf("%s: offsets %v, want %v", what, got, offsets)
	}
	for _, p := range pubs {
		if want := data(int(p.Offset)); string(p.Data) != want {
			t.Fatalf("%s: publication %d has data %s, want %s", what, p.Offset, p.Data, want)
		}
	}
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func span(from, to uint64) []uint64 {
	var s []uint64
	for o := from; o <= to; o++ {
		s = append(s, o)
	}
	return s
}

// testOffsets: offsets start at 1, increase by one, the epoch is stable
// and the Handler sees the same positions.
func testOffsets(t *testing.T, b broker.Broker, rec *recorder) {
	ch := channelName(t, "a")
	subscribe(t, b, ch)
	var epoch string
	for i := 1; i <= 5; i++ {
		sp := publish(t, b, ch, data(i), withHistory(10))
		if sp.Offset != uint64(i) {
			t.Fatalf("publication %d: offset %d", i, sp.Offset)
		}
		if sp.Epoch == "" {
			t.Fatalf("publication %d: empty epoch", i)
		}
		if i == 1 {
			epoch = sp.Epoch
		} else if sp.Epoch != epoch {
			t.Fatalf("publication %d: epoch %q, was %q", i, sp.Epoch, epoch)
		}
	}
	pubs, sp := history(t, b, ch, all)
	checkPubs(t, "history", pubs, 1, 2, 3, 4, 5)
	if want := (switchyard.StreamPosition{Offset: 5, Epoch: epoch}); sp != want {
		t.Fatalf("history position %+v, want %+v", sp, want)
	}
	evs := rec.waitEvents(t, ch, 5)
	for i, e := range evs {
		o := uint64(i + 1)
		if e.kind != kindPublication || e.pub.Offset != o || string(e.pub.Data) != data(i+1) {
			t.Fatalf("event %d: %v, want publication %d", i, e, o)
		}
		if want := (switchyard.StreamPosition{Offset: o, Epoch: epoch}); e.sp != want {
			t.Fatalf("event %d: position %+v, want %+v", i, e.sp, want)
		}
	}
}

// testNoHistory: HistorySize 0 gives offset 0, keeps nothing, still
// delivers, and leaves an existing history alone.
func testNoHistory(t *testing.T, b broker.Broker, rec *recorder) {
	ch := channelName(t, "none")
	subscribe(t, b, ch)
	sp := publish(t, b, ch, data(0), broker.PublishOptions{})
	if sp.Offset != 0 {
		t.Fatalf("offset %d, want 0", sp.Offset)
	}
	evs := rec.waitEvents(t, ch, 1)
	if e := evs[0]; e.kind != kindPublication || e.pub.Offset != 0 || string(e.pub.Data) != data(0) {
		t.Fatalf("delivered %v, want publication 0", e)
	}
	pubs, sp := history(t, b, ch, all)
	if len(pubs) != 0 || sp.Offset != 0 {
		t.Fatalf("history: %d publications at offset %d, want none at 0", len(pubs), sp.Offset)
	}

	mixed := channelName(t, "mixed")
	for i := 1; i <= 3; i++ {
		publish(t, b, mixed, data(i), withHistory(10))
	}
	_, before := history(t, b, mixed, all)
	if sp := publish(t, b, mixed, data(0), broker.PublishOptions{}); sp.Offset != 0 {
		t.Fatalf("publication without history: offset %d, want 0", sp.Offset)
	}
	pubs, after := history(t, b, mixed, all)
	checkPubs(t, "history after a publication without history", pubs, 1, 2, 3)
	if after != before {
		t.Fatalf("position changed from %+v to %+v", before, after)
	}
}

// testNeverPublished: offset 0 and a non-empty, stable epoch.
func testNeverPublished(t *testing.T, b broker.Broker, _ *recorder) {
	ch := channelName(t, "quiet")
	pubs, sp := history(t, b, ch, all)
	if len(pubs) != 0 || sp.Offset != 0 || sp.Epoch == "" {
		t.Fatalf("got %d publications at %+v, want none at offset 0 with an epoch", len(pubs), sp)
	}
	for range 3 {
		if _, again := history(t, b, ch, broker.HistoryOptions{}); again != sp {
			t.Fatalf("position %+v, was %+v", again, sp)
		}
	}
	pubs, again := history(t, b, ch, since(0, sp.Epoch, -1))
	if len(pubs) != 0 || again != sp {
		t.Fatalf("since its own position: %d publications at %+v, want none at %+v", len(pubs), again, sp)
	}
}

// testHistoryLimit: oldest first; Limit 0 → none, -1 → all, n → first n.
func testHistoryLimit(t *testing.T, b broker.Broker, _ *recorder) {
	ch := channelName(t, "a")
	var last switchyard.StreamPosition
	for i := 1; i <= 10; i++ {
		last = publish(t, b, ch, data(i), withHistory(10))
	}
	for _, tc := range []struct {
		limit int
		want  []uint64
	}{
		{0, nil},
		{-1, span(1, 10)},
		{3, span(1, 3)},
		{10, span(1, 10)},
		{20, span(1, 10)},
	} {
		pubs, sp := history(t, b, ch, broker.HistoryOptions{Limit: tc.limit})
		checkPubs(t, fmt.Sprintf("Limit %d", tc.limit), pubs, tc.want...)
		if sp != last {
			t.Fatalf("Limit %d: position %+v, want %+v", tc.limit, sp, last)
		}
	}
}

// testHistorySince: only publications after Since.Offset in the current
// epoch, the first Limit of them.
func testHistorySince(t *testing.T, b broker.Broker, _ *recorder) {
	ch := channelName(t, "a")
	var last switchyard.StreamPosition
	for i := 1; i <= 10; i++ {
		last = publish(t, b, ch, data(i), withHistory(10))
	}
	e := last.Epoch
	for _, tc := range []struct {
		name string
		opts broker.HistoryOptions
		want []uint64
	}{
		{"since 0", since(0, e, -1), span(1, 10)},
		{"since 4", since(4, e, -1), span(5, 10)},
		{"since 4 limit 2", since(4, e, 2), span(5, 6)},
		{"since 4 limit 0", since(4, e, 0), nil},
		{"since 9 limit 5", since(9, e, 5), span(10, 10)},
		{"since top", since(10, e, -1), nil},
		{"other epoch", since(4, e+"x", -1), nil},
		{"other epoch from 0", since(0, e+"x", -1), nil},
	} {
		pubs, sp := history(t, b, ch, tc.opts)
		checkPubs(t, tc.name, pubs, tc.want...)
		if sp != last {
			t.Fatalf("%s: position %+v, want %+v", tc.name, sp, last)
		}
	}
}

// testHistoryReverse: newest first; without Since the last Limit, with
// Since those below Since.Offset (paging backwards), in the current epoch
// only, over a trimmed history too.
func testHistoryReverse(t *testing.T, b broker.Broker, _ *recorder) {
	ch := channelName(t, "a")
	var last switchyard.StreamPosition
	for i := 1; i <= 12; i++ {
		last = publish(t, b, ch, data(i), withHistory(10)) // keeps 3..12
	}
	e := last.Epoch
	rev := func(o broker.HistoryOptions) broker.HistoryOptions { o.Reverse = true; return o }
	for _, tc := range []struct {
		name string
		opts broker.HistoryOptions
		want []uint64
	}{
		{"latest 3", rev(broker.HistoryOptions{Limit: 3}), []uint64{12, 11, 10}},
		{"all", rev(all), []uint64{12, 11, 10, 9, 8, 7, 6, 5, 4, 3}},
		{"limit 0", rev(broker.HistoryOptions{}), nil},
		{"limit above size", rev(broker.HistoryOptions{Limit: 50}), []uint64{12, 11, 10, 9, 8, 7, 6, 5, 4, 3}},
		{"page before 10", rev(since(10, e, 3)), []uint64{9, 8, 7}},
		{"page before 5", rev(since(5, e, 3)), []uint64{4, 3}},
		{"before the oldest kept", rev(since(3, e, -1)), nil},
		{"before a trimmed offset", rev(since(2, e, -1)), nil},
		{"before 0", rev(since(0, e, -1)), nil},
		{"before top+1: everything", rev(since(13, e, 2)), []uint64{12, 11}},
		{"before far ahead", rev(since(1000, e, 2)), []uint64{12, 11}},
		{"other epoch", rev(since(10, e+"x", -1)), nil},
	} {
		pubs, sp := history(t, b, ch, tc.opts)
		checkPubs(t, tc.name, pubs, tc.want...)
		if sp != last {
			t.Fatalf("%s: position %+v, want %+v", tc.name, sp, last)
		}
	}
	if pubs, _ := history(t, b, channelName(t, "never"), rev(all)); len(pubs) != 0 {
		t.Fatalf("never published: %d publications", len(pubs))
	}
}

// testHistoryTrimmed: at most HistorySize publications, oldest dropped.
func testHistoryTrimmed(t *testing.T, b broker.Broker, _ *recorder) {
	ch := channelName(t, "a")
	var last switchyard.StreamPosition
	for i := 1; i <= 5; i++ {
		last = publish(t, b, ch, data(i), withHistory(3))
	}
	pubs, sp := history(t, b, ch, all)
	checkPubs(t, "history", pubs, 3, 4, 5)
	if sp.Offset != 5 {
		t.Fatalf("position %+v, want offset 5", sp)
	}
	pubs, _ = history(t, b, ch, since(1, last.Epoch, -1))
	checkPubs(t, "since a trimmed offset", pubs, 3, 4, 5)
	pubs, _ = history(t, b, ch, since(3, last.Epoch, 1))
	checkPubs(t, "since a kept offset, limit 1", pubs, 4)

	// Many more than HistorySize, to go round a ring more than once.
	for i := 6; i <= 100; i++ {
		publish(t, b, ch, data(i), withHistory(3))
	}
	pubs, _ = history(t, b, ch, all)
	checkPubs(t, "after 100", pubs, 98, 99, 100)
}

// ttl is the HistoryTTL and presence expiry of the expiry tests: short,
// but long enough for a loaded machine to publish and read back.
const ttl = 150 * time.Millisecond

// testHistoryTTL: history unpublished for HistoryTTL is lost and the
// epoch changes; publishing starts again at offset 1.
func testHistoryTTL(t *testing.T, b broker.Broker, _ *recorder) {
	ch := channelName(t, "a")
	opts := broker.PublishOptions{HistorySize: 10, HistoryTTL: ttl}
	publish(t, b, ch, data(1), opts)
	old := publish(t, b, ch, data(2), opts)
	var sp switchyard.StreamPosition
	eventually(t, waitTimeout, func() error {
		var pubs []switchyard.Publication
		pubs, sp = history(t, b, ch, all)
		if len(pubs) != 0 || sp.Offset != 0 || sp.Epoch == old.Epoch {
			return fmt.Errorf("%d publications at %+v, want none at offset 0 in an epoch other than %q", len(pubs), sp, old.Epoch)
		}
		return nil
	})
	if sp.Epoch == "" {
		t.Fatal("empty epoch after expiry")
	}
	if _, again := history(t, b, ch, all); again != sp {
		t.Fatalf("position after expiry changed from %+v to %+v", sp, again)
	}
	pubs, _ := history(t, b, ch, since(1, old.Epoch, -1))
	checkPubs(t, "since a lost position", pubs)
	next := publish(t, b, ch, data(1), opts)
	if next.Offset != 1 || next.Epoch == old.Epoch {
		t.Fatalf("first publication after expiry at %+v, want offset 1 in an epoch other than %q", next, old.Epoch)
	}
}

// testHistoryTTLRefresh: a channel that keeps getting publications within
// HistoryTTL keeps its history.
func testHistoryTTLRefresh(t *testing.T, b broker.Broker, _ *recorder) {
	ch := channelName(t, "a")
	opts := broker.PublishOptions{HistorySize: 1000, HistoryTTL: 4 * ttl}
	first := publish(t, b, ch, data(1), opts)
	start := time.Now()
	for n := 2; time.Since(start) < 8*ttl; n++ {
		time.Sleep(ttl / 4) // pace the publications; not an assertion
		sp := publish(t, b, ch, data(n), opts)
		if want := (switchyard.StreamPosition{Offset: uint64(n), Epoch: first.Epoch}); sp != want {
			t.Fatalf("publication %d at %+v, want %+v: history was lost", n, sp, want)
		}
	}
}

// testRemoveHistory: publications gone, epoch changed, offsets restart.
func testRemoveHistory(t *testing.T, b broker.Broker, _ *recorder) {
	ctx := context.Background()
	ch := channelName(t, "a")
	for i := 1; i <= 3; i++ {
		publish(t, b, ch, data(i), withHistory(10))
	}
	_, old := history(t, b, ch, all)
	if err := b.RemoveHistory(ctx, ch); err != nil {
		t.Fatalf("RemoveHistory: %v", err)
	}
	pubs, sp := history(t, b, ch, all)
	if len(pubs) != 0 || sp.Offset != 0 || sp.Epoch == "" || sp.Epoch == old.Epoch {
		t.Fatalf("after RemoveHistory: %d publications at %+v, want none at offset 0 in an epoch other than %q", len(pubs), sp, old.Epoch)
	}
	if _, again := history(t, b, ch, all); again != sp {
		t.Fatalf("position after RemoveHistory changed from %+v to %+v", sp, again)
	}
	if next := publish(t, b, ch, data(1), withHistory(10)); next.Offset != 1 || next.Epoch == old.Epoch {
		t.Fatalf("first publication after RemoveHistory at %+v, want offset 1 in an epoch other than %q", next, old.Epoch)
	}

	quiet := channelName(t, "quiet")
	_, before := history(t, b, quiet, all)
	if err := b.RemoveHistory(ctx, quiet); err != nil {
		t.Fatalf("RemoveHistory of a channel without history: %v", err)
	}
	if _, after := history(t, b, quiet, all); after.Offset != 0 || after.Epoch == "" || after.Epoch == before.Epoch {
		t.Fatalf("RemoveHistory of a channel without history: position %+v, want offset 0 in an epoch other than %q", after, before.Epoch)
	}
}

// testDeliveryOnlyWhenSubscribed: nothing arrives for a channel before
// Subscribe or after Unsubscribe. Whatever was wrongly delivered would
// arrive before the marker published after subscribing.
func testDeliveryOnlyWhenSubscribed(t *testing.T, b broker.Broker, rec *recorder) {
	ctx := context.Background()
	ch := channelName(t, "a")
	info := switchyard.ClientInfo{ClientID: "c1", User: "u1"}

	publish(t, b, ch, data(1), withHistory(10))
	publish(t, b, ch, data(0), broker.PublishOptions{})
	if err := b.PublishJoin(ctx, ch, info); err != nil {
		t.Fatalf("PublishJoin: %v", err)
	}
	subscribe(t, b, ch)
	publish(t, b, ch, data(2), withHistory(10))
	if evs := rec.waitData(t, ch, data(2)); len(evs) != 1 {
		t.Fatalf("before Subscribe, delivered %v", evs[:len(evs)-1])
	}

	unsubscribe(t, b, ch)
	publish(t, b, ch, data(3), withHistory(10))
	publish(t, b, ch, data(0), broker.PublishOptions{})
	if err := b.PublishLeave(ctx, ch, info); err != nil {
		t.Fatalf("PublishLeave: %v", err)
	}
	subscribe(t, b, ch)
	publish(t, b, ch, data(4), withHistory(10))
	if evs := rec.waitData(t, ch, data(4)); len(evs) != 2 {
		t.Fatalf("after Unsubscribe, delivered %v", evs[1:len(evs)-1])
	}

	other := channelName(t, "other")
	publish(t, b, other, data(1), withHistory(10))
	if evs := rec.channel(other); len(evs) != 0 {
		t.Fatalf("never subscribed, delivered %v", evs)
	}
}

// testSubscribeIdempotent: a second Subscribe does not deliver twice; a
// second Unsubscribe, or one without Subscribe, is no error.
func testSubscribeIdempotent(t *testing.T, b broker.Broker, rec *recorder) {
	ch := channelName(t, "a")
	subscribe(t, b, ch)
	subscribe(t, b, ch)
	publish(t, b, ch, data(1), withHistory(10))
	publish(t, b, ch, data(2), withHistory(10))
	evs := rec.waitData(t, ch, data(2))
	if len(evs) != 2 || evs[0].pub.Offset != 1 {
		t.Fatalf("subscribed twice, delivered %v, want publications 1 and 2 once each", evs)
	}
	unsubscribe(t, b, ch)
	unsubscribe(t, b, ch)
	unsubscribe(t, b, channelName(t, "never"))
	subscribe(t, b, ch)
	publish(t, b, ch, data(3), withHistory(10))
	if evs := rec.waitData(t, ch, data(3)); len(evs) != 3 {
		t.Fatalf("delivered %v, want publications 1, 2 and 3 once each", evs)
	}
}

// testJoinLeave: joins and leaves reach subscribers, in order, with the
// client's info.
func testJoinLeave(t *testing.T, b broker.Broker, rec *recorder) {
	ctx := context.Background()
	ch := channelName(t, "a")
	subscribe(t, b, ch)
	c1 := switchyard.ClientInfo{ClientID: "c1", User: "u1", Info: json.RawMessage(`{"name":"Ann"}`)}
	c2 := switchyard.ClientInfo{ClientID: "c2"}
	for _, step := range []struct {
		join bool
		info switchyard.ClientInfo
	}{{true, c1}, {true, c2}, {false, c1}} {
		var err error
		if step.join {
			err = b.PublishJoin(ctx, ch, step.info)
		} else {
			err = b.PublishLeave(ctx, ch, step.info)
		}
		if err != nil {
			t.Fatalf("publishing presence of %s: %v", step.info.ClientID, err)
		}
	}
	evs := rec.waitEvents(t, ch, 3)
	want := []event{{kind: kindJoin, info: c1}, {kind: kindJoin, info: c2}, {kind: kindLeave, info: c1}}
	if len(evs) != len(want) {
		t.Fatalf("delivered %v, want %v", evs, want)
	}
	for i := range want {
		if evs[i].kind != want[i].kind || !reflect.DeepEqual(evs[i].info, want[i].info) {
			t.Fatalf("event %d: %v %+v, want %v %+v", i, evs[i], evs[i].info, want[i], want[i].info)
		}
	}
}

// checkOrder checks that the publications delivered on ch have the
// offsets 1..n, in that order, each once.
func checkOrder(t testing.TB, rec *recorder, ch string, n int) {
	t.Helper()
	evs := rec.waitEvents(t, ch, n)
	if len(evs) != n {
		t.Fatalf("channel %s: %d deliveries, want %d", ch, len(evs), n)
	}
	for i, e := range evs {
		if e.pub.Offset != uint64(i+1) {
			t.Fatalf("channel %s: delivery %d has offset %d, want %d (offsets out of order or repeated)", ch, i, e.pub.Offset, i+1)
		}
		if e.sp.Offset != e.pub.Offset {
			t.Fatalf("channel %s: delivery %d at position %d, publication offset %d", ch, i, e.sp.Offset, e.pub.Offset)
		}
	}
}

// testConcurrentPublishers: with concurrent publishers on one channel the
// Handler sees offsets 1..n in order, each once, and every Publish
// returned a distinct offset.
func testConcurrentPublishers(t *testing.T, b broker.Broker, rec *recorder) {
	const publishers, each = 8, 200
	ch := channelName(t, "a")
	subscribe(t, b, ch)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		offsets = make(map[uint64]int)
		errs    = make(chan error, publishers)
	)
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				sp, err := b.Publish(context.Background(), ch, []byte(fmt.Sprintf(`[%d,%d]`, p, i)), withHistory(16))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				offsets[sp.Offset]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	for o := uint64(1); o <= publishers*each; o++ {
		if offsets[o] != 1 {
			t.Fatalf("offset %d returned %d times", o, offsets[o])
		}
	}
	checkOrder(t, rec, ch, publishers*each)
}

// testManyChannels: publishers interleaving over many channels; every
// channel gets its own offsets in order.
func testManyChannels(t *testing.T, b broker.Broker, rec *recorder) {
	const channels, publishers, rounds = 64, 8, 25
	names := make([]string, channels)
	for i := range names {
		names[i] = channelName(t, fmt.Sprint(i))
		subscribe(t, b, names[i])
	}
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Go(func() {
			for r := range rounds {
				for i := range channels {
					ch := names[(i+p*7)%channels] // each publisher starts elsewhere
					if _, err := b.Publish(context.Background(), ch, []byte(fmt.Sprint(r)), withHistory(8)); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	for _, ch := range names {
		checkOrder(t, rec, ch, publishers*rounds)
		if _, sp := history(t, b, ch, broker.HistoryOptions{}); sp.Offset != publishers*rounds {
			t.Fatalf("channel %s at offset %d, want %d", ch, sp.Offset, publishers*rounds)
		}
	}
}

// testPublishInfo: PublishOptions.Info comes back on deliveries and in
// history.
func testPublishInfo(t *testing.T, b broker.Broker, rec *recorder) {
	ch := channelName(t, "a")
	subscribe(t, b, ch)
	info := &switchyard.ClientInfo{ClientID: "c1", User: "u1", Info: json.RawMessage(`{"name":"Ann"}`)}
	publish(t, b, ch, data(1), broker.PublishOptions{HistorySize: 10, Info: info})
	publish(t, b, ch, data(2), withHistory(10))
	check := func(what string, pubs []switchyard.Publication) {
		t.Helper()
		if len(pubs) != 2 {
			t.Fatalf("%s: %d publications, want 2", what, len(pubs))
		}
		if got := pubs[0].Info; got == nil || got.ClientID != info.ClientID || got.User != info.User || !bytes.Equal(got.Info, info.Info) {
			t.Fatalf("%s: info %+v, want %+v", what, got, info)
		}
		if pubs[1].Info != nil {
			t.Fatalf("%s: info %+v on a publication without one", what, pubs[1].Info)
		}
	}
	evs := rec.waitEvents(t, ch, 2)
	check("delivered", []switchyard.Publication{evs[0].pub, evs[1].pub})
	pubs, _ := history(t, b, ch, all)
	check("history", pubs)
}

// testPublishAudience: a publication's audience is delivered and kept
// with it; the broker does not filter by it.
func testPublishAudience(t *testing.T, b broker.Broker, rec *recorder) {
	ch := channelName(t, "a")
	subscribe(t, b, ch)
	aud := switchyard.Audience{Users: []string{"ann", "bob"}, ExceptUsers: []string{"bob"}}
	publish(t, b, ch, data(1), broker.PublishOptions{HistorySize: 10, Audience: aud})
	publish(t, b, ch, data(2), withHistory(10))
	check := func(what string, pubs []switchyard.Publication) {
		t.Helper()
		if len(pubs) != 2 {
			t.Fatalf("%s: %d publications, want 2", what, len(pubs))
		}
		if got := pubs[0].Audience; !slices.Equal(got.Users, aud.Users) || !slices.Equal(got.ExceptUsers, aud.ExceptUsers) {
			t.Fatalf("%s: audience %+v, want %+v", what, got, aud)
		}
		if !pubs[1].Audience.IsZero() {
			t.Fatalf("%s: audience %+v on a publication without one", what, pubs[1].Audience)
		}
	}
	evs := rec.waitEvents(t, ch, 2)
	check("delivered", []switchyard.Publication{evs[0].pub, evs[1].pub})
	pubs, _ := history(t, b, ch, all)
	check("history", pubs)
}

// testPublishSequence: a publication's sequence is delivered with it
// untouched (the hub orders by it), with or without history.
func testPublishSequence(t *testing.T, b broker.Broker, rec *recorder) {
	ch := channelName(t, "a")
	subscribe(t, b, ch)
	seq := switchyard.Sequence{Key: "record:42", Seq: 1 << 40, Prev: 77}
	publish(t, b, ch, data(1), broker.PublishOptions{Sequence: seq})
	publish(t, b, ch, data(2), broker.PublishOptions{HistorySize: 10, Sequence: switchyard.Sequence{Key: "k", Seq: 3}})
	publish(t, b, ch, data(3), withHistory(10))
	evs := rec.waitEvents(t, ch, 3)
	if evs[0].pub.Sequence != seq || evs[1].pub.Sequence != (switchyard.Sequence{Key: "k", Seq: 3}) || !evs[2].pub.Sequence.IsZero() {
		t.Fatalf("delivered sequences %+v, %+v, %+v", evs[0].pub.Sequence, evs[1].pub.Sequence, evs[2].pub.Sequence)
	}
	pubs, _ := history(t, b, ch, all)
	if len(pubs) != 2 || pubs[0].Sequence.Seq != 3 || !pubs[1].Sequence.IsZero() {
		t.Fatalf("history %+v", pubs)
	}
}

// testDoneContext: operations with a done context fail with its error.
func testDoneContext(t *testing.T, b broker.Broker, _ *recorder) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ch := channelName(t, "a")
	if _, err := b.Publish(ctx, ch, []byte(data(1)), withHistory(10)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish: %v, want context.Canceled", err)
	}
	if _, _, err := b.History(ctx, ch, all); !errors.Is(err, context.Canceled) {
		t.Fatalf("History: %v, want context.Canceled", err)
	}
	if err := b.Subscribe(ctx, ch); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe: %v, want context.Canceled", err)
	}
}

// testPublishAfterClose: Publish after Close fails with ErrClosed.
func testPublishAfterClose(t *testing.T, b broker.Broker, _ *recorder) {
	ch := channelName(t, "a")
	publish(t, b, ch, data(1), withHistory(10))
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, opts := range []broker.PublishOptions{withHistory(10), {}} {
		if _, err := b.Publish(context.Background(), ch, []byte(data(2)), opts); !errors.Is(err, broker.ErrClosed) {
			t.Fatalf("Publish(HistorySize %d) after Close: %v, want ErrClosed", opts.HistorySize, err)
		}
	}
}
