package dashboard

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func withCookie(value string) *http.Request {
	r, _ := http.NewRequest("GET", "/dashboard/", nil)
	r.AddCookie(&http.Cookie{Name: sessionCookie, Value: value})
	return r
}

// A session lives session_ttl and no longer; its cookie's value is not
// what the server keeps; the oldest sessions make room for new ones.
func TestSessions(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	ss := newSessions(time.Hour, c.now)
	s, value := ss.start()
	if len(value) < 40 || s.csrf == "" || strings.Contains(s.csrf, value) {
		t.Fatalf("token %q, csrf %q", value, s.csrf)
	}
	for k := range ss.m {
		if strings.Contains(string(k[:]), value) {
			t.Fatal("the cookie's value is kept")
		}
	}
	if ss.get(withCookie(value)) != s {
		t.Fatal("the session is not found")
	}
	if ss.get(withCookie(value+"x")) != nil || ss.get(withCookie("")) != nil {
		t.Fatal("another value finds the session")
	}
	c.t = c.t.Add(time.Hour - time.Second)
	if ss.get(withCookie(value)) != s {
		t.Fatal("the session expired early")
	}
	c.t = c.t.Add(time.Second)
	if ss.get(withCookie(value)) != nil || ss.len() != 0 {
		t.Fatal("the session outlived session_ttl")
	}
	first, v1 := ss.start()
	for range maxSessions {
		c.t = c.t.Add(time.Millisecond)
		ss.start()
	}
	if ss.len() != maxSessions || ss.get(withCookie(v1)) != nil || first == nil {
		t.Fatalf("%d sessions kept; the oldest must make room", ss.len())
	}
	last, v2 := ss.start()
	ss.end(last)
	if ss.get(withCookie(v2)) != nil {
		t.Fatal("an ended session is still valid")
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                       Prefix,
		"/dashboard/queues":      "/dashboard/queues",
		"/dashboard/channel?x=1": "/dashboard/channel?x=1",
		"//evil.example":         Prefix,
		"/dashboard/\\evil":      Prefix,
		"https://evil.example/":  Prefix,
		"/other":                 Prefix,
		"/dashboard/\r\nX: y":    Prefix,
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// Rates are per second over the time between samples; the ring keeps
// the newest, oldest first.
func TestSampler(t *testing.T) {
	s := newSampler(3)
	t0 := time.Unix(1_800_000_000, 0)
	s.add(t0, counters{in: 10, out: 20, pubs: 1, deliveries: 5}, 1, 1, 1)
	got := s.add(t0.Add(2*time.Second), counters{in: 30, out: 60, pubs: 5, deliveries: 25}, 2, 1, 3)
	if got.MessagesIn != 10 || got.MessagesOut != 20 || got.Publications != 2 || got.Deliveries != 10 || got.Connections != 2 || got.Channels != 3 {
		t.Fatalf("sample %+v", got)
	}
	s.add(t0.Add(3*time.Second), counters{in: 30, out: 60, pubs: 5, deliveries: 25}, 2, 1, 3)
	s.add(t0.Add(4*time.Second), counters{in: 0, out: 0, pubs: 0, deliveries: 0}, 0, 0, 0) // counters restarted
	all := s.samples()
	if len(all) != 3 || !all[0].At.Equal(t0.Add(2*time.Second)) || !s.latest().At.Equal(t0.Add(4*time.Second)) || s.latest().MessagesIn != 0 {
		t.Fatalf("ring %+v", all)
	}
	if p := sparkPath(all, "connections", 120, 32); !strings.HasPrefix(p, "M0.0 1.0") || !strings.Contains(p, "L120.0 31.0") {
		t.Fatalf("chart path %q", p)
	}
}
