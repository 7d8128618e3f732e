package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/resource"
)

// The permission matrix of resource events (issue 11): for every read
// permission, every kind of subscription and every write path, what each
// of alice, bob and an anonymous session receives — and, as importantly,
// what each does NOT receive. An oracle written from the documented rules
// (docs/resources.md, "Who receives what") computes every expected frame;
// each connection's frames are compared with it exactly, after a barrier
// request proves that nothing more is on its way.

func notesConfig(read string) func(*config.Config) {
	return func(c *config.Config) {
		c.Auth.JWT.HMACSecret = testSecret
		c.APIKeys = []config.Secret{testAPIKey}
		c.Resources = []config.Resource{{
			Name:     "notes",
			PKField:  "id",
			PageSize: 25,
			Fields: []config.Field{
				{Name: "title", Type: config.FieldString},
				{Name: "tag", Type: config.FieldString},
				{Name: "owner", Type: config.FieldString},
			},
			Permissions: config.ResourcePermissions{Read: read, Create: "authenticated", Update: "owner:owner", Delete: "owner:owner"},
		}}
	}
}

// note is a record's state in the oracle (nil: no record).
type note map[string]any

func (n note) with(k string, v any) note {
	m := note{}
	for kk, vv := range n {
		m[kk] = vv
	}
	m[k] = v
	return m
}

// change is one committed write: the record before and after it, and its
// seq (the change log counts every change of the store from 1).
type change struct {
	seq           int64
	pk            int64
	before, after note
}

// canRead is the read rule of docs/resources.md.
func canRead(perm, user string, n note) bool {
	if n == nil {
		return false
	}
	switch perm {
	case "anyone":
		return true
	case "authenticated":
		return user != ""
	case "none":
		return false
	}
	return user != "" && n["owner"] == user
}

// mayList is the rule for list and live queries: 403 otherwise.
func mayList(perm, user string) bool {
	switch perm {
	case "anyone":
		return true
	case "none":
		return false
	}
	return user != ""
}

// want is one expected frame of a request_id.
type want struct {
	action string
	status float64
	data   any // nil, note, or map[string]any
	seq    int64
}

func pkData(pk int64) map[string]any { return map[string]any{"pk": float64(pk)} }

// liveQueryWants: what a subscribe_list {filter: {tag: "a"}} (or a
// subscribe_many, which has no filter and shows the last readable state
// on delete) receives of the changes.
func liveQueryWants(perm, user string, many bool, changes []change) []want {
	in := func(n note) bool { return canRead(perm, user, n) && (many || n["tag"] == "a") }
	var out []want
	for _, c := range changes {
		was, is := in(c.before), in(c.after)
		switch {
		case was && is:
			out = append(out, want{"update", 200, c.after, 0})
		case is:
			out = append(out, want{"create", 200, c.after, 0})
		case was:
			var data any = pkData(c.pk)
			if many {
				data = c.before // readable: it was in the query
			}
			out = append(out, want{"delete", 204, data, 0})
		}
	}
	return out
}

// instanceWants: what a subscribe_instance made after the create receives
// (with seq when since was given): changes while the record is readable,
// its delete, and when it turns unreadable one delete and nothing more.
func instanceWants(perm, user string, withSeq bool, changes []change) []want {
	var out []want
	seq := func(c change) int64 {
		if withSeq {
			return c.seq
		}
		return 0
	}
	for _, c := range changes {
		switch {
		case c.after == nil:
			out = append(out, want{"delete", 204, pkData(c.pk), seq(c)})
		case !canRead(perm, user, c.after):
			return append(out, want{"delete", 204, pkData(c.pk), seq(c)})
		default:
			out = append(out, want{"update", 200, c.after, seq(c)})
		}
	}
	return out
}

// catchUpWants: a subscribe_instance with since (the create's seq) made
// after the record was deleted: 404 unless its last state is readable,
// then each change to a readable state, and the delete.
func catchUpWants(perm, user string, changes []change) (status float64, out []want) {
	if !mayList(perm, user) {
		return 403, nil
	}
	last := changes[len(changes)-1].before
	if !canRead(perm, user, last) {
		return 404, nil
	}
	for _, c := range changes {
		switch {
		case c.after == nil:
			out = append(out, want{"delete", 204, pkData(c.pk), c.seq})
		case canRead(perm, user, c.after):
			out = append(out, want{"update", 200, c.after, c.seq})
		}
	}
	return 201, out
}

// subscribeStatus is the reply to subscribing a record in state n.
func subscribeStatus(perm, user string, n note) float64 {
	switch {
	case !mayList(perm, user):
		return 403
	case !canRead(perm, user, n):
		return 404
	}
	return 201
}

// writer performs the story's writes through one path.
type writer interface {
	create(t *testing.T, user string, body string) note
	patch(t *testing.T, user string, pk int64, body string)
	// setOwner changes the owner as the server (clients cannot).
	setOwner(t *testing.T, pk int64, owner string)
	del(t *testing.T, user string, pk int64)
}

type restWriter struct{ base string }

func (w restWriter) do(t *testing.T, method, path, auth, body string, wantStatus int) note {
	t.Helper()
	req, _ := http.NewRequest(method, w.base+"/api/resources/notes/"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s as %q: %d %s", method, path, auth, resp.StatusCode, b)
	}
	var n note
	json.Unmarshal(b, &n)
	return n
}

func (w restWriter) create(t *testing.T, user, body string) note {
	return w.do(t, "POST", "", "Bearer "+token(t, user, time.Hour, nil), body, 201)
}
func (w restWriter) patch(t *testing.T, user string, pk int64, body string) {
	w.do(t, "PATCH", fmt.Sprintf("%d/", pk), "Bearer "+token(t, user, time.Hour, nil), body, 200)
}
func (w restWriter) setOwner(t *testing.T, pk int64, owner string) {
	w.do(t, "PATCH", fmt.Sprintf("%d/", pk), "apikey "+testAPIKey, fmt.Sprintf(`{"owner": %q}`, owner), 200)
}
func (w restWriter) del(t *testing.T, user string, pk int64) {
	w.do(t, "DELETE", fmt.Sprintf("%d/", pk), "Bearer "+token(t, user, time.Hour, nil), "", 204)
}

type liveWriter struct {
	conns map[string]*liveClient
	srv   *Server
}

func (w liveWriter) req(t *testing.T, user, action string, fields map[string]any, status float64) note {
	t.Helper()
	p := w.conns[user].request("notes", action, fields)
	if p["response_status"] != status {
		t.Fatalf("%s as %s: %v", action, user, p)
	}
	n, _ := p["data"].(map[string]any)
	return n
}

func (w liveWriter) create(t *testing.T, user, body string) note {
	var data any
	json.Unmarshal([]byte(body), &data)
	return w.req(t, user, "create", map[string]any{"data": data}, 201)
}
func (w liveWriter) patch(t *testing.T, user string, pk int64, body string) {
	var data any
	json.Unmarshal([]byte(body), &data)
	w.req(t, user, "patch", map[string]any{"pk": pk, "data": data}, 200)
}
func (w liveWriter) setOwner(t *testing.T, pk int64, owner string) {
	goWriter{w.srv}.setOwner(t, pk, owner) // the socket has no server actor
}
func (w liveWriter) del(t *testing.T, user string, pk int64) {
	w.req(t, user, "delete", map[string]any{"pk": pk}, 204)
}

type goWriter struct{ srv *Server }

func (w goWriter) create(t *testing.T, user, body string) note {
	out, err := w.srv.Resources().Create(context.Background(), "notes", resource.As(user), json.RawMessage(body))
	if err != nil {
		t.Fatal(err)
	}
	var n note
	json.Unmarshal(out, &n)
	return n
}
func (w goWriter) patch(t *testing.T, user string, pk int64, body string) {
	if _, err := w.srv.Resources().Write(context.Background(), "notes", resource.As(user), pk, json.RawMessage(body), resource.Patch); err != nil {
		t.Fatal(err)
	}
}
func (w goWriter) setOwner(t *testing.T, pk int64, owner string) {
	if _, err := w.srv.Resources().Write(context.Background(), "notes", resource.AsServer(), pk, json.RawMessage(fmt.Sprintf(`{"owner": %q}`, owner)), resource.Patch); err != nil {
		t.Fatal(err)
	}
}
func (w goWriter) del(t *testing.T, user string, pk int64) {
	if err := w.srv.Resources().Delete(context.Background(), "notes", resource.As(user), pk); err != nil {
		t.Fatal(err)
	}
}

// matchWants compares a request_id's frames (after its reply) with the
// oracle's, exactly: the same number, actions, statuses, data and seqs.
func matchWants(t *testing.T, who, rid string, got []recorded, wants []want) {
	t.Helper()
	norm := func(v any) any {
		b, _ := json.Marshal(v)
		var out any
		json.Unmarshal(b, &out)
		return out
	}
	if len(got) != len(wants) {
		var exp []string
		for _, w := range wants {
			exp = append(exp, fmt.Sprintf("%s %v %v seq=%d", w.action, w.status, norm(w.data), w.seq))
		}
		t.Errorf("%s %s: %d frames, want %d:\n got:\n%s want:\n%s", who, rid, len(got), len(wants), raws(got), strings.Join(exp, "\n"))
		return
	}
	for i, w := range wants {
		p := got[i].payload
		if p["action"] != w.action || p["response_status"] != w.status || !reflect.DeepEqual(p["data"], norm(w.data)) || got[i].seq() != w.seq {
			t.Errorf("%s %s frame %d: got %s, want %s %v %v seq=%d", who, rid, i, got[i].raw, w.action, w.status, norm(w.data), w.seq)
		}
		if _, has := p["seq"]; has != (w.seq != 0) {
			t.Errorf("%s %s frame %d: seq present %v, want %v: %s", who, rid, i, has, w.seq != 0, got[i].raw)
		}
	}
}

// barrier sends a request and waits for its reply: every event of the
// writes made before it was queued ahead of the reply (a write returns
// once its event is queued to every subscriber).
func (r *recorder) barrier(n int) {
	r.t.Helper()
	rid := fmt.Sprintf("barrier-%d", n)
	r.send("notes", map[string]any{"action": "retrieve", "pk": 0, "request_id": rid})
	r.waitFor(rid, 1)
}

func TestResourceEventPermissionMatrix(t *testing.T) {
	for _, perm := range []string{"anyone", "authenticated", "none", "owner:owner"} {
		t.Run(strings.ReplaceAll(perm, ":", "_"), func(t *testing.T) {
			srv, base, _ := startServer(t, notesConfig(perm), Options{})
			users := []string{"alice", "bob", ""}
			name := func(u string) string {
				if u == "" {
					return "anonymous"
				}
				return u
			}
			subs := map[string]*recorder{}
			for _, u := range users {
				q := ""
				if u != "" {
					q = "?token=" + token(t, u, time.Hour, nil)
				}
				r := dialRecorder(t, base, q)
				subs[u] = r
				r.send("notes", map[string]any{"action": "subscribe_list", "request_id": "list", "filter": map[string]any{"tag": "a"}})
				r.send("notes", map[string]any{"action": "subscribe_many", "request_id": "many"})
				want := 201.0
				if !mayList(perm, u) {
					want = 403
				}
				for _, rid := range []string{"list", "many"} {
					if got := r.waitFor(rid, 1)[0].payload["response_status"]; got != want {
						t.Fatalf("%s %s: %v, want %v", name(u), rid, got, want)
					}
				}
			}
			writers := map[string]writer{
				"rest": restWriter{base},
				"live": liveWriter{srv: srv, conns: map[string]*liveClient{
					"alice": newLiveClientWith(t, base, token(t, "alice", time.Hour, nil)),
					"bob":   newLiveClientWith(t, base, token(t, "bob", time.Hour, nil)),
				}},
				"go": goWriter{srv},
			}
			var seq int64
			var all []change
			byPath := map[string][]change{}
			for _, path := range []string{"rest", "live", "go"} {
				w := writers[path]
				var cur note
				var changes []change
				record := func(after note) {
					seq++
					pk := int64(0)
					if cur != nil {
						pk = int64(cur["id"].(float64))
					} else {
						pk = int64(after["id"].(float64))
					}
					changes = append(changes, change{seq: seq, pk: pk, before: cur, after: after})
					cur = after
				}
				// 1. alice creates a record of hers, tagged a.
				created := w.create(t, "alice", `{"title": "t1", "tag": "a"}`)
				if created["owner"] != "alice" {
					t.Fatalf("%s: create did not fill the owner: %v", path, created)
				}
				record(created)
				pk := int64(created["id"].(float64))
				// Subscriptions to it, plain and with since (0: from now).
				for _, u := range users {
					subs[u].send("notes", map[string]any{"action": "subscribe_instance", "request_id": "inst-" + path, "pk": pk})
					subs[u].send("notes", map[string]any{"action": "subscribe_instance", "request_id": "since-" + path, "pk": pk, "since": 0})
					for _, rid := range []string{"inst-" + path, "since-" + path} {
						reply := subs[u].waitFor(rid, 1)[0]
						if want := subscribeStatus(perm, u, cur); reply.payload["response_status"] != want {
							t.Fatalf("%s subscribes %s: %s, want %v", name(u), rid, reply.raw, want)
						}
					}
				}
				instanceFrom := len(changes)
				// 2–8: the story.
				w.patch(t, "alice", pk, `{"title": "t2"}`)
				record(cur.with("title", "t2"))
				w.patch(t, "alice", pk, `{"tag": "b"}`) // leaves the filter
				record(cur.with("tag", "b"))
				w.patch(t, "alice", pk, `{"tag": "a"}`) // enters it again
				record(cur.with("tag", "a"))
				w.setOwner(t, pk, "bob") // alice loses it, bob gains it
				record(cur.with("owner", "bob"))
				w.patch(t, "bob", pk, `{"title": "t3"}`)
				record(cur.with("title", "t3"))
				w.setOwner(t, pk, "alice") // back to alice
				record(cur.with("owner", "alice"))
				w.del(t, "alice", pk)
				record(nil)

				for _, u := range users {
					subs[u].barrier(len(all) + len(changes))
					for _, rid := range []string{"inst-" + path, "since-" + path} {
						got := subs[u].of(rid)
						if got[0].payload["response_status"] != 201.0 {
							if len(got) != 1 {
								t.Errorf("%s: %s was refused, yet received:\n%s", name(u), rid, raws(got[1:]))
							}
							continue
						}
						matchWants(t, name(u)+" ("+path+")", rid, got[1:], instanceWants(perm, u, strings.HasPrefix(rid, "since"), changes[instanceFrom:]))
					}
				}
				byPath[path] = changes
				all = append(all, changes...)
			}
			for _, u := range users {
				for _, rid := range []string{"list", "many"} {
					got := subs[u].of(rid)
					if got[0].payload["response_status"] != 201.0 {
						if len(got) != 1 {
							t.Errorf("%s: %s was refused, yet received:\n%s", name(u), rid, raws(got[1:]))
						}
						continue
					}
					matchWants(t, name(u), rid, got[1:], liveQueryWants(perm, u, rid == "many", all))
				}
			}
			// Catch-up after a reconnect, from each record's create, once it
			// is gone: every change to a state the user may read, nothing
			// else.
			for _, u := range users {
				q := ""
				if u != "" {
					q = "?token=" + token(t, u, time.Hour, nil)
				}
				r := dialRecorder(t, base, q)
				for i, path := range []string{"rest", "live", "go"} {
					changes := byPath[path]
					rid := "catch-" + path
					reply := r.subscribe("notes", changes[0].pk, rid, changes[0].seq)
					status, wants := catchUpWants(perm, u, changes[1:])
					if reply.payload["response_status"] != status {
						t.Errorf("%s catches up on %s: %s, want %v", name(u), path, reply.raw, status)
						continue
					}
					r.barrier(1000 + i)
					if status != 201 {
						if got := r.of(rid); len(got) != 1 {
							t.Errorf("%s: catch-up on %s refused, yet received:\n%s", name(u), path, raws(got[1:]))
						}
						continue
					}
					matchWants(t, name(u)+" catch-up", rid, r.of(rid)[1:], wants)
				}
			}
		})
	}
}

// A live query's filter is checked as list checks it: the same 400s,
// naming the field, on the same socket, which stays open.
func TestLiveQueryFilterCheckedAsList(t *testing.T) {
	_, base, _ := startServer(t, notesConfig("anyone"), Options{})
	c := newLiveClientWith(t, base, token(t, "alice", time.Hour, nil))
	for _, filter := range []map[string]any{{"tag": 5}, {"nope": "x"}, {"id": "one"}} {
		l := c.request("notes", "list", map[string]any{"data": map[string]any{"filter": filter}})
		s := c.request("notes", "subscribe_list", map[string]any{"filter": filter})
		if l["response_status"] != 400.0 || s["response_status"] != 400.0 || !reflect.DeepEqual(l["errors"], s["errors"]) {
			t.Errorf("filter %v: list %v, subscribe_list %v", filter, l, s)
		}
	}
	if p := c.request("notes", "subscribe_list", map[string]any{"filter": map[string]any{"tag": "a"}}); p["response_status"] != 201.0 {
		t.Fatalf("a good filter after bad ones: %v", p)
	}
}

// REST with an API key acts as the server: it reads every record and sets
// owners; a wrong key is refused, never taken for an anonymous caller.
func TestRESTWithAPIKeyActsAsTheServer(t *testing.T) {
	_, base, _ := startServer(t, notesConfig("owner:owner"), Options{})
	w := restWriter{base}
	hers := w.create(t, "alice", `{"title": "hers"}`)
	w.do(t, "POST", "", "apikey "+testAPIKey, `{"title": "for bob", "owner": "bob"}`, 201)
	all := w.do(t, "GET", "", "apikey "+testAPIKey, "", 200)
	if all["count"] != 2.0 {
		t.Fatalf("the server lists %v", all)
	}
	if bobs := w.do(t, "GET", "", "Bearer "+token(t, "bob", time.Hour, nil), "", 200); bobs["count"] != 1.0 {
		t.Fatalf("bob lists %v", bobs)
	}
	w.do(t, "GET", fmt.Sprintf("%v/", hers["id"]), "apikey wrong-key-0123456789", "", 401)
	w.do(t, "POST", "", "apikey wrong-key-0123456789", `{"title": "x", "owner": "bob"}`, 401)
	w.do(t, "POST", "", "Bearer "+token(t, "alice", time.Hour, nil), `{"title": "x", "owner": "bob"}`, 400)
}

// An instance subscription that ended when its record became unreadable
// stays silent when the record comes back, until the client subscribes
// again (the same request_id revives it).
func TestInstanceSubscriptionEndsAndRevives(t *testing.T) {
	srv, base, _ := startServer(t, notesConfig("owner:owner"), Options{})
	g := goWriter{srv}
	n := g.create(t, "alice", `{"title": "x"}`)
	pk := int64(n["id"].(float64))
	r := dialRecorder(t, base, "?token="+token(t, "alice", time.Hour, nil))
	if reply := r.subscribe("notes", pk, "s", nil); reply.payload["response_status"] != 201.0 {
		t.Fatal(reply.raw)
	}
	g.setOwner(t, pk, "bob")
	g.setOwner(t, pk, "alice")
	g.patch(t, "alice", pk, `{"title": "unheard"}`)
	r.barrier(1)
	got := r.of("s")[1:]
	if len(got) != 1 || got[0].payload["action"] != "delete" || !reflect.DeepEqual(got[0].payload["data"], pkData(pk)) {
		t.Fatalf("after the owner changed away and back: %s", raws(got))
	}
	if reply := r.subscribe("notes", pk, "s", nil); reply.payload["response_status"] != 201.0 {
		t.Fatal(reply.raw)
	}
	g.patch(t, "alice", pk, `{"title": "heard"}`)
	ev := r.waitFor("s", 4)[3]
	if ev.payload["action"] != "update" || ev.payload["data"].(map[string]any)["title"] != "heard" {
		t.Fatalf("after subscribing again: %s", ev.raw)
	}
}
