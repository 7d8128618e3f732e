package auth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Token sources reported by TokenFromRequest.
const (
	SourceQuery  = "query"  // the ?token= query parameter
	SourceCookie = "cookie" // the cookie named by config.Auth.CookieName
	SourceHeader = "header" // an Authorization: Bearer header
)

// Principal is who a request or connection is: the claims of a valid
// token, or anonymous. Its zero value is an anonymous principal without a
// token.
type Principal struct {
	// User is the token's user claim (config.JWT.UserClaim); "" for an
	// anonymous principal.
	User string
	// Info is the token's info claim as raw JSON, nil when absent.
	Info json.RawMessage
	// Expires is the token's exp claim; zero when the token does not
	// expire or there is no token.
	Expires time.Time
	// Channels are the channels the connection joins at connect.
	Channels []string
	// Topics are the signal topics of the connection's window (the
	// token's topics claim).
	Topics []string
	// Claims is the token's whole payload (a JSON object), nil without a
	// token.
	Claims json.RawMessage
	// Anonymous reports that User is empty: there was no token, or a valid
	// token without the user claim. Both are accepted only when
	// config.Auth.Anonymous is set.
	Anonymous bool
}

// FromRequest finds the token of r (the ?token= query parameter, then the
// configured cookie, then an Authorization: Bearer header; the first one
// found is the only one used) and returns the principal it stands for.
// Without a token the principal is anonymous when config.Auth.Anonymous
// is set, and otherwise the error is CodeUnauthorized "authentication
// required" (a *Rejection governed by auth.anonymous). A token that is
// present but invalid is always an error from Verify, never an anonymous
// principal. Callers answer an error with
// switchyard.HTTPStatus(switchyard.ErrorCode(err)) before any WebSocket
// upgrade.
func (v *Verifier) FromRequest(r *http.Request) (Principal, error) {
	token, _ := TokenFromRequest(r, v.cfg.CookieName)
	if token == "" {
		if !v.cfg.Anonymous {
			return Principal{}, v.reject(msgAuthRequired, "auth.anonymous")
		}
		return Principal{Anonymous: true}, nil
	}
	c, err := v.Verify(token)
	if err != nil {
		return Principal{}, err
	}
	return Principal{
		User:      c.User,
		Info:      c.Info,
		Expires:   c.Expires,
		Channels:  c.Channels,
		Topics:    c.Topics,
		Claims:    c.Raw,
		Anonymous: c.User == "",
	}, nil
}

// TokenFromRequest returns the raw token of r and where it came from
// (SourceQuery, SourceCookie or SourceHeader), or "", "" when r has none.
// It looks at the ?token= query parameter, then the cookie cookieName
// (skipped when cookieName is ""), then an Authorization header with the
// Bearer scheme (case-insensitive, RFC 6750); empty values count as
// absent. It never reads the request body.
func TokenFromRequest(r *http.Request, cookieName string) (token, source string) {
	if r.URL != nil && r.URL.RawQuery != "" {
		if t := r.URL.Query().Get("token"); t != "" {
			return t, SourceQuery
		}
	}
	if cookieName != "" {
		if c, err := r.Cookie(cookieName); err == nil && c.Value != "" {
			return c.Value, SourceCookie
		}
	}
	if scheme, t, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if t = strings.TrimSpace(t); t != "" {
			return t, SourceHeader
		}
	}
	return "", ""
}

// RedactURL returns the escaped path of u without its query (which may
// hold a token) or fragment, for logs; "" when u is nil.
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.EscapedPath()
}
