package auth

// FuzzFromRequest: the token lookup of a request (?token=, the cookie,
// Authorization: Bearer) and its verification, on any query string,
// Cookie header and Authorization header. An error is always the
// unauthorized error with a known message; a principal is anonymous
// exactly when it has no user, and a token that is present never makes
// an anonymous principal unless it verified. Seed corpus:
// testdata/fuzz/FuzzFromRequest. JWT parsing itself is FuzzVerify.

import (
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
)

func FuzzFromRequest(f *testing.F) {
	f.Add("token="+sign(f, jwt.SigningMethodHS256, []byte(testSecret), claims("alice")), "", "")
	f.Add("", "switchyard_token="+sign(f, jwt.SigningMethodHS256, []byte(testSecret), claims("bob")), "")
	f.Add("", "", "Bearer "+sign(f, jwt.SigningMethodHS256, []byte(testSecret), claims("carol")))
	open := hmacVerifier(f)
	closed := newVerifier(f, config.Auth{JWT: config.JWT{HMACSecret: testSecret}, CookieName: "switchyard_token"})
	f.Fuzz(func(t *testing.T, query, cookie, authorization string) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/live", RawQuery: query}, Header: http.Header{}}
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		if authorization != "" {
			r.Header.Set("Authorization", authorization)
		}
		token, source := TokenFromRequest(r, "switchyard_token")
		if (token == "") != (source == "") {
			t.Fatalf("token %q from source %q", token, source)
		}
		for _, v := range []*Verifier{open, closed} {
			p, err := v.FromRequest(r)
			if err != nil {
				var se *switchyard.Error
				if !errors.As(err, &se) || se.Code != switchyard.CodeUnauthorized || !(messages[se.Message] || se.Message == msgAuthRequired) {
					t.Fatalf("FromRequest error %#v is not a known unauthorized error", err)
				}
				if token == "" && v == open {
					t.Fatalf("no token, anonymous allowed, but refused: %v", err)
				}
				continue
			}
			if p.Anonymous != (p.User == "") {
				t.Fatalf("principal %+v: Anonymous and User disagree", p)
			}
			if token != "" {
				if _, verr := v.Verify(token); verr != nil {
					t.Fatalf("token %q does not verify, yet FromRequest accepted it", token)
				}
			} else if v == closed {
				t.Fatal("no token and no anonymous access, yet accepted")
			}
		}
	})
}
