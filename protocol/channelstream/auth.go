package channelstream

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// Guard applies Channelstream's checks to the signed API (spec §2.1), in
// its order: the caller's address must be allowed (else 403), a token
// must be present in the x-channelstream-secret header or the secret
// parameter (else 403), and it must verify (else 401
// {"request": "Bad Signature"}).
type Guard struct {
	Secret string
	// Allowed are the addresses (as prefixes) that may call; 0.0.0.0 (or
	// 0.0.0.0/0) allows any, as in Channelstream.
	Allowed []netip.Prefix
	// MaxAge is the signature's lifetime (Channelstream: 60 s); 0 turns
	// the age check off (validate_requests = false).
	MaxAge time.Duration
	// MaxSkew is how far in the future a timestamp may be while the age
	// is checked (0: DefaultMaxClockSkew; negative: none).
	MaxSkew time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Wrap guards next.
func (g *Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status, body := g.Check(r); status != 0 {
			writeJSON(w, status, body)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// forbidden is the body of a 403: the JSON page of the WebOb exception
// Channelstream answers with.
var forbidden = map[string]string{"code": "403 Forbidden", "message": "Access was denied to this resource.", "title": "Forbidden"}

// badSignature is the body of a 401.
var badSignature = map[string]string{"request": "Bad Signature"}

// Check applies the checks to a request: status 0 when it passes, else
// the status and body to answer with.
func (g *Guard) Check(r *http.Request) (int, any) {
	if !g.addressAllowed(r.RemoteAddr) {
		return http.StatusForbidden, forbidden
	}
	token := requestToken(r)
	if token == "" {
		return http.StatusForbidden, forbidden
	}
	if !g.valid(token) {
		return http.StatusUnauthorized, badSignature
	}
	return 0, nil
}

// valid verifies a token.
func (g *Guard) valid(token string) bool {
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	skew := g.MaxSkew
	switch {
	case skew == 0:
		skew = DefaultMaxClockSkew
	case skew < 0:
		skew = 0
	}
	_, err := VerifySkew(g.Secret, token, g.MaxAge, skew, now())
	return err == nil
}

// requestToken is the x-channelstream-secret header, else the secret
// parameter of the query string.
func requestToken(r *http.Request) string {
	if t := r.Header.Get("x-channelstream-secret"); t != "" {
		return t
	}
	return r.URL.Query().Get("secret")
}

// addressAllowed matches the direct peer's address (no X-Forwarded-For,
// as in Channelstream).
func (g *Guard) addressAllowed(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range g.Allowed {
		if p.Addr().IsUnspecified() && p.Addr().Is4() {
			return true // "0.0.0.0": any address
		}
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
