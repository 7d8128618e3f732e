// Package wiretest holds checks that tests apply to everything a wire
// sends: the HTTP bodies and WebSocket frames of every protocol.
// It is imported by tests only.
package wiretest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// collections are the keys that hold a list or a map on some wire
// (Switchyard's native protocol and server API, DCRF, DRF, Channelstream):
// empty, they are [] or {}, never null. JavaScript clients iterate them
// without a guard (Channelstream's client does channels.forEach), so a
// null breaks them.
var collections = map[string]bool{
	"channels": true, "channels_info": true, "users": true, "history": true,
	"connections": true, "subscribed_to": true, "unsubscribed_from": true,
	"pm_users": true, "exclude_users": true, "public_keys": true,
	"changed_state": true, "user_state": true, "public_state": true,
	"publications": true, "clients": true, "results": true, "errors": true,
}

// NullCollections returns the paths of the collection keys whose value is
// null anywhere in the JSON document body (nil when there is none, or when
// body is not JSON: other checks report that).
func NullCollections(body []byte) []string {
	if !bytes.Contains(body, []byte("null")) {
		return nil // the common case, checked without decoding
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	var out []string
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := path + "." + k
				if e == nil && collections[k] {
					out = append(out, strings.TrimPrefix(p, "."))
				}
				walk(e, p)
			}
		case []any:
			for i, e := range x {
				walk(e, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(v, "")
	return out
}

// TB is the part of testing.TB the checks use.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// CheckNoNullCollections fails the test when body holds a collection key
// whose value is null.
func CheckNoNullCollections(tb TB, what string, body []byte) {
	tb.Helper()
	if paths := NullCollections(body); len(paths) > 0 {
		tb.Errorf("%s: %v null instead of an empty list or object: %s", what, paths, body)
	}
}
