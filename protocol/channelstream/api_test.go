package channelstream

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The cases of Channelstream's own suite (specs/channelstream.md §12:
// tests_views.py and tests_integration.py), through real HTTP.

func TestConnectMinimal(t *testing.T) {
	ts := newTestServer(t, nil)
	res := ts.post("/connect", map[string]any{"username": "user_123", "channels": []string{"a", "aB"}})
	if _, ok := parseUUID(res["conn_id"].(string)); !ok {
		t.Fatalf("conn_id %v", res["conn_id"])
	}
	jsonEq(t, "channels", res["channels"], `["a", "aB"]`)
	jsonEq(t, "state", res["state"], `{}`)
	jsonEq(t, "public_state", res["public_state"], `{}`)
	info := res["channels_info"].(map[string]any)
	a := info["channels"].(map[string]any)["a"].(map[string]any)
	jsonEq(t, "settings", a["settings"], `{"notify_presence": false, "store_history": false, "history_size": 10,
		"broadcast_presence_with_user_lists": false, "notify_state": false, "store_frames": true}`)
	jsonEq(t, "users", a["users"], `["user_123"]`)
	if a["total_users"] != 1.0 || a["total_connections"] != 1.0 || a["long_name"] != nil || a["name"] != "a" {
		t.Fatalf("channel info %v", a)
	}
	jsonEq(t, "channels_info.users", info["users"], `[{"user": "user_123", "state": {}}]`)
	// Two channels were created, the user and the connection registered.
	adm := ts.post("/admin/admin.json", nil)
	if adm["total_channels"] != 2.0 || adm["total_connections"] != 1.0 || adm["unique_user_count"] != 1.0 {
		t.Fatalf("admin %v", adm)
	}
}

func TestConnectFull(t *testing.T) {
	ts := newTestServer(t, nil)
	res := ts.post("/connect", map[string]any{
		"username":          "alice",
		"conn_id":           "12345678-1234-5678-1234-567812345678",
		"channels":          []string{"room", "news", "room"},
		"channel_configs":   map[string]any{"room": map[string]any{"notify_presence": true, "store_history": "yes", "history_size": "3"}},
		"fresh_user_state":  map[string]any{"x": 1, "status": "new"},
		"user_state":        map[string]any{"status": "online", "note": nil},
		"state_public_keys": []string{"status"},
		"info":              map[string]any{"include_history": false, "return_public_state": true},
	})
	if res["conn_id"] != "12345678-1234-5678-1234-567812345678" || res["username"] != "alice" {
		t.Fatalf("connect %v", res)
	}
	jsonEq(t, "channels (sorted, duplicates kept)", res["channels"], `["news", "room", "room"]`)
	jsonEq(t, "state", res["state"], `{"x": 1, "status": "online", "note": null}`)
	jsonEq(t, "public_state", res["public_state"], `{"status": "online"}`)
	room := res["channels_info"].(map[string]any)["channels"].(map[string]any)["room"].(map[string]any)
	jsonEq(t, "room settings", room["settings"], `{"notify_presence": true, "store_history": true, "history_size": 3,
		"broadcast_presence_with_user_lists": false, "notify_state": false, "store_frames": true}`)
	jsonEq(t, "users with public state", res["channels_info"].(map[string]any)["users"], `[{"user": "alice", "state": {"status": "online"}}]`)
	// The same conn_id again is the same connection (Channelstream made a
	// second one, §10 #2); fresh_user_state only applies to a new user and
	// state_public_keys is always replaced.
	res = ts.post("/connect", map[string]any{"username": "alice", "conn_id": "12345678123456781234567812345678", "fresh_user_state": map[string]any{"x": 2}})
	jsonEq(t, "state kept", res["state"], `{"x": 1, "status": "online", "note": null}`)
	jsonEq(t, "public keys reset", res["public_state"], `{}`)
	adm := ts.post("/admin/admin.json", nil)
	if adm["total_connections"] != 1.0 {
		t.Fatalf("connections %v", adm["total_connections"])
	}
	// Another user may not take the id.
	errs := ts.call("POST", "/connect", map[string]any{"username": "bob", "conn_id": "12345678-1234-5678-1234-567812345678"}, 422)
	jsonEq(t, "taken conn_id", errs, `{"conn_id": ["Connection is in use by another user"]}`)
}

func TestConnectValidation(t *testing.T) {
	ts := newTestServer(t, nil)
	jsonEq(t, "{}", ts.call("POST", "/connect", map[string]any{}, 422), `{"username": ["Missing data for required field."]}`)
	jsonEq(t, "a list", ts.call("POST", "/connect", []int{1}, 422), `{"_schema": ["Invalid input type."]}`)
	// The transcript of specs/channelstream.md §14.
	got := ts.call("POST", "/connect", `{"username": "", "conn_id": "x", "channels": [""],
		"channel_configs": {"c": {"history_size": -1, "notify_presence": "maybe"}},
		"fresh_user_state": {"a": [1]}, "user_state": {"b": {}}, "info": {"bogus": 1}, "unknown_top": 1}`, 422)
	jsonEq(t, "§14", got, `{"channel_configs": {"c": {"value": {"history_size": ["Must be greater than or equal to 0."], "notify_presence": ["Not a valid boolean."]}}},
		"channels": {"0": ["Length must be between 1 and 256."]}, "conn_id": ["Not a valid UUID."],
		"fresh_user_state": {"a": {"value": ["Value is not type of string, integer, boolean or float."]}},
		"info": {"bogus": ["Unknown field."]}, "unknown_top": ["Unknown field."],
		"user_state": {"b": {"value": ["Value is not type of string, integer, boolean or float."]}},
		"username": ["Length must be between 1 and 512."]}`)
	for _, tc := range []struct{ body, want string }{
		{`{"username": null}`, `{"username": ["Field may not be null."]}`},
		{`{"username": 5}`, `{"username": ["Not a valid string."]}`},
		{`{"username": "u", "channels": "room"}`, `{"channels": ["Not a valid list."]}`},
		{`{"username": "u", "channels": [null, 3]}`, `{"channels": {"0": ["Field may not be null."], "1": ["Not a valid string."]}}`},
		{`{"username": "u", "user_state": []}`, `{"user_state": ["Not a valid mapping type."]}`},
		{`{"username": "u", "info": []}`, `{"info": {"_schema": ["Invalid input type."]}}`},
		{`{"username": "u", "channel_configs": {"c": {"bogus": 1, "history_size": true}}}`, `{"channel_configs": {"c": {"value": {"bogus": ["Unknown field."], "history_size": ["Not a valid integer."]}}}}`},
		{`{"username": "` + strings.Repeat("é", 513) + `"}`, `{"username": ["Length must be between 1 and 512."]}`},
	} {
		jsonEq(t, tc.body, ts.call("POST", "/connect", tc.body, 422), tc.want)
	}
	// 512 characters (not bytes) are fine.
	ts.post("/connect", map[string]any{"username": strings.Repeat("é", 512)})
}

func TestUnknownFieldsIgnored(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.StrictFields = false })
	ts.post("/connect", map[string]any{"username": "u", "channels": []string{"room"}, "bogus": 1, "info": map[string]any{"x": 1}})
	items := ts.call("POST", "/message", []map[string]any{{"user": "u", "channel": "room", "extra": 1}}, 200).([]any)
	if _, ok := items[0].(map[string]any)["extra"]; ok {
		t.Fatalf("0.7.1 mode passed an unknown key through: %v", items[0])
	}
	ts.call("DELETE", "/message", []map[string]any{{"uuid": newUUID(), "user": "x"}}, 200)
}

func TestUserState(t *testing.T) {
	ts := newTestServer(t, nil)
	jsonEq(t, "missing user", ts.call("POST", "/user_state", map[string]any{}, 422), `{"user": ["Missing data for required field."]}`)
	jsonEq(t, "unknown user", ts.call("POST", "/user_state", map[string]any{"user": "nobody"}, 422), `{"user": ["Unknown user"]}`)
	ts.connect(map[string]any{"username": "alice", "user_state": map[string]any{"a": 1, "b": "x"}, "state_public_keys": []string{"a"}})
	res := ts.post("/user_state", map[string]any{"user": "alice", "user_state": map[string]any{"b": "y", "a": 1.0, "c": true}, "state_public_keys": []string{"b", "c"}})
	jsonEq(t, "good update", res, `{"user_state": {"a": 1, "b": "y", "c": true},
		"changed_state": [{"key": "b", "value": "y"}, {"key": "c", "value": true}], "public_keys": ["b", "c"]}`)
	res = ts.post("/user_state", map[string]any{"user": "alice", "user_state": map[string]any{"a": 2}})
	jsonEq(t, "update without keys keeps them", res["public_keys"], `["b", "c"]`)
	res = ts.post("/user_state", map[string]any{"user": "alice", "state_public_keys": []string{}})
	jsonEq(t, "[] clears the keys", res["public_keys"], `[]`)
	res = ts.post("/user_state", map[string]any{"user": "alice", "state_public_keys": nil})
	jsonEq(t, "null leaves them", res["public_keys"], `[]`)
}

func TestSubscribeUnsubscribe(t *testing.T) {
	ts := newTestServer(t, nil)
	jsonEq(t, "missing fields", ts.call("POST", "/subscribe", map[string]any{}, 422), `{"channels": ["Missing data for required field."], "conn_id": ["Field may not be null."]}`)
	unknown := "22345678-1234-5678-1234-567812345678"
	jsonEq(t, "§14", ts.call("POST", "/subscribe", map[string]any{"conn_id": unknown, "channels": []string{}}, 422),
		`{"channels": ["Shorter than minimum length 1."], "conn_id": ["Unknown connection"]}`)
	id := ts.connect(map[string]any{"username": "alice", "channels": []string{"a"}})
	res := ts.post("/subscribe", map[string]any{"conn_id": id, "channels": []string{"c", "b", "a"},
		"channel_configs": map[string]any{"c": map[string]any{"store_history": true}}, "info": map[string]any{"include_users": false}})
	jsonEq(t, "channels", res["channels"], `["a", "b", "c"]`)
	jsonEq(t, "subscribed_to", res["subscribed_to"], `["b", "c"]`)
	c := res["channels_info"].(map[string]any)["channels"].(map[string]any)["c"].(map[string]any)
	if c["settings"].(map[string]any)["store_history"] != true || c["total_users"] != 0.0 || c["total_connections"] != 1.0 {
		t.Fatalf("channel c %v", c)
	}
	// conn_id may come from the query string.
	res = ts.post("/unsubscribe?conn_id="+id, map[string]any{"channels": []string{"a", "nonexistent", "b"}})
	jsonEq(t, "remaining", res["channels"], `["c"]`)
	jsonEq(t, "unsubscribed_from", res["unsubscribed_from"], `["a", "b"]`)
	res = ts.post("/unsubscribe", map[string]any{"conn_id": id, "channels": []string{"c"}})
	jsonEq(t, "last channel left", res, `{"channels": [], "channels_info": {"channels": {}, "users": []}, "unsubscribed_from": ["c"]}`)
}

func TestInfo(t *testing.T) {
	ts := newTestServer(t, nil)
	jsonEq(t, "empty state", ts.post("/info", nil), `{"channels": {}, "users": []}`)
	ts.connect(map[string]any{"username": "alice", "channels": []string{"a", "b"}, "user_state": map[string]any{"s": 1, "p": 2}, "state_public_keys": []string{"p"},
		"channel_configs": map[string]any{"a": map[string]any{"store_history": true}}})
	ts.connect(map[string]any{"username": "bob", "channels": []string{"b", "c"}})
	ts.call("POST", "/message", []map[string]any{{"user": "alice", "channel": "a", "message": map[string]any{"text": "hi"}}}, 200)
	all := ts.post("/info", nil)
	if n := len(all["channels"].(map[string]any)); n != 3 {
		t.Fatalf("all channels: %d", n)
	}
	jsonEq(t, "users, full state", all["users"], `[{"user": "alice", "state": {"s": 1, "p": 2}}, {"user": "bob", "state": {}}]`)
	// Any method.
	if got := ts.call("GET", "/info", nil, 200).(map[string]any); len(got["channels"].(map[string]any)) != 3 {
		t.Fatalf("GET /info %v", got)
	}
	some := ts.post("/info", map[string]any{"info": map[string]any{"channels": []string{"a", "c"}}})
	if n := len(some["channels"].(map[string]any)); n != 2 {
		t.Fatalf("filtered: %v", some)
	}
	det := ts.post("/info", map[string]any{"info": map[string]any{"exclude_channels": []string{"c"}, "include_history": false, "return_public_state": true}})
	chans := det["channels"].(map[string]any)
	if _, ok := chans["c"]; ok || len(chans) != 2 {
		t.Fatalf("exclude_channels: %v", chans)
	}
	jsonEq(t, "no history", chans["a"].(map[string]any)["history"], `[]`)
	jsonEq(t, "public state only", det["users"], `[{"user": "alice", "state": {"p": 2}}, {"user": "bob", "state": {}}]`)
	noUsers := ts.post("/info", map[string]any{"info": map[string]any{"include_users": false}})
	b := noUsers["channels"].(map[string]any)["b"].(map[string]any)
	if b["total_users"] != 0.0 || b["total_connections"] != 2.0 || len(noUsers["users"].([]any)) != 0 {
		t.Fatalf("include_users false: %v", noUsers)
	}
	jsonEq(t, "§14", ts.call("POST", "/info", map[string]any{"channels": []string{"x"}}, 422), `{"channels": ["Unknown field."], "info": ["Missing data for required field."]}`)
}

func TestMessageHistory(t *testing.T) {
	ts := newTestServer(t, nil)
	jsonEq(t, "not a list", ts.call("POST", "/message", map[string]any{}, 422), `{"_schema": ["Invalid input type."]}`)
	jsonEq(t, "item errors", ts.call("POST", "/message", `[{"user": "u"}, 5, {"message": [], "user": "u", "timestamp": "yesterday", "uuid": 1}]`, 422),
		`{"1": {"_schema": ["Invalid input type."]}, "2": {"message": ["Not a valid mapping type."], "timestamp": ["Not a valid datetime."], "uuid": ["Not a valid UUID."]}}`)
	ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}, "channel_configs": map[string]any{"room": map[string]any{"store_history": true, "history_size": 3}}})
	// Minimal message (tests_integration.py): the response shows the defaults.
	items := ts.call("POST", "/message", []map[string]any{{"user": "alice", "channel": "room"}}, 200).([]any)
	m := items[0].(map[string]any)
	if _, ok := parseUUID(m["uuid"].(string)); !ok || m["edited"] != nil || m["no_history"] != false {
		t.Fatalf("defaults %v", m)
	}
	jsonEq(t, "pm_users", m["pm_users"], `[]`)
	jsonEq(t, "exclude_users", m["exclude_users"], `[]`)
	if _, err := time.Parse("2006-01-02T15:04:05.999999", m["timestamp"].(string)); err != nil {
		t.Fatalf("timestamp %v", m["timestamp"])
	}
	if _, ok := m["message"]; ok {
		t.Fatalf("absent message is not added: %v", m)
	}
	// An item with no channel and no pm_users is dropped from the response.
	items = ts.call("POST", "/message", []map[string]any{{"user": "alice"}}, 200).([]any)
	if len(items) != 0 {
		t.Fatalf("dropped item answered %v", items)
	}
	// Five sends, one with no_history, history_size 3: the last three kept.
	for i := range 5 {
		ts.call("POST", "/message", []map[string]any{{"user": "alice", "channel": "room", "message": map[string]any{"n": i}, "no_history": i == 3}}, 200)
	}
	hist := ts.post("/info", nil)["channels"].(map[string]any)["room"].(map[string]any)["history"].([]any)
	var ns []any
	for _, h := range hist {
		ns = append(ns, h.(map[string]any)["message"].(map[string]any)["n"])
	}
	jsonEq(t, "history", ns, `[1, 2, 4]`)
	h := hist[0].(map[string]any)
	for _, k := range []string{"pm_users", "exclude_users", "no_history", "catchup", "type", "edited", "uuid", "timestamp", "user", "channel"} {
		if _, ok := h[k]; !ok {
			t.Fatalf("history entry misses %s: %v", k, h)
		}
	}
	if h["type"] != "message" || h["catchup"] != false {
		t.Fatalf("history entry %v", h)
	}
	// Caller timestamps keep their offset: Z becomes +00:00 over HTTP.
	items = ts.call("POST", "/message", []map[string]any{{"user": "a", "channel": "room", "timestamp": "2020-01-02T03:04:05Z"},
		{"user": "a", "channel": "room", "timestamp": "2020-01-02 03:04:05.5+0130"}}, 200).([]any)
	if items[0].(map[string]any)["timestamp"] != "2020-01-02T03:04:05+00:00" || items[1].(map[string]any)["timestamp"] != "2020-01-02T03:04:05.500000+01:30" {
		t.Fatalf("timestamps %v", items)
	}
}

func TestEditDelete(t *testing.T) {
	ts := newTestServer(t, nil)
	id := ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}, "channel_configs": map[string]any{"room": map[string]any{"store_history": true}}})
	cl := ts.dial(id)
	msg := ts.call("POST", "/message", []map[string]any{{"user": "bob", "channel": "room", "message": map[string]any{"text": "hello"}}}, 200).([]any)[0].(map[string]any)
	uuid := msg["uuid"].(string)
	cl.waitFor("message", typed("message"))
	jsonEq(t, "edit without uuid", ts.call("PATCH", "/message", []map[string]any{{"channel": "room"}}, 422), `{"0": {"uuid": ["Missing data for required field."]}}`)
	edit := ts.call("PATCH", "/message", []map[string]any{{"uuid": uuid, "channel": "room", "user": "carol", "message": map[string]any{"text": "hello (edited)"}, "timestamp": "2020-01-02T03:04:05"}}, 200).([]any)[0].(map[string]any)
	if edit["edited"] == nil {
		t.Fatalf("edited not filled in: %v", edit)
	}
	got := cl.waitFor("edit", typed("message:edit"))
	if _, ok := got["catchup"]; ok || got["channel"] != "room" || got["uuid"] != uuid || got["user"] != "carol" || got["edited"] != edit["edited"] {
		t.Fatalf("edit frame %v", got)
	}
	for _, k := range []string{"pm_users", "exclude_users", "no_history"} {
		if _, ok := got[k]; ok {
			t.Fatalf("delivery key %s in %v", k, got)
		}
	}
	hist := ts.post("/info", nil)["channels"].(map[string]any)["room"].(map[string]any)["history"].([]any)
	h := hist[0].(map[string]any)
	if h["user"] != "carol" || h["message"].(map[string]any)["text"] != "hello (edited)" || h["edited"] != edit["edited"] || h["timestamp"] != "2020-01-02T03:04:05" {
		t.Fatalf("history not edited: %v", h)
	}
	jsonEq(t, "delete []", ts.call("DELETE", "/message", []any{}, 200), `[]`)
	jsonEq(t, "delete with an unknown key", ts.call("DELETE", "/message", []map[string]any{{"uuid": uuid, "user": "x"}}, 422), `{"0": {"user": ["Unknown field."]}}`)
	ts.call("DELETE", "/message", []map[string]any{{"uuid": uuid, "channel": "room"}}, 200)
	del := cl.waitFor("delete", typed("message:delete"))
	jsonEq(t, "delete frame", del, fmt.Sprintf(`{"type": "message:delete", "uuid": %q, "channel": "room"}`, uuid))
	jsonEq(t, "history after delete", ts.post("/info", nil)["channels"].(map[string]any)["room"].(map[string]any)["history"], `[]`)
}

func TestChannelConfig(t *testing.T) {
	ts := newTestServer(t, nil)
	jsonEq(t, "{}", ts.post("/channel_config", map[string]any{}), `{"channels": {}, "users": []}`)
	jsonEq(t, "a list", ts.call("POST", "/channel_config", []any{}, 422), `{"_schema": ["Invalid input type."]}`)
	jsonEq(t, "errors not keyed by channel", ts.call("POST", "/channel_config", map[string]any{"x": map[string]any{"bogus": 1}}, 422), `{"bogus": ["Unknown field."]}`)
	full := map[string]any{"notify_presence": true, "store_history": true, "history_size": 42, "broadcast_presence_with_user_lists": true, "notify_state": true, "store_frames": false}
	res := ts.post("/channel_config", map[string]any{"news": full})
	news := res["channels"].(map[string]any)["news"].(map[string]any)
	jsonEq(t, "round trip", news["settings"], `{"notify_presence": true, "store_history": true, "history_size": 42, "broadcast_presence_with_user_lists": true, "notify_state": true, "store_frames": false}`)
	if news["total_users"] != 0.0 || len(news["users"].([]any)) != 0 {
		t.Fatalf("channel_config info %v", news)
	}
	// Reconfiguring resets the omitted keys (Channelstream does).
	res = ts.post("/channel_config", map[string]any{"news": map[string]any{"store_history": true}})
	jsonEq(t, "reset", res["channels"].(map[string]any)["news"].(map[string]any)["settings"], `{"notify_presence": false, "store_history": true, "history_size": 10, "broadcast_presence_with_user_lists": false, "notify_state": false, "store_frames": true}`)
}

func TestDisconnect(t *testing.T) {
	ts := newTestServer(t, nil)
	id := ts.connect(map[string]any{"username": "alice"})
	st, hdr, body := ts.do("GET", "/disconnect?conn_id="+newUUID(), nil, false)
	if st != 200 || string(body) != "false\n" || hdr.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("unknown: %d %q %v", st, body, hdr)
	}
	// The JS client: POST JSON and ?conn_id=, the body wins.
	st, _, body = ts.do("POST", "/disconnect?conn_id="+newUUID(), map[string]any{"conn_id": id}, false)
	if st != 200 || string(body) != "true\n" {
		t.Fatalf("disconnect: %d %q", st, body)
	}
	for _, tc := range []struct{ method, path, body, want string }{
		{"GET", "/disconnect?conn_id=x", "", `{"conn_id": ["Not a valid UUID."]}`},
		{"GET", "/disconnect", "", `{"conn_id": ["Field may not be null."]}`},
		{"POST", "/disconnect", `{}`, `{"conn_id": ["Field may not be null."]}`},
		{"POST", "/disconnect", `not json`, `{"_schema": ["Invalid JSON body."]}`},
	} {
		st, _, body := ts.do(tc.method, tc.path, tc.body, false)
		var v any
		json.Unmarshal(body, &v)
		if st != 422 {
			t.Fatalf("%s %s %s: %d %s", tc.method, tc.path, tc.body, st, body)
		}
		jsonEq(t, tc.path+" "+tc.body, v, tc.want)
	}
}
