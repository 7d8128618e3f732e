package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/wiretest"
	"github.com/switchyardhq/switchyard/store/sqlite"
)

// recorder is a /live connection that keeps every frame it receives, in
// order, raw and decoded, so tests can check a request_id's whole
// sequence of frames and their exact keys.
type recorder struct {
	t      *testing.T
	c      *websocket.Conn
	mu     sync.Mutex
	frames []recorded
	err    error
	cond   chan struct{}
}

type recorded struct {
	raw     []byte
	payload map[string]any
}

func (f recorded) seq() int64 {
	n, _ := f.payload["seq"].(float64)
	return int64(n)
}

func dialRecorder(t *testing.T, base, query string) *recorder {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/live"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{t: t, c: c, cond: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, data, err := c.ReadMessage()
			r.mu.Lock()
			if err != nil {
				r.err = err
				r.mu.Unlock()
				r.signal()
				return
			}
			var env struct {
				Payload map[string]any `json:"payload"`
			}
			json.Unmarshal(data, &env)
			wiretest.CheckNoNullCollections(t, "/live frame", data)
			r.frames = append(r.frames, recorded{raw: data, payload: env.Payload})
			r.mu.Unlock()
			r.signal()
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return r
}

func (r *recorder) signal() {
	select {
	case r.cond <- struct{}{}:
	default:
	}
}

func (r *recorder) send(stream string, payload map[string]any) {
	r.t.Helper()
	if err := r.c.WriteJSON(map[string]any{"stream": stream, "payload": payload}); err != nil {
		r.t.Fatal(err)
	}
}

// of returns the frames received so far for a request_id, in order.
func (r *recorder) of(rid string) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, f := range r.frames {
		if f.payload["request_id"] == rid {
			out = append(out, f)
		}
	}
	return out
}

// waitFor waits until a request_id has received n frames and returns
// them.
func (r *recorder) waitFor(rid string, n int) []recorded {
	r.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		got := r.of(rid)
		if len(got) >= n {
			return got
		}
		r.mu.Lock()
		err := r.err
		r.mu.Unlock()
		if err != nil {
			r.t.Fatalf("connection ended waiting for %d frames of %s (have %d): %v", n, rid, len(got), err)
		}
		select {
		case <-r.cond:
		case <-deadline:
			r.t.Fatalf("timed out waiting for %d frames of %s, have %d: %s", n, rid, len(got), raws(got))
		}
	}
}

// subscribe sends subscribe_instance (with since unless it is nil) and
// returns the reply.
func (r *recorder) subscribe(stream string, pk any, rid string, since any) recorded {
	r.t.Helper()
	p := map[string]any{"action": "subscribe_instance", "pk": pk, "request_id": rid}
	if since != nil {
		p["since"] = since
	}
	before := len(r.of(rid))
	r.send(stream, p)
	return r.waitFor(rid, before+1)[before]
}

func raws(fs []recorded) string {
	var b strings.Builder
	for _, f := range fs {
		b.Write(f.raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// keys returns the payload's keys in the order the frame has them.
func keys(t *testing.T, raw []byte) []string {
	t.Helper()
	var env struct {
		Payload json.RawMessage `json:"payload"`
	}
	json.Unmarshal(raw, &env)
	dec := json.NewDecoder(bytes.NewReader(env.Payload))
	dec.Token() // {
	var out []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	return out
}

// restWrite writes over REST and fails the test on a refusal.
func restWrite(t testing.TB, method, url, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %v", method, url, resp.StatusCode, m)
	}
	return m
}

func position(t *testing.T, f recorded) (int64, bool) {
	t.Helper()
	d, ok := f.payload["data"].(map[string]any)
	if !ok || f.payload["response_status"] != 201.0 || f.payload["action"] != "subscribe_instance" {
		t.Fatalf("subscribe reply %s", f.raw)
	}
	return int64(d["seq"].(float64)), d["recovered"].(bool)
}

var dcrfKeys = []string{"errors", "data", "action", "response_status", "request_id"}

// A subscription made with since catches up on the changes it missed,
// oldest first, each with its seq; plain subscriptions keep DCRF's five
// keys.
func TestSubscribeSinceCatchesUp(t *testing.T) {
	base, _ := start(t, resourcesConfigOpen(nil), Options{})
	api := base + "/api/resources/things/"
	pk := restWrite(t, "POST", api, `{"name": "watched"}`)["pk"]
	item := fmt.Sprintf("%s%v/", api, pk)

	first := dialRecorder(t, base, "")
	seq0, recovered := position(t, first.subscribe("things", pk, "a", 0))
	if !recovered || seq0 < 1 {
		t.Fatalf("since 0: seq %d recovered %v", seq0, recovered)
	}
	if got := keys(t, first.of("a")[0].raw); fmt.Sprint(got) != fmt.Sprint(dcrfKeys) {
		t.Fatalf("the reply has DCRF's keys only: %v", got)
	}
	restWrite(t, "PATCH", item, `{"counter": 1}`)
	ev := first.waitFor("a", 2)[1]
	if ev.payload["action"] != "update" || ev.seq() <= seq0 || ev.payload["data"].(map[string]any)["counter"] != 1.0 {
		t.Fatalf("live event %s", ev.raw)
	}
	if got := keys(t, ev.raw); fmt.Sprint(got) != fmt.Sprint(append(dcrfKeys, "seq")) {
		t.Fatalf("event keys %v", got)
	}
	last := ev.seq()
	first.c.Close() // the client goes away

	// Missed: a patch, an update, a change of another record, a delete.
	restWrite(t, "PATCH", item, `{"counter": 2}`)
	restWrite(t, "PUT", item, `{"name": "renamed"}`)
	restWrite(t, "POST", api, `{"name": "unrelated"}`)

	back := dialRecorder(t, base, "")
	// A plain subscription on the same connection first: the since one
	// is then a second request_id of an instance already subscribed.
	if p := back.subscribe("things", pk, "plain", nil); p.payload["data"] != nil || p.payload["response_status"] != 201.0 {
		t.Fatalf("plain subscribe %s", p.raw)
	}
	reply := back.subscribe("things", pk, "b", last)
	now, recovered := position(t, reply)
	if !recovered {
		t.Fatalf("not recovered: %s", reply.raw)
	}
	got := back.waitFor("b", 3)
	p1, p2 := got[1].payload, got[2].payload
	if p1["action"] != "update" || p1["data"].(map[string]any)["counter"] != 2.0 || p1["data"].(map[string]any)["name"] != "watched" ||
		p2["action"] != "update" || p2["data"].(map[string]any)["name"] != "renamed" || p2["response_status"] != 200.0 {
		t.Fatalf("catch-up:\n%s", raws(got))
	}
	if !(last < got[1].seq() && got[1].seq() < got[2].seq() && got[2].seq() < now) {
		t.Fatalf("seqs %d < %d < %d < %d (the reply's position is after the unrelated create):\n%s", last, got[1].seq(), got[2].seq(), now, raws(got))
	}
	// Live again: both subscriptions hear the delete, the plain one with
	// DCRF's five keys and no seq.
	restWrite(t, "DELETE", item, "")
	del := back.waitFor("b", 4)[3]
	if del.payload["action"] != "delete" || del.payload["response_status"] != 204.0 || del.seq() <= now ||
		fmt.Sprint(del.payload["data"]) != fmt.Sprint(map[string]any{"pk": pk}) {
		t.Fatalf("delete event %s", del.raw)
	}
	plain := back.waitFor("plain", 2)
	if len(plain) != 2 || plain[1].payload["action"] != "delete" || fmt.Sprint(keys(t, plain[1].raw)) != fmt.Sprint(dcrfKeys) {
		t.Fatalf("plain subscription:\n%s", raws(plain))
	}
	// Coming back after the delete: the changes, then the delete.
	late := dialRecorder(t, base, "")
	position(t, late.subscribe("things", pk, "c", last))
	if got := late.waitFor("c", 4); got[3].payload["action"] != "delete" || got[3].seq() != del.seq() || got[1].seq() != back.of("b")[1].seq() {
		t.Fatalf("after the delete:\n%s", raws(got))
	}
	// Only what was asked for arrived.
	if n := len(back.of("b")); n != 4 {
		t.Fatalf("%d frames for b:\n%s", n, raws(back.of("b")))
	}
}

// resourcesConfigOpen is resourcesConfig with every write open, and the
// data directory reported to the test.
func resourcesConfigOpen(dir *string) func(*config.Config) {
	return func(c *config.Config) {
		resourcesConfig(c)
		c.Resources[0].Permissions.Delete = "anyone"
		if dir != nil {
			*dir = c.DataDir
		}
	}
}

// trim drops the changes up to upTo from a server's change log, from the
// outside, as an operator (or a retention job) would.
func trim(t *testing.T, dataDir string, upTo int64) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dataDir, "switchyard.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.TrimChanges(context.Background(), upTo); err != nil {
		t.Fatal(err)
	}
}

// When the change log cannot tell what was missed — trimmed past since,
// since ahead of this server's log, more than the replay limit — the
// reply says recovered false and the record comes as it is now.
func TestSubscribeSinceWhenTheLogCannotTell(t *testing.T) {
	var dir string
	base, _ := start(t, resourcesConfigOpen(&dir), Options{})
	api := base + "/api/resources/things/"
	pk := restWrite(t, "POST", api, `{"name": "x"}`)["pk"]
	item := fmt.Sprintf("%s%v/", api, pk)
	w := dialRecorder(t, base, "")
	position(t, w.subscribe("things", pk, "w", 0))
	var seqs []int64
	for i := 1; i <= 3; i++ {
		restWrite(t, "PATCH", item, fmt.Sprintf(`{"counter": %d}`, i))
		seqs = append(seqs, w.waitFor("w", i+1)[i].seq())
	}
	s1, s2, s3 := seqs[0], seqs[1], seqs[2]
	trim(t, dir, s2)

	c := dialRecorder(t, base, "")
	now, recovered := position(t, c.subscribe("things", pk, "trimmed", s1))
	got := c.waitFor("trimmed", 2)
	if recovered || now != s3 || got[1].payload["action"] != "update" || got[1].seq() != s3 || got[1].payload["data"].(map[string]any)["counter"] != 3.0 {
		t.Fatalf("trimmed past since:\n%s", raws(got))
	}
	// Since the trimmed position itself: everything after it is kept.
	if _, recovered = position(t, c.subscribe("things", pk, "edge", s2)); !recovered {
		t.Fatal("since the trimmed position: not recovered")
	}
	if got = c.waitFor("edge", 2); got[1].seq() != s3 {
		t.Fatalf("since the trimmed position:\n%s", raws(got))
	}
	// A position this server never reached.
	if now, recovered = position(t, c.subscribe("things", pk, "ahead", s3+1000)); recovered || now != s3 {
		t.Fatalf("since ahead: %d %v", now, recovered)
	}
	if got = c.waitFor("ahead", 2); got[1].payload["data"].(map[string]any)["counter"] != 3.0 {
		t.Fatalf("since ahead:\n%s", raws(got))
	}
	// More missed than the replay limit (100).
	for i := range 101 {
		restWrite(t, "PATCH", item, fmt.Sprintf(`{"counter": %d}`, 10+i))
	}
	w.waitFor("w", 4+101)
	if _, recovered = position(t, c.subscribe("things", pk, "many", s3)); recovered {
		t.Fatal("over the limit: recovered")
	}
	if got = c.waitFor("many", 2); got[1].payload["data"].(map[string]any)["counter"] != 110.0 || len(got) != 2 {
		t.Fatalf("over the limit:\n%s", raws(got))
	}
	// Deleted, and the log trimmed of everything: the delete, as of now.
	restWrite(t, "DELETE", item, "")
	del := w.waitFor("w", 4+101+1)[4+101].seq()
	trim(t, dir, del)
	if now, recovered = position(t, c.subscribe("things", pk, "gone", s3)); recovered || now != del {
		t.Fatalf("deleted and trimmed: %d %v", now, recovered)
	}
	if got = c.waitFor("gone", 2); got[1].payload["action"] != "delete" || got[1].payload["response_status"] != 204.0 || got[1].seq() != del {
		t.Fatalf("deleted and trimmed:\n%s", raws(got))
	}
	// The subscriptions stayed live: each heard every later change once,
	// in order.
	for _, rid := range []string{"trimmed", "edge", "ahead", "many"} {
		got := c.of(rid)
		increasing(t, rid, got[1:])
		if last := got[len(got)-1]; last.payload["action"] != "delete" || last.seq() != del {
			t.Fatalf("%s ends with %s", rid, last.raw)
		}
	}
}

// increasing fails unless the frames' seqs strictly increase: no
// duplicate, no disorder.
func increasing(t *testing.T, what string, fs []recorded) {
	t.Helper()
	for i := 1; i < len(fs); i++ {
		if fs[i].seq() <= fs[i-1].seq() {
			t.Fatalf("%s: seq %d after %d:\n%s", what, fs[i].seq(), fs[i-1].seq(), raws(fs))
		}
	}
}

// A since of the wrong kind is a 400 naming it; the socket stays open.
func TestSubscribeSinceBadSince(t *testing.T) {
	base, _ := start(t, resourcesConfigOpen(nil), Options{})
	pk := restWrite(t, "POST", base+"/api/resources/things/", `{"name": "x"}`)["pk"]
	c := dialRecorder(t, base, "")
	for i, since := range []any{"x", "12", -1, 1.5, true, map[string]any{"offset": 1, "epoch": "e"}, []int{1}} {
		rid := fmt.Sprintf("bad%d", i)
		r := c.subscribe("things", pk, rid, since)
		errs, _ := r.payload["errors"].([]any)
		if r.payload["response_status"] != 400.0 || len(errs) != 1 || errs[0].(map[string]any)["since"] == nil || r.payload["data"] != nil {
			t.Fatalf("since %v: %s", since, r.raw)
		}
		if fmt.Sprint(keys(t, r.raw)) != fmt.Sprint(dcrfKeys) {
			t.Fatalf("error reply keys %v", keys(t, r.raw))
		}
	}
	// null is no since: a plain DCRF subscription.
	if r := c.subscribe("things", pk, "null", json.RawMessage("null")); r.payload["response_status"] != 201.0 || r.payload["data"] != nil {
		t.Fatalf("since null: %s", r.raw)
	}
	if _, recovered := position(t, c.subscribe("things", pk, "good", 0)); !recovered {
		t.Fatal("a good since after bad ones")
	}
	restWrite(t, "PATCH", fmt.Sprintf("%s/api/resources/things/%v/", base, pk), `{"counter": 5}`)
	c.waitFor("good", 2)
	c.waitFor("null", 2)
	for i := range 7 { // the refused subscriptions left nothing behind
		if got := c.of(fmt.Sprintf("bad%d", i)); len(got) != 1 {
			t.Fatalf("bad%d got events:\n%s", i, raws(got))
		}
	}
	// Unknown records are 404, with since as without.
	if r := c.subscribe("things", 999, "missing", 0); r.payload["response_status"] != 404.0 {
		t.Fatalf("missing record %s", r.raw)
	}
}

// The catch-up shows what retrieve shows: another owner's record does not
// exist, an anonymous client may not read an owner resource, and a record
// deleted while its owner was away comes back as its delete.
func TestSubscribeSincePermissions(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		resourcesConfig(c)
		c.Auth.JWT.HMACSecret = testSecret
		c.Resources[0].Fields = append(c.Resources[0].Fields, config.Field{Name: "owner", Type: "string"})
		c.Resources[0].Permissions = config.ResourcePermissions{Read: "owner:owner", Create: "owner:owner", Update: "owner:owner", Delete: "owner:owner"}
	}, Options{})
	aliceTok := token(t, "alice", time.Hour, nil)
	alice := dialRecorder(t, base, "?token="+aliceTok)
	alice.send("things", map[string]any{"action": "create", "request_id": "mk", "data": map[string]any{"name": "hers"}})
	pk := alice.waitFor("mk", 1)[0].payload["data"].(map[string]any)["pk"]
	since, _ := position(t, alice.subscribe("things", pk, "mine", 0))
	item := fmt.Sprintf("%s/api/resources/things/%v/", base, pk)
	if code, _, raw := rest(t, "PATCH", item, `{"counter": 1}`, aliceTok); code != 200 {
		t.Fatalf("patch %d %s", code, raw)
	}
	alice.waitFor("mine", 2)

	bob := dialRecorder(t, base, "?token="+token(t, "bob", time.Hour, nil))
	if r := bob.subscribe("things", pk, "theirs", since); r.payload["response_status"] != 404.0 || r.payload["errors"].([]any)[0] != "Not found" {
		t.Fatalf("another user's record: %s", r.raw)
	}
	anon := dialRecorder(t, base, "")
	if r := anon.subscribe("things", pk, "anon", since); r.payload["response_status"] != 403.0 {
		t.Fatalf("anonymous: %s", r.raw)
	}
	if code, _, raw := rest(t, "DELETE", item, "", aliceTok); code != 204 {
		t.Fatalf("delete %d %s", code, raw)
	}
	alice.waitFor("mine", 3)
	if r := bob.subscribe("things", pk, "theirs-deleted", since); r.payload["response_status"] != 404.0 {
		t.Fatalf("another user's deleted record: %s", r.raw)
	}
	back := dialRecorder(t, base, "?token="+aliceTok)
	position(t, back.subscribe("things", pk, "again", since))
	got := back.waitFor("again", 3)
	if got[1].payload["action"] != "update" || got[2].payload["action"] != "delete" {
		t.Fatalf("the owner comes back:\n%s", raws(got))
	}
	// Bob's refused subscriptions received nothing.
	if n := len(bob.of("theirs")) + len(bob.of("theirs-deleted")); n != 2 {
		t.Fatalf("bob got %d frames", n)
	}
}

// Subscriptions with since made while writers race them receive every
// change after their since exactly once, in order, each as the change
// left the record — whether the record was not yet subscribed on the
// connection or already was (a second request_id).
func TestSubscribeSinceRacingWriters(t *testing.T) {
	base, _ := start(t, resourcesConfigOpen(nil), Options{})
	api := base + "/api/resources/things/"
	pk := restWrite(t, "POST", api, `{"name": "raced"}`)["pk"]
	other := restWrite(t, "POST", api, `{"name": "other"}`)["pk"]
	// The reference saw every change from before the writers started.
	ref := dialRecorder(t, base, "")
	position(t, ref.subscribe("things", pk, "ref", 0))
	// A plain subscription on the connection where most since ones will
	// be second request_ids.
	shared := dialRecorder(t, base, "")
	if r := shared.subscribe("things", pk, "plain", nil); r.payload["response_status"] != 201.0 {
		t.Fatalf("plain subscribe %s", r.raw)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	writes := 0
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				target, body := pk, fmt.Sprintf(`{"counter": %d}`, w*100000+i)
				if i%4 == 3 {
					target = other // other records' changes take seqs too
				}
				req, _ := http.NewRequest("PATCH", fmt.Sprintf("%s%v/", api, target), strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("patch: %d", resp.StatusCode)
					return
				}
				if target == pk {
					mu.Lock()
					writes++
					mu.Unlock()
				}
			}
		})
	}
	// Wait until the writers are going.
	ref.waitFor("ref", 4)

	type sub struct {
		r     *recorder
		rid   string
		since int64
	}
	var subs []sub
	for k := range 24 {
		got := ref.of("ref")
		since := got[len(got)-1].seq()
		if len(got) == 1 {
			since, _ = position(t, got[0])
		}
		s := sub{r: shared, rid: fmt.Sprintf("s%d", k), since: since}
		if k%2 == 0 {
			s.r, s.rid = dialRecorder(t, base, ""), "fresh"
		}
		s.r.send("things", map[string]any{"action": "subscribe_instance", "pk": pk, "request_id": s.rid, "since": s.since})
		s.r.waitFor(s.rid, 1)
		subs = append(subs, s)
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	n := writes
	mu.Unlock()

	all := ref.waitFor("ref", n+1)[1:]
	increasing(t, "ref", all)
	final := all[len(all)-1].seq()
	counter := map[int64]any{} // seq -> the counter that change left
	for _, f := range all {
		counter[f.seq()] = f.payload["data"].(map[string]any)["counter"]
	}
	for _, s := range subs {
		var got []recorded
		for {
			got = s.r.waitFor(s.rid, len(got)+1)
			if got[len(got)-1].seq() == final {
				break
			}
		}
		upTo, recovered := position(t, got[0])
		events := got[1:]
		increasing(t, s.rid, events)
		want := s.since
		if !recovered { // more than the replay limit behind: the state at upTo first
			if events[0].seq() != upTo {
				t.Fatalf("%s since %d: not recovered, first event %s", s.rid, s.since, events[0].raw)
			}
			want, events = upTo, events[1:]
		}
		var expected []int64
		for _, f := range all {
			if f.seq() > want {
				expected = append(expected, f.seq())
			}
		}
		if len(events) != len(expected) {
			t.Fatalf("%s since %d: %d events, want %d:\n%s", s.rid, s.since, len(events), len(expected), raws(events))
		}
		for i, f := range events {
			if f.seq() != expected[i] || f.payload["data"].(map[string]any)["counter"] != counter[f.seq()] {
				t.Fatalf("%s since %d: event %d is %s, want seq %d with counter %v", s.rid, s.since, i, f.raw, expected[i], counter[expected[i]])
			}
		}
	}
	// The plain subscription sharing the connection got every change too,
	// without seq.
	plain := shared.waitFor("plain", n+1)[1:]
	if len(plain) != n || plain[0].payload["seq"] != nil {
		t.Fatalf("plain: %d events, want %d", len(plain), n)
	}
}

// TestSubscribeSinceAfterRestart is TestDCRFClientReconnect with since,
// in raw frames (dcrf-client 0.3.0 cannot send it): the client goes away,
// the record changes before and after the server restarts on the same
// data directory, and the client, back, subscribes with the last seq it
// saw and receives exactly the changes it missed, then live ones.
func TestSubscribeSinceAfterRestart(t *testing.T) {
	data := t.TempDir()
	cfg := func(c *config.Config) {
		resourcesConfigOpen(nil)(c)
		c.DataDir = data // the restarted server finds the same database
	}
	base, stop := start(t, cfg, Options{})
	api := base + "/api/resources/things/"
	pk := restWrite(t, "POST", api, `{"name": "kept"}`)["pk"]
	c := dialRecorder(t, base, "")
	position(t, c.subscribe("things", pk, "sub", 0))
	restWrite(t, "PATCH", fmt.Sprintf("%s%v/", api, pk), `{"counter": 1}`)
	last := c.waitFor("sub", 2)[1].seq() // what the client remembers
	c.c.Close()

	restWrite(t, "PATCH", fmt.Sprintf("%s%v/", api, pk), `{"counter": 2}`) // missed before the restart
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	base, _ = start(t, cfg, Options{})
	api = base + "/api/resources/things/"
	restWrite(t, "PUT", fmt.Sprintf("%s%v/", api, pk), `{"name": "after restart"}`) // missed after it
	restWrite(t, "POST", api, `{"name": "another record"}`)

	back := dialRecorder(t, base, "")
	now, recovered := position(t, back.subscribe("things", pk, "sub", last))
	got := back.waitFor("sub", 3)
	d1, d2 := got[1].payload["data"].(map[string]any), got[2].payload["data"].(map[string]any)
	if !recovered || d1["counter"] != 2.0 || d1["name"] != "kept" || d2["name"] != "after restart" || d2["counter"] != 2.0 {
		t.Fatalf("missed changes:\n%s", raws(got))
	}
	if !(last < got[1].seq() && got[1].seq() < got[2].seq() && got[2].seq() < now) {
		t.Fatalf("seqs across the restart: %d, then\n%s", last, raws(got))
	}
	// The same request_id again on this socket catches up again, and the
	// subscription stays one: the next change arrives once.
	position(t, back.subscribe("things", pk, "sub", last))
	back.waitFor("sub", 6)
	restWrite(t, "PATCH", fmt.Sprintf("%s%v/", api, pk), `{"counter": 3}`)
	got = back.waitFor("sub", 7)
	if live := got[6]; live.payload["data"].(map[string]any)["counter"] != 3.0 || live.seq() <= now {
		t.Fatalf("live after the catch-up:\n%s", raws(got))
	}
	// A list round trip: anything still queued for sub would be ahead of
	// its reply.
	back.send("things", map[string]any{"action": "list", "request_id": "fence"})
	back.waitFor("fence", 1)
	if n := len(back.of("sub")); n != 7 {
		t.Fatalf("%d frames for sub:\n%s", n, raws(back.of("sub")))
	}
}
