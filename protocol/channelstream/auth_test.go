package channelstream

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestGuardOrderOfChecks(t *testing.T) {
	at := time.Unix(1700000000, 0)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	good := Sign("secret", "channelstream", at)
	for _, tc := range []struct {
		name    string
		allowed []string
		remote  string
		header  string
		query   string
		status  int
	}{
		{"allowed, signed header", []string{"127.0.0.1"}, "127.0.0.1:5000", good, "", 204},
		{"allowed, secret param", []string{"127.0.0.1"}, "127.0.0.1:5000", "", "?secret=" + good, 204},
		{"not allowed, even with a good signature", []string{"127.0.0.1"}, "10.0.0.7:5000", good, "", 403},
		{"not allowed wins over a bad signature", []string{"127.0.0.1"}, "10.0.0.7:5000", "bad", "", 403},
		{"no token", []string{"127.0.0.1"}, "127.0.0.1:5000", "", "", 403},
		{"bad signature", []string{"127.0.0.1"}, "127.0.0.1:5000", "channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsq", "", 401},
		{"0.0.0.0 allows any", []string{"0.0.0.0"}, "192.0.2.9:1", good, "", 204},
		{"a CIDR", []string{"10.0.0.0/8"}, "10.1.2.3:1", good, "", 204},
		{"IPv6 loopback", []string{"::1"}, "[::1]:1", good, "", 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var prefixes []netip.Prefix
			for _, s := range tc.allowed {
				if p, err := netip.ParsePrefix(s); err == nil {
					prefixes = append(prefixes, p)
				} else {
					a := netip.MustParseAddr(s)
					prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
				}
			}
			g := &Guard{Secret: "secret", Allowed: prefixes, MaxAge: time.Minute, Now: func() time.Time { return at }}
			r := httptest.NewRequest("POST", "/message"+tc.query, nil)
			r.RemoteAddr = tc.remote
			if tc.header != "" {
				r.Header.Set("X-Channelstream-Secret", tc.header)
			}
			w := httptest.NewRecorder()
			g.Wrap(ok).ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.status, w.Body.String())
			}
			if tc.status == 401 && w.Body.String() != "{\"request\":\"Bad Signature\"}\n" {
				t.Fatalf("body %q", w.Body.String())
			}
			if tc.status == 403 && w.Body.String() != "{\"code\":\"403 Forbidden\",\"message\":\"Access was denied to this resource.\",\"title\":\"Forbidden\"}\n" {
				t.Fatalf("body %q", w.Body.String())
			}
		})
	}
}
