package binding

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseFrame(t *testing.T) {
	for _, c := range []struct {
		in                               string
		event, pure, stream, action, uid string
		data                             string
		problem                          string
	}{
		{in: `{"event": "app.User.retrieve#5763", "data": {}}`, event: "app.User.retrieve#5763", pure: "app.User.retrieve", stream: "app.User", action: "retrieve", uid: "5763", data: `{}`},
		{in: `{"event": "a.b.c.search # x#y ", "data": [1]}`, event: "a.b.c.search # x#y ", pure: "a.b.c.search", stream: "a.b.c", action: "search", uid: "x#y", data: `[1]`},
		{in: `{"data": {"id": 1}}`, event: "error", pure: "error", action: "error", data: `{"id": 1}`},
		{in: `{"event": "x.y", "data": "str"}`, event: "x.y", pure: "x.y", stream: "x", action: "y", data: `{}`},
		{in: `{"event": "x.y", "data": null}`, event: "x.y", pure: "x.y", stream: "x", action: "y", data: `{}`},
		{in: `{"event": "x.y#"}`, event: "x.y#", pure: "x.y", stream: "x", action: "y", data: `{}`},
		{in: `not json`, problem: "invalid frame"},
		{in: `[]`, problem: "invalid frame"},
		{in: `null`, problem: "invalid frame"},
		{in: `{"event": 1}`, problem: "event must be a string"},
		{in: `{"event": null}`, problem: "event must be a string"},
	} {
		r, problem := parseFrame([]byte(c.in))
		if c.problem != "" {
			if !strings.Contains(problem, c.problem) || r != nil {
				t.Errorf("%s: %v %q, want problem %q", c.in, r, problem, c.problem)
			}
			continue
		}
		if problem != "" || r.Event != c.event || r.PureEvent != c.pure || r.Stream != c.stream || r.Action != c.action || r.UID != c.uid || string(r.Data) != c.data {
			t.Errorf("%s: %+v %q", c.in, r, problem)
		}
	}
}

func TestPythonConversions(t *testing.T) {
	for in, want := range map[string]int64{`5`: 5, `5.9`: 5, `-2.5`: -2, `"12"`: 12, `" 7 "`: 7, `true`: 1, `false`: 0} {
		if got, err := pyInt(json.RawMessage(in)); err != nil || got != want {
			t.Errorf("int(%s) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{`"x"`: "ValueError", `""`: "ValueError", `null`: "TypeError", `[1]`: "'list'", `{}`: "'dict'", `1e300`: "OverflowError"} {
		if _, err := pyInt(json.RawMessage(in)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("int(%s): %v, want %s", in, err, msg)
		}
	}
	for in, want := range map[string]bool{`null`: true, `0`: true, `0.0`: true, `""`: true, `[]`: true, `{}`: true, `false`: true, `1`: false, `"0"`: false, `[0]`: false, `true`: false} {
		if pyFalsy(json.RawMessage(in)) != want {
			t.Errorf("falsy(%s) != %v", in, want)
		}
		if in != "" && truthy(json.RawMessage(in)) == want {
			t.Errorf("truthy(%s) == %v", in, want)
		}
	}
	for in, want := range map[string]string{"username": "Username", "first_name": "First name", "élan": "Élan"} {
		if got := label(in); got != want {
			t.Errorf("label(%s) = %s", in, got)
		}
	}
	for in, want := range map[string]int64{`5`: 5, `"6"`: 6, `7.0`: 7} {
		if got, err := parsePK(json.RawMessage(in)); err != nil || got != want {
			t.Errorf("pk %s: %d %v", in, got, err)
		}
	}
	for _, in := range []string{`"abc"`, `5.5`, `true`, `{}`, `[1]`} {
		if _, err := parsePK(json.RawMessage(in)); err == nil || !strings.HasPrefix(err.Error(), "ValueError: Field 'id' expected a number") {
			t.Errorf("pk %s: %v", in, err)
		}
	}
	if g := GroupChannel("user.a b#c"); g != "$binding:user.a%20b%23c" {
		t.Errorf("GroupChannel escapes: %s", g)
	}
}

// FuzzParseFrame: any bytes give a request or a problem, never a panic,
// and a request's parts are consistent.
func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{`{"event": "app.User.retrieve#1", "data": {}}`, `{"data": []}`, `{"event": "#"}`, `not json`, `{"event": "..#.."}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, problem := parseFrame(data)
		if (r == nil) == (problem == "") {
			t.Fatalf("request %v and problem %q", r, problem)
		}
		if r == nil {
			return
		}
		if strings.Contains(r.PureEvent, "#") || (r.Stream != "" && r.Stream+"."+r.Action != r.PureEvent) || !json.Valid(r.Data) {
			t.Fatalf("inconsistent request %+v", r)
		}
	})
}

// FuzzPyInt: any JSON value converts or fails with a Python-style error.
func FuzzPyInt(f *testing.F) {
	for _, s := range []string{`1`, `"2"`, `1e400`, `-0`, `"-"`, `[]`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) {
			return
		}
		if _, err := pyInt(json.RawMessage(s)); err != nil && !strings.Contains(err.Error(), "Error: ") {
			t.Fatalf("int(%s): %v", s, err)
		}
		parsePK(json.RawMessage(s))
	})
}
