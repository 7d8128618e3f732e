package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/wiretest"
	"github.com/switchyardhq/switchyard/resource"
)

func resourcesConfig(c *config.Config) {
	maxLen := 50
	c.Resources = []config.Resource{{
		Name:     "things",
		PKField:  "pk",
		Fields:   []config.Field{{Name: "name", Type: "string", Required: true, MaxLength: &maxLen}, {Name: "counter", Type: "int", Default: 0}},
		Search:   []string{"name"},
		PageSize: 2,
		Permissions: config.ResourcePermissions{
			Read: "anyone", Create: "anyone", Update: "anyone", Delete: "authenticated",
		},
	}}
}

// The DCRF actions on /live, with DCRF's statuses and error shapes
// (specs/dcrf.md §1.4).
func TestResourceCRUDOverLive(t *testing.T) {
	base, _ := start(t, resourcesConfig, Options{})
	c := newLiveClient(t, base)
	p := c.request("things", "create", map[string]any{"data": map[string]any{"name": "Ma Thing"}})
	if p["response_status"] != 201.0 || p["data"].(map[string]any)["name"] != "Ma Thing" || p["data"].(map[string]any)["counter"] != 0.0 {
		t.Fatalf("create %v", p)
	}
	pk := p["data"].(map[string]any)["pk"]
	if p = c.request("things", "retrieve", map[string]any{"pk": pk}); p["response_status"] != 200.0 || p["data"].(map[string]any)["pk"] != pk {
		t.Fatalf("retrieve %v", p)
	}
	if p = c.request("things", "patch", map[string]any{"pk": pk, "data": map[string]any{"counter": 3}}); p["response_status"] != 200.0 || p["data"].(map[string]any)["counter"] != 3.0 {
		t.Fatalf("patch %v", p)
	}
	if p = c.request("things", "update", map[string]any{"pk": pk, "data": map[string]any{"name": "New"}}); p["response_status"] != 200.0 || p["data"].(map[string]any)["name"] != "New" {
		t.Fatalf("update %v", p)
	}
	c.request("things", "create", map[string]any{"data": map[string]any{"name": "Other"}})
	c.request("things", "create", map[string]any{"data": map[string]any{"name": "Third"}})
	if p = c.request("things", "list", map[string]any{"data": map[string]any{}}); p["response_status"] != 200.0 || len(p["data"].([]any)) != 3 {
		t.Fatalf("bare list %v", p)
	}
	p = c.request("things", "list", map[string]any{"limit": 2, "offset": 1, "data": map[string]any{"ordering": "-pk"}})
	page := p["data"].(map[string]any)
	if page["count"] != 3.0 || len(page["results"].([]any)) != 2 || page["limit"] != 2.0 || page["offset"] != 1.0 || page["results"].([]any)[0].(map[string]any)["name"] != "Other" {
		t.Fatalf("paginated list %v", p)
	}
	if p = c.request("things", "list", map[string]any{"data": map[string]any{"search": "oth"}}); len(p["data"].([]any)) != 1 {
		t.Fatalf("search %v", p)
	}
	// Errors keep the socket open.
	p = c.request("things", "create", map[string]any{"data": map[string]any{"counter": "x"}})
	if p["response_status"] != 400.0 {
		t.Fatalf("invalid create %v", p)
	}
	if e := p["errors"].([]any)[0].(map[string]any); e["name"] == nil || e["counter"] == nil {
		t.Fatalf("validation errors %v", p)
	}
	if p = c.request("things", "retrieve", map[string]any{"pk": 999}); p["response_status"] != 404.0 || p["errors"].([]any)[0] != "Not found" {
		t.Fatalf("missing %v", p)
	}
	if p = c.request("things", "retrieve", map[string]any{}); p["response_status"] != 400.0 {
		t.Fatalf("no pk %v", p)
	}
	if p = c.request("things", "list", map[string]any{"data": map[string]any{"ordering": "secret"}}); p["response_status"] != 400.0 {
		t.Fatalf("ordering on an undeclared field %v", p)
	}
	if p = c.request("things", "delete", map[string]any{"pk": pk}); p["response_status"] != 403.0 {
		t.Fatalf("anonymous delete %v", p)
	}
	if p = c.request("things", "explode", map[string]any{}); p["response_status"] != 405.0 {
		t.Fatalf("unknown action %v", p)
	}
	if p = c.request("things", "list", map[string]any{"limit": "two"}); p["response_status"] != 400.0 {
		t.Fatalf("limit of the wrong type %v", p)
	}
}

func TestResourceDeleteIs204(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		resourcesConfig(c)
		c.Auth.JWT.HMACSecret = testSecret
	}, Options{})
	alice := newLiveClientWith(t, base, token(t, "alice", time.Hour, nil))
	p := alice.request("things", "create", map[string]any{"data": map[string]any{"name": "gone soon"}})
	pk := p["data"].(map[string]any)["pk"]
	p = alice.request("things", "delete", map[string]any{"pk": pk})
	if p["response_status"] != 204.0 || p["data"] != nil || len(p["errors"].([]any)) != 0 {
		t.Fatalf("delete %v", p)
	}
	if p = alice.request("things", "delete", map[string]any{"pk": pk}); p["response_status"] != 404.0 {
		t.Fatalf("delete twice %v", p)
	}
}

// subscribe_instance: every committed change of the record reaches the
// subscriber once per request_id, as DCRF sends it.
func TestResourceInstanceSubscriptions(t *testing.T) {
	base, _ := start(t, resourcesConfig, Options{})
	writer := newLiveClient(t, base)
	watcher := newLiveClient(t, base)
	p := writer.request("things", "create", map[string]any{"data": map[string]any{"name": "watched"}})
	pk := p["data"].(map[string]any)["pk"]

	sub := func(rid string) {
		t.Helper()
		if err := watcher.c.WriteJSON(map[string]any{"stream": "things", "payload": map[string]any{"action": "subscribe_instance", "pk": pk, "request_id": rid}}); err != nil {
			t.Fatal(err)
		}
		r := watcher.waitFor(func(m map[string]any) bool {
			pl, _ := m["payload"].(map[string]any)
			return pl["request_id"] == rid && pl["action"] == "subscribe_instance"
		})
		if pl := r["payload"].(map[string]any); pl["response_status"] != 201.0 || pl["data"] != nil {
			t.Fatalf("subscribe_instance %v", pl)
		}
	}
	sub("s1")
	sub("s2")
	event := func(rid, action string) map[string]any {
		t.Helper()
		m := watcher.waitFor(func(m map[string]any) bool {
			pl, _ := m["payload"].(map[string]any)
			return m["stream"] == "things" && pl["request_id"] == rid && pl["action"] == action
		})
		return m["payload"].(map[string]any)
	}
	writer.request("things", "patch", map[string]any{"pk": pk, "data": map[string]any{"counter": 7}})
	for _, rid := range []string{"s1", "s2"} {
		e := event(rid, "update")
		if e["response_status"] != 200.0 || e["data"].(map[string]any)["counter"] != 7.0 || e["data"].(map[string]any)["pk"] != pk {
			t.Fatalf("update event %v", e)
		}
	}
	// Unsubscribing one request_id leaves the other.
	if err := watcher.c.WriteJSON(map[string]any{"stream": "things", "payload": map[string]any{"action": "unsubscribe_instance", "pk": pk, "request_id": "s1"}}); err != nil {
		t.Fatal(err)
	}
	if u := event("s1", "unsubscribe_instance"); u["response_status"] != 204.0 {
		t.Fatalf("unsubscribe %v", u)
	}
	writer.request("things", "update", map[string]any{"pk": pk, "data": map[string]any{"name": "renamed"}})
	if e := event("s2", "update"); e["data"].(map[string]any)["name"] != "renamed" {
		t.Fatalf("second update %v", e)
	}
	if p := watcher.request("things", "unsubscribe_instance", map[string]any{"pk": pk}); p["response_status"] != 404.0 {
		t.Fatalf("unsubscribing an unknown request_id: %v", p)
	}
	if p := watcher.request("things", "subscribe_instance", map[string]any{"pk": 999}); p["response_status"] != 404.0 {
		t.Fatalf("subscribing to a missing record: %v", p)
	}
	// No event went to s1 after its unsubscribe.
	watcher.mu.Lock()
	for _, m := range watcher.in {
		if pl, _ := m["payload"].(map[string]any); pl["request_id"] == "s1" {
			t.Fatalf("event after unsubscribe: %v", m)
		}
	}
	watcher.mu.Unlock()
}

func TestResourceDeleteEvent(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		resourcesConfig(c)
		c.Auth.JWT.HMACSecret = testSecret
	}, Options{})
	alice := newLiveClientWith(t, base, token(t, "alice", time.Hour, nil))
	watcher := newLiveClient(t, base)
	pk := alice.request("things", "create", map[string]any{"data": map[string]any{"name": "doomed"}})["data"].(map[string]any)["pk"]
	if p := watcher.request("things", "subscribe_instance", map[string]any{"pk": pk}); p["response_status"] != 201.0 {
		t.Fatalf("subscribe %v", p)
	}
	rid := "r1" // the watcher's first request
	alice.request("things", "delete", map[string]any{"pk": pk})
	m := watcher.waitFor(func(m map[string]any) bool {
		pl, _ := m["payload"].(map[string]any)
		return pl["action"] == "delete" && pl["request_id"] == rid
	})
	pl := m["payload"].(map[string]any)
	if pl["response_status"] != 204.0 || pl["data"].(map[string]any)["pk"] != pk || m["stream"] != "things" {
		t.Fatalf("delete event %v", m)
	}
}

// subscribe_list: a live query gets create/update/delete for the rows of
// its filter, a row that stops matching as a delete and one that starts
// matching as a create.
func TestResourceLiveQueries(t *testing.T) {
	base, _ := start(t, resourcesConfig, Options{})
	writer := newLiveClient(t, base)
	watcher := newLiveClient(t, base)
	if p := watcher.request("things", "subscribe_list", map[string]any{"filter": map[string]any{"counter": 1}}); p["response_status"] != 201.0 || p["data"] != nil {
		t.Fatalf("subscribe_list %v", p)
	}
	rid := "r1"
	event := func(action string) map[string]any {
		t.Helper()
		m := watcher.waitFor(func(m map[string]any) bool {
			pl, _ := m["payload"].(map[string]any)
			return pl["request_id"] == rid && pl["action"] == action
		})
		return m["payload"].(map[string]any)
	}
	// Not matching: no event. Then it starts matching: create.
	pk := writer.request("things", "create", map[string]any{"data": map[string]any{"name": "a", "counter": 0}})["data"].(map[string]any)["pk"]
	writer.request("things", "patch", map[string]any{"pk": pk, "data": map[string]any{"counter": 1}})
	if e := event("create"); e["data"].(map[string]any)["pk"] != pk || e["response_status"] != 200.0 {
		t.Fatalf("enter %v", e)
	}
	writer.request("things", "patch", map[string]any{"pk": pk, "data": map[string]any{"name": "b"}})
	if e := event("update"); e["data"].(map[string]any)["name"] != "b" {
		t.Fatalf("update %v", e)
	}
	writer.request("things", "patch", map[string]any{"pk": pk, "data": map[string]any{"counter": 2}})
	if e := event("delete"); e["data"].(map[string]any)["pk"] != pk || e["response_status"] != 204.0 {
		t.Fatalf("leave %v", e)
	}
	// A created matching row, then deleted.
	pk2 := writer.request("things", "create", map[string]any{"data": map[string]any{"name": "c", "counter": 1}})["data"].(map[string]any)["pk"]
	if e := event("create"); e["data"].(map[string]any)["pk"] != pk2 {
		t.Fatalf("create %v", e)
	}
	if p := watcher.request("things", "subscribe_list", map[string]any{"filter": map[string]any{"colour": "red"}}); p["response_status"] != 400.0 {
		t.Fatalf("filter on an undeclared field %v", p)
	}
	if p := watcher.request("things", "unsubscribe_list", map[string]any{}); p["response_status"] != 404.0 {
		t.Fatalf("unsubscribe an unknown query %v", p)
	}
	// Unsubscribed: nothing more for r1.
	if err := watcher.c.WriteJSON(map[string]any{"stream": "things", "payload": map[string]any{"action": "unsubscribe_list", "request_id": rid}}); err != nil {
		t.Fatal(err)
	}
	if e := event("unsubscribe_list"); e["response_status"] != 204.0 {
		t.Fatalf("unsubscribe %v", e)
	}
	writer.request("things", "delete", map[string]any{"pk": pk2}) // anonymous delete: refused (403) in this config
	writer.request("things", "patch", map[string]any{"pk": pk2, "data": map[string]any{"name": "quiet"}})
	if p := watcher.request("things", "list", map[string]any{}); p["response_status"] != 200.0 {
		t.Fatal(p)
	}
	watcher.mu.Lock()
	defer watcher.mu.Unlock()
	for _, m := range watcher.in {
		if pl, _ := m["payload"].(map[string]any); pl["request_id"] == rid {
			t.Fatalf("event after unsubscribe: %v", m)
		}
	}
}

func rest(t *testing.T, method, url, body, bearer string) (int, map[string]any, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	wiretest.CheckNoNullCollections(t, method+" "+url, raw)
	var m map[string]any
	json.Unmarshal(raw, &m)
	return resp.StatusCode, m, string(raw)
}

// REST has DRF's shapes, shares the permissions and tokens of the socket,
// and its writes notify the socket's subscribers.
func TestResourceREST(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		resourcesConfig(c)
		c.Auth.JWT.HMACSecret = testSecret
		c.Limits.MaxRequestBody = 1024
	}, Options{})
	api := base + "/api/resources/things/"
	watcher := newLiveClient(t, base)
	if p := watcher.request("things", "subscribe_list", map[string]any{}); p["response_status"] != 201.0 {
		t.Fatal(p)
	}
	code, m, raw := rest(t, "POST", api, `{"name": "from REST", "counter": 2}`, "")
	if code != 201 || m["name"] != "from REST" {
		t.Fatalf("POST %d %s", code, raw)
	}
	pk := m["pk"]
	ev := watcher.waitFor(func(m map[string]any) bool {
		pl, _ := m["payload"].(map[string]any)
		return pl["action"] == "create" && pl["request_id"] == "r1"
	})
	if ev["payload"].(map[string]any)["data"].(map[string]any)["pk"] != pk {
		t.Fatalf("WebSocket event for a REST create: %v", ev)
	}
	item := fmt.Sprintf("%s%v/", api, pk)
	if code, m, raw = rest(t, "GET", item, "", ""); code != 200 || m["counter"] != 2.0 {
		t.Fatalf("GET one %d %s", code, raw)
	}
	if code, m, raw = rest(t, "PATCH", item, `{"counter": 3}`, ""); code != 200 || m["counter"] != 3.0 {
		t.Fatalf("PATCH %d %s", code, raw)
	}
	watcher.waitFor(func(m map[string]any) bool {
		pl, _ := m["payload"].(map[string]any)
		return pl["action"] == "update" && pl["request_id"] == "r1"
	})
	if code, _, raw = rest(t, "PUT", item, `{"counter": 4}`, ""); code != 400 || !strings.Contains(raw, `"name":["This field is required."]`) {
		t.Fatalf("PUT without name %d %s", code, raw)
	}
	for i := range 4 {
		rest(t, "POST", api, fmt.Sprintf(`{"name": "item %d", "counter": %d}`, i, i%2), "")
	}
	code, m, raw = rest(t, "GET", api+"?page_size=2&page=2&ordering=pk", "", "")
	if code != 200 || m["count"] != 5.0 || len(m["results"].([]any)) != 2 || m["next"] == nil || m["previous"] == nil {
		t.Fatalf("page 2 %d %s", code, raw)
	}
	if _, m, _ = rest(t, "GET", api+"?counter=1&search=item", "", ""); m["count"] != 2.0 {
		t.Fatalf("filter+search %v", m)
	}
	// Errors, DRF-shaped.
	for _, tc := range []struct {
		method, url, body, bearer string
		status                    int
		want                      string
	}{
		{"GET", api + "?colour=red", "", "", 400, `"colour":["Unknown field to filter on."]`},
		{"GET", api + "?counter=lots", "", "", 400, `"counter":["A valid integer is required."]`},
		{"GET", api + "?ordering=secret", "", "", 400, `Invalid ordering field`},
		{"GET", api + "?page=0", "", "", 400, `"page"`},
		{"GET", api + "999/", "", "", 404, `{"detail":"Not found."}`},
		{"GET", base + "/api/resources/nope/", "", "", 404, `"detail"`},
		{"POST", api, `{"name": 5}`, "", 400, `"name":["Not a valid string."]`},
		{"POST", api, `{"name": "x", "extra": 1}`, "", 400, `"extra":["Unknown field."]`},
		{"POST", api, `[1]`, "", 400, `non_field_errors`},
		{"POST", api, `{"name": "` + strings.Repeat("x", 2000) + `"}`, "", 413, `"detail"`},
		{"DELETE", item, "", "", 403, `"detail":"You do not have permission to perform this action."`},
		{"GET", api, "", "not-a-token", 401, `"detail"`},
		{"POST", item, `{}`, "", 405, `"detail"`},
		{"POST", api, `{"name": "Robert'); DROP TABLE things;--"}`, "", 201, `DROP TABLE things`},
	} {
		code, _, raw := rest(t, tc.method, tc.url, tc.body, tc.bearer)
		if code != tc.status || !strings.Contains(raw, tc.want) {
			t.Errorf("%s %s %.40s: %d %s", tc.method, tc.url, tc.body, code, raw)
		}
	}
	// With a token the delete passes: 204, and the subscriber hears it.
	if code, _, raw = rest(t, "DELETE", item, "", token(t, "alice", time.Hour, nil)); code != 204 {
		t.Fatalf("DELETE %d %s", code, raw)
	}
	watcher.waitFor(func(m map[string]any) bool {
		pl, _ := m["payload"].(map[string]any)
		return pl["action"] == "delete" && pl["request_id"] == "r1"
	})
}

// Resources declared in Go take the file's defaults, and hooks reach the
// writes of both the socket and REST.
func TestResourcesFromGoWithHooks(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		c.Resources = []config.Resource{{Name: "posts", Fields: []config.Field{{Name: "title", Type: "string"}, {Name: "slug", Type: "string", ReadOnly: true}}}}
	}, Options{ResourceHooks: map[string]resource.Hooks{"posts": {
		BeforeWrite: func(ctx context.Context, w *resource.Write) error {
			if title, ok := w.Row["title"].(string); ok {
				w.Row["slug"] = strings.ToLower(title)
			}
			return nil
		},
	}}})
	c := newLiveClient(t, base)
	p := c.request("posts", "create", map[string]any{"data": map[string]any{"title": "Hello"}})
	if p["response_status"] != 201.0 || p["data"].(map[string]any)["slug"] != "hello" || p["data"].(map[string]any)["id"] == nil {
		t.Fatalf("create %v", p)
	}
	code, m, raw := rest(t, "POST", base+"/api/resources/posts/", `{"title": "REST"}`, "")
	if code != 201 || m["slug"] != "rest" {
		t.Fatalf("REST create %d %s", code, raw)
	}
}

// Checklist items of specs/dcrf.md §5: a missing action (18), a repeated
// subscribe with the same request_id (23), a custom subscription to one
// record under pk_field.
func TestDCRFChecklistEdges(t *testing.T) {
	base, _ := start(t, resourcesConfig, Options{})
	c := newLiveClient(t, base)
	if err := c.c.WriteJSON(map[string]any{"stream": "things", "payload": map[string]any{"request_id": "noaction"}}); err != nil {
		t.Fatal(err)
	}
	m := c.waitFor(func(m map[string]any) bool {
		p, _ := m["payload"].(map[string]any)
		return p["request_id"] == "noaction"
	})
	p := m["payload"].(map[string]any)
	if p["response_status"] != 405.0 || p["errors"].([]any)[0] != "Unable to find action in message body." || p["action"] != nil {
		t.Fatalf("missing action %v", p)
	}
	if _, ok := p["action"]; !ok {
		t.Fatal("action key missing (must be null)")
	}
	pk := c.request("things", "create", map[string]any{"data": map[string]any{"name": "x"}})["data"].(map[string]any)["pk"]
	for range 2 {
		if err := c.c.WriteJSON(map[string]any{"stream": "things", "payload": map[string]any{"action": "subscribe_instance", "pk": pk, "request_id": "same"}}); err != nil {
			t.Fatal(err)
		}
		r := c.waitFor(func(m map[string]any) bool {
			p, _ := m["payload"].(map[string]any)
			return p["request_id"] == "same" && p["action"] == "subscribe_instance"
		})
		if r["payload"].(map[string]any)["response_status"] != 201.0 {
			t.Fatalf("repeated subscribe %v", r)
		}
	}
	// One record through subscribe_many under pk_field ("pk" here).
	other := c.request("things", "create", map[string]any{"data": map[string]any{"name": "other"}})["data"].(map[string]any)["pk"]
	if p := c.request("things", "subscribe_many", map[string]any{"pk": pk}); p["response_status"] != 201.0 {
		t.Fatal(p)
	}
	manyRID := fmt.Sprintf("r%d", c.next)
	c.request("things", "patch", map[string]any{"pk": other, "data": map[string]any{"counter": 9}})
	c.request("things", "patch", map[string]any{"pk": pk, "data": map[string]any{"counter": 1}})
	// Exactly one update for "same" (no duplicate) and one for the custom
	// subscription, which ignored the other record.
	c.waitFor(func(m map[string]any) bool {
		p, _ := m["payload"].(map[string]any)
		return p["request_id"] == manyRID && p["action"] == "update" && p["data"].(map[string]any)["pk"] == pk
	})
	c.waitFor(func(m map[string]any) bool {
		p, _ := m["payload"].(map[string]any)
		return p["request_id"] == "same" && p["action"] == "update"
	})
	if p := c.request("things", "list", map[string]any{}); p["response_status"] != 200.0 {
		t.Fatal(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.in {
		p, _ := m["payload"].(map[string]any)
		if p["request_id"] == "same" || (p["request_id"] == manyRID && p["data"].(map[string]any)["pk"] == other) {
			t.Fatalf("duplicate or foreign event: %v", m)
		}
	}
}
