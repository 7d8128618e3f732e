package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
)

// Leeway is the clock skew tolerated when checking the exp, nbf and iat
// claims: a token is accepted until Leeway after its exp, and from Leeway
// before its nbf and iat. Five seconds covers NTP-synchronised hosts and
// the time between issuing a token and connecting with it, without
// noticeably lengthening short-lived tokens.
const Leeway = 5 * time.Second

// MaxTokenSize is the length in bytes of the longest token Verify looks at;
// longer ones are rejected as malformed before any decoding. Browsers cap
// cookies at about 4 KiB, so real tokens are far smaller.
const MaxTokenSize = 16 << 10

// minRSABits is the smallest RSA public key NewVerifier accepts.
const minRSABits = 2048

// Client-safe messages of the errors Verify and FromRequest return.
const (
	msgAuthRequired   = "authentication required"
	msgNotAccepted    = "tokens are not accepted"
	msgMalformed      = "malformed token"
	msgAlgorithm      = "token algorithm not accepted"
	msgSignature      = "invalid token signature"
	msgExpired        = "token expired"
	msgNotValidYet    = "token not valid yet"
	msgIssuedInFuture = "token issued in the future"
	msgIssuer         = "invalid token issuer"
	msgAudience       = "invalid token audience"
	msgInvalid        = "invalid token"
)

// Rejection is a refused token or request: a client-safe *switchyard.Error
// with code switchyard.CodeUnauthorized (errors.As reaches it), and the
// configuration key that governs the check that failed, for the operator's
// log. Verify and FromRequest return their errors as a *Rejection.
type Rejection struct {
	// Err is what the client is told: code unauthorized and a short
	// message that never contains the token.
	Err *switchyard.Error
	// Key is the configuration key whose value decided the refusal
	// ("auth.anonymous", "auth.jwt.hmac_secret", "auth.jwt.user_claim",
	// …), or "" when the token itself is at fault (expired, malformed).
	Key string
}

func (r *Rejection) Error() string { return r.Err.Error() }

// Unwrap returns the client-facing error.
func (r *Rejection) Unwrap() error { return r.Err }

// ConfigKey returns the configuration key that governs the check behind a
// refusal returned by Verify or FromRequest, or "" when there is none.
func ConfigKey(err error) string {
	var r *Rejection
	if errors.As(err, &r) {
		return r.Key
	}
	return ""
}

// Verifier checks tokens against the key of a config.Auth. Build it once
// at start-up with NewVerifier; it is safe for concurrent use.
type Verifier struct {
	cfg     config.Auth
	key     any      // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey; nil = no JWT accepted
	keyName string   // the config key of key
	methods []string // the algorithms of key
	parser  *jwt.Parser
	claim   string // the claim holding the user id
}

// NewVerifier returns a Verifier for cfg. It reads and parses
// cfg.JWT.PublicKeyFile here, so a missing or unusable key file fails
// start-up with an error naming the file. cfg.JWT.HMACSecret must be at
// least 16 bytes; setting both it and PublicKeyFile is an error. With
// neither set, the Verifier rejects every token and only anonymous
// clients (when cfg.Anonymous) get in. An empty cfg.CookieName disables
// the cookie (config.Default sets "switchyard_token").
func NewVerifier(cfg config.Auth) (*Verifier, error) {
	v := &Verifier{cfg: cfg, claim: cfg.JWT.UserClaim, keyName: "auth.jwt.hmac_secret"}
	if v.claim == "" {
		v.claim = "sub"
	}
	j := cfg.JWT
	switch {
	case j.HMACSecret != "" && j.PublicKeyFile != "":
		return nil, errors.New("auth: auth.jwt.hmac_secret and auth.jwt.public_key_file are mutually exclusive")
	case j.HMACSecret != "":
		if len(j.HMACSecret) < 16 {
			return nil, fmt.Errorf("auth: auth.jwt.hmac_secret must be at least 16 bytes long (got %d)", len(j.HMACSecret))
		}
		v.key = []byte(j.HMACSecret)
		v.methods = []string{"HS256", "HS384", "HS512"}
	case j.PublicKeyFile != "":
		key, methods, err := loadPublicKey(j.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth: auth.jwt.public_key_file %q: %w", j.PublicKeyFile, err)
		}
		v.key, v.methods, v.keyName = key, methods, "auth.jwt.public_key_file"
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.methods),
		jwt.WithLeeway(Leeway),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	}
	if j.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(j.Issuer))
	}
	if j.Audience != "" {
		opts = append(opts, jwt.WithAudience(j.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// loadPublicKey reads a PEM file and returns its public key and the JWT
// algorithms that key verifies. It accepts PKIX "PUBLIC KEY" blocks, PKCS #1
// "RSA PUBLIC KEY" blocks and X.509 certificates, and skips other blocks
// before the first of these; a private key is refused rather than used.
func loadPublicKey(path string) (any, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in the caller's message
		}
		return nil, nil, err
	}
	var pub any
	for rest, found := data, false; !found; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, nil, errors.New("no PEM public key or certificate block found")
		}
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			return nil, nil, fmt.Errorf("holds a private key (%s); give the public key only", block.Type)
		default:
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("parse %s block: %w", block.Type, err)
		}
		found = true
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, nil, fmt.Errorf("RSA key has %d bits, want at least %d", k.N.BitLen(), minRSABits)
		}
		return k, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return k, []string{"ES256"}, nil
		case elliptic.P384():
			return k, []string{"ES384"}, nil
		case elliptic.P521():
			return k, []string{"ES512"}, nil
		}
		return nil, nil, fmt.Errorf("ECDSA curve %s is not supported (want P-256, P-384 or P-521)", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return k, []string{"EdDSA"}, nil
	}
	return nil, nil, fmt.Errorf("unsupported key type %T (want RSA, ECDSA or Ed25519)", pub)
}

// Claims are the claims of a valid token that Switchyard uses.
type Claims struct {
	// User is the user claim (config.JWT.UserClaim, "sub" by default) as
	// a string: an integer claim is its decimal form ("42"). "" (absent,
	// null or empty) is an anonymous user, accepted only when
	// config.Auth.Anonymous is set.
	User string
	// Expires is the exp claim; the zero time means the token never
	// expires.
	Expires time.Time
	// Info is the info claim as raw JSON (any JSON value), passed through
	// to presence as is; nil when absent or null.
	Info json.RawMessage
	// Channels is the channels claim: names of channels the connection
	// joins at connect, server-side. Names are not checked here.
	Channels []string
	// Topics is the topics claim: the signal topics the connection's
	// window belongs to (see package signal).
	Topics []string
	// Raw is the whole verified payload (JSON object), for rules that
	// read other claims (signal access "claim:<name>" and "perm:<p>",
	// which reads the perms claim).
	Raw json.RawMessage
}

// Expired reports whether the claims' token is no longer valid at now,
// with the same Leeway as Verify: true from Leeway after Expires on, and
// never when Expires is zero. A connection uses it to notice that its
// token ran out after connecting.
func (c *Claims) Expired(now time.Time) bool {
	return !c.Expires.IsZero() && !now.Before(c.Expires.Add(Leeway))
}

// tokenClaims is the JSON shape of a token's payload.
type tokenClaims struct {
	jwt.RegisteredClaims
	Info     json.RawMessage `json:"info"`
	Channels []string        `json:"channels"`
	Topics   []string        `json:"topics"`

	// userClaim names the claim that holds the user id; user is its raw
	// JSON value (nil when absent). Set by UnmarshalJSON only.
	userClaim string
	user      json.RawMessage
}

// UnmarshalJSON reads a token's payload. The user claim is kept raw, to
// accept integers as well as strings, and sub is never decoded as the
// registered string claim: many issuers put a number there.
func (tc *tokenClaims) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if m == nil {
		return errors.New("claims must be a JSON object")
	}
	tc.user = m[tc.userClaim]
	tc.Info = m["info"]
	tc.Channels, tc.Topics = nil, nil
	if raw, ok := m["channels"]; ok {
		if err := json.Unmarshal(raw, &tc.Channels); err != nil {
			return fmt.Errorf("channels: %w", err)
		}
	}
	if raw, ok := m["topics"]; ok {
		if err := json.Unmarshal(raw, &tc.Topics); err != nil {
			return fmt.Errorf("topics: %w", err)
		}
	}
	for _, name := range []string{"sub", "info", "channels", "topics", tc.userClaim} {
		delete(m, name)
	}
	rest, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tc.RegisteredClaims = jwt.RegisteredClaims{}
	return json.Unmarshal(rest, &tc.RegisteredClaims)
}

// userID reads a user claim's raw value: a string, or an integer written
// without fraction or exponent. ok is false for any other JSON value.
func userID(raw json.RawMessage) (user string, ok bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	if raw[0] == '"' {
		return user, json.Unmarshal(raw, &user) == nil
	}
	digits := strings.TrimPrefix(string(raw), "-")
	if digits == "" || len(digits) > 64 || strings.TrimLeft(digits, "0123456789") != "" {
		return "", false
	}
	return string(raw), true
}

// Verify checks token and returns its claims. It accepts only the
// algorithms of the configured key, checks the signature, exp, nbf and iat
// (each with Leeway), iss and aud when configured, and that the user claim
// is a string or an integer, present unless anonymous clients are allowed.
// Any failure is a *Rejection whose *switchyard.Error has code
// switchyard.CodeUnauthorized and one of a fixed set of client-safe
// messages: "malformed token", "token algorithm not accepted", "invalid
// token signature", "token expired", "token not valid yet", "token issued
// in the future", "invalid token issuer", "invalid token audience",
// "invalid token", `token has no "sub" claim (the user id)`, `claim "sub"
// must be a string or an integer`, or "tokens are not accepted" when no
// key is configured. The message never contains the token.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if v.key == nil {
		return nil, v.reject(msgNotAccepted, "auth.jwt.hmac_secret")
	}
	if token == "" || len(token) > MaxTokenSize {
		return nil, v.reject(msgMalformed, "")
	}
	tc := tokenClaims{userClaim: v.claim}
	t, err := v.parser.ParseWithClaims(token, &tc, v.keyFunc)
	if err != nil {
		msg, key := v.message(err, t, &tc)
		return nil, v.reject(msg, key)
	}
	user, ok := userID(tc.user)
	if !ok {
		return nil, v.reject(fmt.Sprintf("claim %q must be a string or an integer", v.claim), "auth.jwt.user_claim")
	}
	if user == "" && !v.cfg.Anonymous {
		return nil, v.reject(fmt.Sprintf("token has no %q claim (the user id)", v.claim), "auth.jwt.user_claim")
	}
	c := &Claims{User: user, Channels: tc.Channels}
	c.Topics = tc.Topics
	if parts := strings.Split(token, "."); len(parts) == 3 {
		// The payload the signature covers; the parser decoded it already.
		if raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "=")); err == nil && json.Valid(raw) {
			c.Raw = raw
		}
	}
	if tc.ExpiresAt != nil {
		c.Expires = tc.ExpiresAt.Time
	}
	if len(tc.Info) > 0 && string(tc.Info) != "null" {
		c.Info = tc.Info
	}
	return c, nil
}

// keyFunc returns the configured key. The parser has already checked that
// the token's alg is one of v.methods, so the key always fits it.
func (v *Verifier) keyFunc(*jwt.Token) (any, error) { return v.key, nil }

// message maps a jwt error to a client-safe message and the config key
// governing the check. Checks go from the token's shape to its claims, so
// the most basic fault is reported.
func (v *Verifier) message(err error, t *jwt.Token, tc *tokenClaims) (msg, key string) {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return msgMalformed, ""
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// no alg, or an alg the library does not know
		return msgAlgorithm, v.keyName
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if t == nil || t.Method == nil || !slices.Contains(v.methods, t.Method.Alg()) {
			// WithValidMethods refused the alg before any verification
			return msgAlgorithm, v.keyName
		}
		return msgSignature, v.keyName
	case errors.Is(err, jwt.ErrTokenExpired):
		return msgExpired, ""
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return msgNotValidYet, ""
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return msgIssuedInFuture, ""
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return msgIssuer, "auth.jwt.issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return msgAudience, "auth.jwt.audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// iss or aud is configured and the token lacks it
		if v.cfg.JWT.Issuer != "" && tc.Issuer == "" {
			return msgIssuer, "auth.jwt.issuer"
		}
		return msgAudience, "auth.jwt.audience"
	}
	return msgInvalid, ""
}

// reject returns a refusal with message msg, governed by config key key.
func (v *Verifier) reject(msg, key string) *Rejection {
	return &Rejection{Err: &switchyard.Error{Code: switchyard.CodeUnauthorized, Message: msg}, Key: key}
}
