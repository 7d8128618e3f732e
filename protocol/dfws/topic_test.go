package dfws

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchyardhq/switchyard"
)

// The vectors of the spec (bindings-signals.md §B.4), verified there
// against df_websockets' test_consumers.py: set_websocket_topics(wi,
// "test", 100) for window key test_key, and USER pk 1 of auth.User.
func TestTopicVectors(t *testing.T) {
	for _, tc := range []struct {
		topic, group string
	}{
		{WindowTopic("test_key"), "fea736b153fc5c81b4d5002610f6c8374a5677cdce3b72245a4c32db5740c8f0"},
		{BroadcastTopic, "7e8c980efe5bc654f4eae9b110014bcb3cb1a892a0eb70092abec016072eeb2d"},
		{must(t, `"test"`), "fee2382dc609c3d54f5b0295507e8f85d52c0ba3e4f64ff8cabf373331efb7bd"},
		{must(t, `100`), "f6728284c836a3ebc25a6dc85847b147961a0934d10e2950c3e8f92936f10865"},
		{UserTopic("auth.user", "1"), "af1d3cef7ff35aa63e3e3828a2c174e93d0c624017e38c3f437cb9605abca828"},
		{must(t, `{"model": "auth.user", "pk": 1}`), "af1d3cef7ff35aa63e3e3828a2c174e93d0c624017e38c3f437cb9605abca828"},
	} {
		if got := Group(tc.topic); got != tc.group {
			t.Errorf("Group(%q) = %s, want %s", tc.topic, got, tc.group)
		}
	}
	if got := must(t, `"test"`); got != "-str.90a3ed9e32b2aaf4c61c410eb925426119e1a9dc53d4286ade99a809" {
		t.Errorf("str topic %q", got)
	}
}

func must(t *testing.T, v string) string {
	t.Helper()
	s, err := Topic(json.RawMessage(v))
	if err != nil {
		t.Fatalf("Topic(%s): %v", v, err)
	}
	return s
}

// Each form against what Python computes (python3: hashlib.sha224,
// hash()).
func TestTopicForms(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"room1"`, "-str." + sha224([]byte("room1"))},
		{`"é"`, "-str.33dd9448e5538d16ddc6df32dd7f16240cac6cb5238c1c22cb33ae66"},
		{`"-broadcast"`, "-str." + sha224([]byte("-broadcast"))}, // a str, never a constant
		{`0`, "-int.0"},
		{`-1`, "-int.-2"}, // Python: hash(-1) == -2
		{`2305843009213693951`, "-int.0"},
		{`2305843009213693952`, "-int.1"},
		{`-2305843009213693952`, "-int.-2"},
		{`1000000000000000000000000000000`, "-int.465258685558744706"},
		{`-1000000000000000000000000000000`, "-int.-465258685558744706"},
		{`true`, "-bool.1"},
		{`false`, "-bool.0"},
		{`{"model": "app.thing", "pk": 3}`, "-app.thing.3"},
		{`{"model": "app.thing", "pk": "a-b"}`, "-app.thing.a-b"},
		{`{"model": "app.thing", "pk": null}`, "-app.thing.0"},
		{`{"model": "app.thing", "pk": 0}`, "-app.thing.0"},
		{`{"model": "app.thing", "pk": ""}`, "-app.thing.0"},
		{`{"model": "app.thing"}`, "-app.thing.0"},
		{`{"session": "abc"}`, "-session.abc"},
		{`{"class": "Thing"}`, "-Thing"},
		{`{"topic": "-str.xyz"}`, "-str.xyz"},
		{` "x" `, "-str." + sha224([]byte("x"))},
	} {
		got, err := Topic(json.RawMessage(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("Topic(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestTopicRefusals(t *testing.T) {
	for _, in := range []string{``, `null`, `1.5`, `1e3`, `[1]`, `{}`, `{"model": "thing", "pk": 1}`, `{"model": "a.b", "pk": 1.5}`,
		`{"model": "a.b", "pk": [1]}`, `{"model": "a.b", "pk": 1, "x": 2}`, `{"session": ""}`, `{"class": "a.b"}`, `{"topic": "raw"}`,
		`{"topic": 1}`, `{"other": 1}`, `"unterminated`, `{bad`} {
		_, err := Topic(json.RawMessage(in))
		if switchyard.ErrorCode(err) != switchyard.CodeBadRequest {
			t.Errorf("Topic(%s): %v, want a bad request", in, err)
		}
	}
}

func FuzzTopic(f *testing.F) {
	for _, s := range []string{`"room"`, `100`, `-1`, `{"model": "a.b", "pk": 1}`, `{"topic": "-x"}`, `null`, `{"session": "k"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := Topic(json.RawMessage(in))
		if err != nil {
			if switchyard.ErrorCode(err) != switchyard.CodeBadRequest {
				t.Fatalf("Topic(%q): %v", in, err)
			}
			return
		}
		if !strings.HasPrefix(got, "-") {
			t.Fatalf("Topic(%q) = %q: a topic starts with -", in, got)
		}
	})
}
