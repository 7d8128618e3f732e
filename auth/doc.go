// Package auth holds client authentication: the Verifier that checks JSON
// Web Tokens against the configured key, the Claims a valid token carries,
// and the Principal that a request or WebSocket connection runs as,
// extracted from the request before the upgrade.
//
// # Tokens
//
// A token is a JWT (RFC 7519) verified with exactly one key, the one in
// config.JWT: an HMAC secret (HS256, HS384, HS512) or a PEM public key
// file holding an RSA key (RS256/384/512, PS256/384/512), an ECDSA key
// (ES256 for P-256, ES384 for P-384, ES512 for P-521) or an Ed25519 key
// (EdDSA). Only the algorithms of the configured key are accepted, so a
// token cannot pick its own verification (no "alg" confusion, no "none").
// With neither key configured every token is rejected.
//
// The claims used are the user claim (config.JWT.UserClaim, sub by
// default: the user id, a string or an integer such as simplejwt's
// user_id 42, which becomes "42"; empty or absent is an anonymous user,
// refused unless config.Auth.Anonymous), exp, nbf and iat (checked with a
// leeway of [Leeway] for clock skew), iss and aud (checked only when
// config.JWT.Issuer or config.JWT.Audience is set), info (any JSON value,
// passed through raw to presence), channels (channel names the
// connection joins at connect) and topics (the signal topics of its
// window). The whole payload is kept as raw JSON (Claims.Raw,
// Principal.Claims) for rules on other claims: signal access
// "claim:<name>" and "perm:<p>" (the perms claim).
//
// # Requests
//
// A request carries its token in the ?token= query parameter, in the cookie
// named by config.Auth.CookieName, or in an Authorization: Bearer header,
// looked for in that order; only the first one found is used. A token that
// is present but invalid is always an error, never a fallback to anonymous.
//
// # Errors and logs
//
// Every rejection is a [*Rejection]: a *switchyard.Error with code
// switchyard.CodeUnauthorized and a short fixed message ("token expired",
// "invalid token signature", "malformed token", …) that is safe to send to
// the client, since it never contains the token or a piece of it, and the
// configuration key that governs the failed check ([ConfigKey]) for the
// operator's log. Tokens travel in URLs, so log request URLs through
// [RedactURL].
//
// # Concurrency
//
// A Verifier is immutable once built and safe for concurrent use. Key files
// are read only by [NewVerifier]; rotating a key means building a new
// Verifier. Permission checks on channels and resources are left to the
// packages that own them.
package auth
