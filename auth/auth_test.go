package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
)

const testSecret = "0123456789abcdef-test-secret"

// keys are the key pairs the tests sign with, generated once per test
// binary because RSA generation is slow under the race detector.
type keys struct {
	rsa   *rsa.PrivateKey
	ec    *ecdsa.PrivateKey
	ed    ed25519.PrivateKey
	rsaPE []byte // PEM of the RSA public key, used for the alg-confusion attack
}

var testKeys = sync.OnceValue(func() keys {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	_, dk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return keys{rsa: rk, ec: ek, ed: dk, rsaPE: pemPublicKey(&rk.PublicKey)}
})

// pemPublicKey encodes pub as a PKIX "PUBLIC KEY" PEM block.
func pemPublicKey(pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// writeFile writes data to a new file in a temporary directory and returns
// its path.
func writeFile(tb testing.TB, name string, data []byte) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// newVerifier builds a Verifier from cfg or fails the test.
func newVerifier(tb testing.TB, cfg config.Auth) *Verifier {
	tb.Helper()
	v, err := NewVerifier(cfg)
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// jwtConfig returns an Auth config with JWT j, anonymous clients allowed
// and the default cookie.
func jwtConfig(j config.JWT) config.Auth {
	return config.Auth{Anonymous: true, JWT: j, CookieName: "switchyard_token"}
}

func hmacVerifier(tb testing.TB) *Verifier {
	return newVerifier(tb, jwtConfig(config.JWT{HMACSecret: testSecret}))
}

// keyVerifier writes pub to a PEM file and builds a Verifier for it.
func keyVerifier(tb testing.TB, pub any) *Verifier {
	tb.Helper()
	path := writeFile(tb, "key.pem", pemPublicKey(pub))
	return newVerifier(tb, jwtConfig(config.JWT{PublicKeyFile: path}))
}

// sign signs claims with method and key.
func sign(tb testing.TB, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		tb.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// signRaw signs the exact header and payload JSON, so tests control every
// byte of the claims.
func signRaw(tb testing.TB, method jwt.SigningMethod, key any, header, payload string) string {
	tb.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := method.Sign(signing, key)
	if err != nil {
		tb.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

// claims returns registered claims for user expiring in an hour.
func claims(user string) jwt.RegisteredClaims {
	now := time.Now()
	return jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}
}

// wantUnauthorized checks that err is a CodeUnauthorized *switchyard.Error
// with message msg that contains neither token nor its parts.
func wantUnauthorized(tb testing.TB, err error, msg, token string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("got no error, want %q", msg)
	}
	var se *switchyard.Error
	if !errors.As(err, &se) {
		tb.Fatalf("error %v (%T) is not a *switchyard.Error", err, err)
	}
	if se.Code != switchyard.CodeUnauthorized {
		tb.Errorf("code = %q, want %q", se.Code, switchyard.CodeUnauthorized)
	}
	if se.Message != msg {
		tb.Errorf("message = %q, want %q", se.Message, msg)
	}
	if got := switchyard.HTTPStatus(switchyard.ErrorCode(err)); got != http.StatusUnauthorized {
		tb.Errorf("HTTP status = %d, want 401", got)
	}
	for _, part := range append(strings.Split(token, "."), token) {
		if len(part) >= 4 && strings.Contains(err.Error(), part) {
			tb.Errorf("error %q contains (part of) the token %q", err, part)
		}
	}
}

func TestVerifyValid(t *testing.T) {
	k := testKeys()
	hs := hmacVerifier(t)
	rs := keyVerifier(t, &k.rsa.PublicKey)
	es := keyVerifier(t, &k.ec.PublicKey)
	ed := keyVerifier(t, k.ed.Public())
	tests := []struct {
		name   string
		v      *Verifier
		method jwt.SigningMethod
		key    any
	}{
		{"HS256", hs, jwt.SigningMethodHS256, []byte(testSecret)},
		{"HS384", hs, jwt.SigningMethodHS384, []byte(testSecret)},
		{"HS512", hs, jwt.SigningMethodHS512, []byte(testSecret)},
		{"RS256", rs, jwt.SigningMethodRS256, k.rsa},
		{"RS512", rs, jwt.SigningMethodRS512, k.rsa},
		{"PS256", rs, jwt.SigningMethodPS256, k.rsa},
		{"ES256", es, jwt.SigningMethodES256, k.ec},
		{"EdDSA", ed, jwt.SigningMethodEdDSA, k.ed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := claims("alice")
			tok := sign(t, tt.method, tt.key, tokenClaims{RegisteredClaims: rc, Channels: []string{"news", "user:alice"}})
			c, err := tt.v.Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.User != "alice" {
				t.Errorf("User = %q, want alice", c.User)
			}
			if !c.Expires.Equal(rc.ExpiresAt.Time) {
				t.Errorf("Expires = %v, want %v", c.Expires, rc.ExpiresAt.Time)
			}
			if got := strings.Join(c.Channels, ","); got != "news,user:alice" {
				t.Errorf("Channels = %q", c.Channels)
			}
			if c.Info != nil {
				t.Errorf("Info = %s, want nil", c.Info)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	k := testKeys()
	hs := hmacVerifier(t)
	rs := keyVerifier(t, &k.rsa.PublicKey)
	es := keyVerifier(t, &k.ec.PublicKey)
	ed := keyVerifier(t, k.ed.Public())
	none := newVerifier(t, config.Auth{Anonymous: true})
	secret := []byte(testSecret)
	now := time.Now()
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }

	valid := sign(t, jwt.SigningMethodHS256, secret, claims("alice"))
	parts := strings.Split(valid, ".")
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin"}`))
	tampered := parts[0] + "." + forged + "." + parts[2]
	sig := []byte(parts[2])
	// Another base64url letter in the middle: still decodes, changes the MAC.
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	if sig[10] == parts[2][10] {
		t.Fatal("signature not changed")
	}
	badSig := parts[0] + "." + parts[1] + "." + string(sig)
	noneTok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("alice"))

	tests := []struct {
		name  string
		v     *Verifier
		token string
		msg   string
	}{
		{"expired", hs, sign(t, jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "a", ExpiresAt: at(-time.Minute)}), "token expired"},
		{"expired beyond leeway", hs, sign(t, jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{ExpiresAt: at(-Leeway - 2*time.Second)}), "token expired"},
		{"not yet valid", hs, sign(t, jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{NotBefore: at(time.Minute)}), "token not valid yet"},
		{"issued in the future", hs, sign(t, jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{IssuedAt: at(time.Minute)}), "token issued in the future"},
		{"wrong secret", hs, sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-16+bytes"), claims("alice")), "invalid token signature"},
		{"tampered payload", hs, tampered, "invalid token signature"},
		{"tampered signature", hs, badSig, "invalid token signature"},
		{"RS256 wrong key", rs, func() string {
			other, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			return sign(t, jwt.SigningMethodRS256, other, claims("alice"))
		}(), "invalid token signature"},
		{"alg none HMAC", hs, noneTok, "token algorithm not accepted"},
		{"alg none RSA", rs, noneTok, "token algorithm not accepted"},
		{"alg NONE raw", hs, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"NONE","typ":"JWT"}`, `{"sub":"a"}`), "token algorithm not accepted"},
		{"alg missing", hs, signRaw(t, jwt.SigningMethodHS256, secret, `{"typ":"JWT"}`, `{"sub":"a"}`), "token algorithm not accepted"},
		{"alg unknown", hs, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"XS256"}`, `{"sub":"a"}`), "token algorithm not accepted"},
		// The classic confusion: the attacker uses the (public) RSA key
		// bytes as an HMAC secret, hoping the server verifies HS256 with
		// the configured key.
		{"HS256 with RSA public key as secret", rs, sign(t, jwt.SigningMethodHS256, k.rsaPE, claims("admin")), "token algorithm not accepted"},
		{"HS256 with ECDSA public key as secret", es, sign(t, jwt.SigningMethodHS256, pemPublicKey(&k.ec.PublicKey), claims("admin")), "token algorithm not accepted"},
		{"RS256 when HMAC configured", hs, sign(t, jwt.SigningMethodRS256, k.rsa, claims("alice")), "token algorithm not accepted"},
		{"ES256 when Ed25519 configured", ed, sign(t, jwt.SigningMethodES256, k.ec, claims("alice")), "token algorithm not accepted"},
		{"EdDSA when ECDSA configured", es, sign(t, jwt.SigningMethodEdDSA, k.ed, claims("alice")), "token algorithm not accepted"},
		{"ES384 on a P-256 key", es, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"ES384"}`, `{"sub":"a"}`), "token algorithm not accepted"},
		{"no key configured", none, valid, "tokens are not accepted"},
		{"empty", hs, "", "malformed token"},
		{"garbage", hs, "not-a-token", "malformed token"},
		{"three dots", hs, "a.b.c", "malformed token"},
		{"four parts", hs, valid + ".x", "malformed token"},
		{"payload not JSON", hs, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, `not json`), "malformed token"},
		{"sub an object", hs, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, `{"sub":{"id":42}}`), `claim "sub" must be a string or an integer`},
		{"sub a fraction", hs, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, `{"sub":4.2}`), `claim "sub" must be a string or an integer`},
		{"sub an exponent", hs, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, `{"sub":4e2}`), `claim "sub" must be a string or an integer`},
		{"sub a boolean", hs, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, `{"sub":true}`), `claim "sub" must be a string or an integer`},
		{"payload a list", hs, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, `["sub"]`), "malformed token"},
		{"exp not a number", hs, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, `{"exp":"tomorrow"}`), "malformed token"},
		{"channels not a list", hs, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, `{"channels":"news"}`), "malformed token"},
		{"too large", hs, sign(t, jwt.SigningMethodHS256, secret, tokenClaims{Info: json.RawMessage(`"` + strings.Repeat("x", MaxTokenSize) + `"`)}), "malformed token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.v.Verify(tt.token)
			if c != nil {
				t.Errorf("got claims %+v, want nil", c)
			}
			wantUnauthorized(t, err, tt.msg, tt.token)
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	hs := hmacVerifier(t)
	secret := []byte(testSecret)
	now := time.Now()
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }
	tests := []struct {
		name   string
		claims jwt.RegisteredClaims
	}{
		{"exp just passed", jwt.RegisteredClaims{ExpiresAt: at(-time.Second)}},
		{"nbf just ahead", jwt.RegisteredClaims{NotBefore: at(2 * time.Second)}},
		{"iat just ahead", jwt.RegisteredClaims{IssuedAt: at(2 * time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := hs.Verify(sign(t, jwt.SigningMethodHS256, secret, tt.claims)); err != nil {
				t.Errorf("Verify: %v, want accepted within the %v leeway", err, Leeway)
			}
		})
	}
}

func TestVerifyClaims(t *testing.T) {
	hs := hmacVerifier(t)
	secret := []byte(testSecret)
	header := `{"alg":"HS256","typ":"JWT"}`
	tests := []struct {
		name     string
		payload  string
		user     string
		info     string // "" = nil
		channels []string
		expires  time.Time
	}{
		{name: "no sub is anonymous", payload: `{"info":{"name":"guest"}}`, info: `{"name":"guest"}`},
		{name: "empty sub", payload: `{"sub":""}`},
		{name: "info object kept raw", payload: `{"sub":"u1","info": {"name": "Ann",  "tags":[1, null, true]} }`, user: "u1", info: `{"name": "Ann",  "tags":[1, null, true]}`},
		{name: "info string", payload: `{"sub":"u1","info":"hello \u00e9"}`, user: "u1", info: `"hello \u00e9"`},
		{name: "info number", payload: `{"sub":"u1","info":12.50}`, user: "u1", info: `12.50`},
		{name: "info array", payload: `{"sub":"u1","info":[1,"a"]}`, user: "u1", info: `[1,"a"]`},
		{name: "info null", payload: `{"sub":"u1","info":null}`, user: "u1"},
		{name: "channels", payload: `{"sub":"u1","channels":["a","b:c"]}`, user: "u1", channels: []string{"a", "b:c"}},
		{name: "channels empty", payload: `{"sub":"u1","channels":[]}`, user: "u1", channels: []string{}},
		{name: "exp", payload: `{"sub":"u1","exp":4102444800}`, user: "u1", expires: time.Unix(4102444800, 0)},
		{name: "unknown claims ignored", payload: `{"sub":"u1","jti":"x","role":"admin"}`, user: "u1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := hs.Verify(signRaw(t, jwt.SigningMethodHS256, secret, header, tt.payload))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.User != tt.user {
				t.Errorf("User = %q, want %q", c.User, tt.user)
			}
			if tt.info == "" && c.Info != nil {
				t.Errorf("Info = %s, want nil", c.Info)
			} else if string(c.Info) != tt.info {
				t.Errorf("Info = %s, want %s", c.Info, tt.info)
			}
			if fmt.Sprint(c.Channels) != fmt.Sprint(tt.channels) {
				t.Errorf("Channels = %q, want %q", c.Channels, tt.channels)
			}
			if !c.Expires.Equal(tt.expires) {
				t.Errorf("Expires = %v, want %v", c.Expires, tt.expires)
			}
		})
	}
}

func TestVerifyIssuerAudience(t *testing.T) {
	secret := []byte(testSecret)
	plain := hmacVerifier(t)
	iss := newVerifier(t, jwtConfig(config.JWT{HMACSecret: testSecret, Issuer: "https://app.example.com"}))
	aud := newVerifier(t, jwtConfig(config.JWT{HMACSecret: testSecret, Audience: "switchyard"}))
	both := newVerifier(t, jwtConfig(config.JWT{HMACSecret: testSecret, Issuer: "https://app.example.com", Audience: "switchyard"}))
	tok := func(issuer string, audience ...string) string {
		return sign(t, jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "u", Issuer: issuer, Audience: audience})
	}
	tests := []struct {
		name  string
		v     *Verifier
		token string
		msg   string // "" = accepted
	}{
		{"not configured, any iss and aud", plain, tok("https://evil.example", "other"), ""},
		{"not configured, none", plain, tok(""), ""},
		{"iss matches", iss, tok("https://app.example.com"), ""},
		{"iss wrong", iss, tok("https://evil.example"), "invalid token issuer"},
		{"iss missing", iss, tok(""), "invalid token issuer"},
		{"aud matches", aud, tok("", "switchyard"), ""},
		{"aud in list", aud, tok("", "api", "switchyard"), ""},
		{"aud as plain string", aud, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, `{"aud":"switchyard"}`), ""},
		{"aud wrong", aud, tok("", "api"), "invalid token audience"},
		{"aud missing", aud, tok(""), "invalid token audience"},
		{"both match", both, tok("https://app.example.com", "switchyard"), ""},
		{"both, aud missing", both, tok("https://app.example.com"), "invalid token audience"},
		{"both, iss missing", both, tok("", "switchyard"), "invalid token issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.v.Verify(tt.token)
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			wantUnauthorized(t, err, tt.msg, tt.token)
		})
	}
}

func TestClaimsExpired(t *testing.T) {
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		expires time.Time
		now     time.Time
		want    bool
	}{
		{"never", time.Time{}, exp.Add(100 * 365 * 24 * time.Hour), false},
		{"before", exp, exp.Add(-time.Minute), false},
		{"within leeway", exp, exp.Add(Leeway - time.Nanosecond), false},
		{"at end of leeway", exp, exp.Add(Leeway), true},
		{"after", exp, exp.Add(time.Hour), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Claims{Expires: tt.expires}
			if got := c.Expired(tt.now); got != tt.want {
				t.Errorf("Expired = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestExpiredMatchesVerify checks that Claims.Expired and Verify agree on
// when a token runs out.
func TestExpiredMatchesVerify(t *testing.T) {
	hs := hmacVerifier(t)
	for _, d := range []time.Duration{-time.Hour, -Leeway - 2*time.Second, -time.Second, time.Minute} {
		t.Run(d.String(), func(t *testing.T) {
			now := time.Now()
			exp := now.Add(d).Truncate(time.Second)
			_, err := hs.Verify(sign(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(exp)}))
			expired := (&Claims{Expires: exp}).Expired(now)
			if (err != nil) != expired {
				t.Errorf("Verify error %v, but Expired = %v", err, expired)
			}
		})
	}
}

func TestNewVerifierKeyFiles(t *testing.T) {
	k := testKeys()
	ecCert := func() []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.ec.PublicKey, k.ec)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}()
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}})
	tests := []struct {
		name   string
		data   []byte
		method jwt.SigningMethod
		key    any
	}{
		{"PKIX RSA", k.rsaPE, jwt.SigningMethodRS256, k.rsa},
		{"PKCS1 RSA", pkcs1, jwt.SigningMethodRS256, k.rsa},
		{"certificate ECDSA", ecCert, jwt.SigningMethodES256, k.ec},
		{"other block first", append(append([]byte("comment\n"), params...), pemPublicKey(&k.ec.PublicKey)...), jwt.SigningMethodES256, k.ec},
		{"Ed25519", pemPublicKey(k.ed.Public()), jwt.SigningMethodEdDSA, k.ed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, jwtConfig(config.JWT{PublicKeyFile: writeFile(t, "key.pem", tt.data)}))
			if _, err := v.Verify(sign(t, tt.method, tt.key, claims("u"))); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestNewVerifierErrors(t *testing.T) {
	k := testKeys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPriv, err := x509.MarshalECPrivateKey(k.ec)
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name string
		jwt  config.JWT
		want []string // substrings of the error
	}{
		{"missing file", config.JWT{PublicKeyFile: missing}, []string{"auth.jwt.public_key_file", missing, "no such file"}},
		{"directory", config.JWT{PublicKeyFile: t.TempDir()}, []string{"auth.jwt.public_key_file"}},
		{"garbage", config.JWT{PublicKeyFile: writeFile(t, "garbage.pem", []byte("this is not a key\n"))}, []string{"garbage.pem", "no PEM"}},
		{"empty file", config.JWT{PublicKeyFile: writeFile(t, "empty.pem", nil)}, []string{"empty.pem", "no PEM"}},
		{"corrupt block", config.JWT{PublicKeyFile: writeFile(t, "corrupt.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")}))}, []string{"corrupt.pem", "PUBLIC KEY"}},
		{"private key", config.JWT{PublicKeyFile: writeFile(t, "private.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecPriv}))}, []string{"private.pem", "private key"}},
		{"RSA too small", config.JWT{PublicKeyFile: writeFile(t, "small.pem", pemPublicKey(&small.PublicKey))}, []string{"small.pem", "1024 bits"}},
		{"P-224", config.JWT{PublicKeyFile: writeFile(t, "p224.pem", pemPublicKey(&p224.PublicKey))}, []string{"p224.pem", "P-224"}},
		{"both keys", config.JWT{HMACSecret: testSecret, PublicKeyFile: writeFile(t, "k.pem", k.rsaPE)}, []string{"mutually exclusive"}},
		{"short secret", config.JWT{HMACSecret: "short"}, []string{"auth.jwt.hmac_secret", "16 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(jwtConfig(tt.jwt))
			if err == nil {
				t.Fatalf("NewVerifier = %v, want error", v)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "short") && tt.jwt.HMACSecret == "short" {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestTokenFromRequest(t *testing.T) {
	tests := []struct {
		name       string
		target     string
		cookie     *http.Cookie
		authz      string
		cookieName string
		token      string
		source     string
	}{
		{name: "none", target: "/live", cookieName: "sy"},
		{name: "query", target: "/live?token=q.q.q", cookieName: "sy", token: "q.q.q", source: SourceQuery},
		{name: "query among others", target: "/live?a=1&token=q.q.q&b=2", cookieName: "sy", token: "q.q.q", source: SourceQuery},
		{name: "custom cookie", target: "/live", cookie: &http.Cookie{Name: "my_session", Value: "c.c.c"}, cookieName: "my_session", token: "c.c.c", source: SourceCookie},
		{name: "other cookie ignored", target: "/live", cookie: &http.Cookie{Name: "switchyard_token", Value: "c.c.c"}, cookieName: "my_session"},
		{name: "cookie disabled", target: "/live", cookie: &http.Cookie{Name: "switchyard_token", Value: "c.c.c"}, cookieName: ""},
		{name: "bearer", target: "/api", authz: "Bearer h.h.h", cookieName: "sy", token: "h.h.h", source: SourceHeader},
		{name: "bearer lower case", target: "/api", authz: "bearer  h.h.h ", cookieName: "sy", token: "h.h.h", source: SourceHeader},
		{name: "basic ignored", target: "/api", authz: "Basic dXNlcjpwYXNz", cookieName: "sy"},
		{name: "bearer empty", target: "/api", authz: "Bearer ", cookieName: "sy"},
		{name: "bearer without space", target: "/api", authz: "Bearerh.h.h", cookieName: "sy"},
		{name: "query over cookie and header", target: "/live?token=q.q.q", cookie: &http.Cookie{Name: "sy", Value: "c.c.c"}, authz: "Bearer h.h.h", cookieName: "sy", token: "q.q.q", source: SourceQuery},
		{name: "cookie over header", target: "/live", cookie: &http.Cookie{Name: "sy", Value: "c.c.c"}, authz: "Bearer h.h.h", cookieName: "sy", token: "c.c.c", source: SourceCookie},
		{name: "empty query falls through", target: "/live?token=", cookie: &http.Cookie{Name: "sy", Value: "c.c.c"}, cookieName: "sy", token: "c.c.c", source: SourceCookie},
		{name: "empty cookie falls through", target: "/live", cookie: &http.Cookie{Name: "sy", Value: ""}, authz: "Bearer h.h.h", cookieName: "sy", token: "h.h.h", source: SourceHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			if tt.cookie != nil {
				r.AddCookie(tt.cookie)
			}
			if tt.authz != "" {
				r.Header.Set("Authorization", tt.authz)
			}
			token, source := TokenFromRequest(r, tt.cookieName)
			if token != tt.token || source != tt.source {
				t.Errorf("TokenFromRequest = %q, %q; want %q, %q", token, source, tt.token, tt.source)
			}
		})
	}
}

func TestFromRequest(t *testing.T) {
	secret := []byte(testSecret)
	j := config.JWT{HMACSecret: testSecret}
	open := newVerifier(t, config.Auth{Anonymous: true, JWT: j, CookieName: "sess"})
	closed := newVerifier(t, config.Auth{Anonymous: false, JWT: j, CookieName: "sess"})
	alice := sign(t, jwt.SigningMethodHS256, secret, tokenClaims{
		RegisteredClaims: claims("alice"),
		Info:             json.RawMessage(`{"name":"Alice"}`),
		Channels:         []string{"room:1"},
	})
	bob := sign(t, jwt.SigningMethodHS256, secret, claims("bob"))
	guest := sign(t, jwt.SigningMethodHS256, secret, tokenClaims{Info: json.RawMessage(`"guest"`)})
	emptySub := sign(t, jwt.SigningMethodHS256, secret, claims(""))
	expired := sign(t, jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Hour))})
	wrong := sign(t, jwt.SigningMethodHS256, []byte("some-other-secret-16b"), claims("alice"))

	tests := []struct {
		name   string
		v      *Verifier
		query  string
		cookie string
		bearer string
		user   string
		anon   bool
		msg    string // "" = no error
		leaked string // token that must not be in the error
	}{
		{name: "no token, anonymous allowed", v: open, anon: true},
		{name: "no token, anonymous refused", v: closed, msg: "authentication required"},
		{name: "query", v: closed, query: alice, user: "alice"},
		{name: "cookie", v: closed, cookie: alice, user: "alice"},
		{name: "bearer", v: closed, bearer: alice, user: "alice"},
		{name: "query wins", v: closed, query: alice, cookie: bob, bearer: bob, user: "alice"},
		{name: "cookie wins over header", v: closed, cookie: bob, bearer: alice, user: "bob"},
		{name: "token without sub, anonymous refused", v: closed, bearer: guest, msg: `token has no "sub" claim (the user id)`, leaked: guest},
		{name: "token with empty sub, anonymous refused", v: closed, bearer: emptySub, msg: `token has no "sub" claim (the user id)`, leaked: emptySub},
		{name: "token without sub, anonymous allowed", v: open, bearer: guest, anon: true},
		{name: "invalid token, anonymous allowed", v: open, query: wrong, msg: "invalid token signature", leaked: wrong},
		{name: "expired token, anonymous allowed", v: open, cookie: expired, msg: "token expired", leaked: expired},
		{name: "garbage token, anonymous allowed", v: open, bearer: "garbage-token-value", msg: "malformed token", leaked: "garbage-token-value"},
		{name: "invalid query not rescued by valid header", v: open, query: wrong, bearer: alice, msg: "invalid token signature", leaked: wrong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := "/live"
			if tt.query != "" {
				target += "?token=" + url.QueryEscape(tt.query)
			}
			r := httptest.NewRequest(http.MethodGet, target, nil)
			if tt.cookie != "" {
				r.AddCookie(&http.Cookie{Name: "sess", Value: tt.cookie})
			}
			if tt.bearer != "" {
				r.Header.Set("Authorization", "Bearer "+tt.bearer)
			}
			p, err := tt.v.FromRequest(r)
			if tt.msg != "" {
				wantUnauthorized(t, err, tt.msg, tt.leaked)
				if p.User != "" || p.Anonymous {
					t.Errorf("principal %+v returned with an error", p)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromRequest: %v", err)
			}
			if p.User != tt.user || p.Anonymous != tt.anon {
				t.Errorf("principal = %+v, want user %q anonymous %v", p, tt.user, tt.anon)
			}
		})
	}

	t.Run("fields", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, "/live?token="+alice, nil)
		p, err := open.FromRequest(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(p.Info) != `{"name":"Alice"}` || fmt.Sprint(p.Channels) != "[room:1]" || p.Expires.IsZero() || p.Anonymous {
			t.Errorf("principal = %+v", p)
		}
		r = httptest.NewRequest(http.MethodGet, "/live", nil)
		r.Header.Set("Authorization", "Bearer "+guest)
		if p, err = open.FromRequest(r); err != nil || string(p.Info) != `"guest"` || !p.Anonymous || p.User != "" {
			t.Errorf("principal = %+v, %v; want anonymous with info", p, err)
		}
	})
}

// TestFromRequestHTTP runs FromRequest behind a real HTTP server, the way
// a handler answers 401 before a WebSocket upgrade.
func TestFromRequestHTTP(t *testing.T) {
	v := newVerifier(t, config.Auth{JWT: config.JWT{HMACSecret: testSecret}, CookieName: "switchyard_token"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := v.FromRequest(r)
		if err != nil {
			http.Error(w, switchyard.ErrorMessage(err), switchyard.HTTPStatus(switchyard.ErrorCode(err)))
			return
		}
		fmt.Fprint(w, p.User)
	}))
	defer srv.Close()
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("carol"))
	tests := []struct {
		name   string
		setup  func(*http.Request)
		status int
		body   string
	}{
		{"no token", func(*http.Request) {}, 401, "authentication required"},
		{"query", func(r *http.Request) { r.URL.RawQuery = "token=" + tok }, 200, "carol"},
		{"cookie", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "switchyard_token", Value: tok}) }, 200, "carol"},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }, 200, "carol"},
		{"bad bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok+"x") }, 401, "invalid token signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/live", nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.setup(req)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(body)); got != tt.body {
				t.Errorf("body = %q, want %q", got, tt.body)
			}
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"/live?token=eyJhbGciOi.x.y", "/live"},
		{"/api/v1/things?a=1&token=secret#frag", "/api/v1/things"},
		{"/a%20b/c?token=x", "/a%20b/c"},
		{"https://host.example/p?token=x", "/p"},
		{"/", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := url.Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := RedactURL(u); got != tt.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if got := RedactURL(nil); got != "" {
		t.Errorf("RedactURL(nil) = %q", got)
	}
}

// TestVerifyConcurrent shares one Verifier between goroutines, for the race
// detector.
func TestVerifyConcurrent(t *testing.T) {
	k := testKeys()
	v := keyVerifier(t, &k.ec.PublicKey)
	good := sign(t, jwt.SigningMethodES256, k.ec, claims("u"))
	bad := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("u"))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := v.Verify(good); err != nil {
					t.Error(err)
				}
				if _, err := v.Verify(bad); err == nil {
					t.Error("bad token accepted")
				}
			}
		})
	}
	wg.Wait()
}

// messages are all the messages Verify may return.
var messages = map[string]bool{
	msgNotAccepted: true, msgMalformed: true, msgAlgorithm: true, msgSignature: true,
	msgExpired: true, msgNotValidYet: true, msgIssuedInFuture: true, msgIssuer: true,
	msgAudience: true, msgInvalid: true,
}

func FuzzVerify(f *testing.F) {
	k := testKeys()
	verifiers := []*Verifier{
		hmacVerifier(f),
		keyVerifier(f, &k.rsa.PublicKey),
		keyVerifier(f, &k.ec.PublicKey),
		keyVerifier(f, k.ed.Public()),
		newVerifier(f, jwtConfig(config.JWT{HMACSecret: testSecret, Issuer: "i", Audience: "a"})),
	}
	c := tokenClaims{RegisteredClaims: claims("alice"), Info: json.RawMessage(`{"x":[1,2]}`), Channels: []string{"a"}}
	f.Add(sign(f, jwt.SigningMethodHS256, []byte(testSecret), c))
	f.Add(sign(f, jwt.SigningMethodRS256, k.rsa, c))
	f.Add(sign(f, jwt.SigningMethodPS384, k.rsa, c))
	f.Add(sign(f, jwt.SigningMethodES256, k.ec, c))
	f.Add(sign(f, jwt.SigningMethodEdDSA, k.ed, c))
	f.Add(sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, c))
	f.Add(signRaw(f, jwt.SigningMethodHS256, []byte(testSecret), `{"alg":"HS256"}`, `{"exp":1e400,"nbf":-1,"iat":"x","aud":[1]}`))
	f.Add("")
	f.Add("..")
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, token string) {
		for _, v := range verifiers {
			c, err := v.Verify(token)
			if err == nil {
				if c == nil {
					t.Fatal("nil claims without error")
				}
				continue
			}
			var se *switchyard.Error
			if !errors.As(err, &se) || se.Code != switchyard.CodeUnauthorized || !messages[se.Message] {
				t.Fatalf("Verify error %#v is not a known unauthorized error", err)
			}
		}
	})
}

// TestUserClaim: the user id comes from the configured claim, as a string
// or an integer (Django REST framework's simplejwt issues {"user_id": 42}).
func TestUserClaim(t *testing.T) {
	secret := []byte(testSecret)
	header := `{"alg":"HS256","typ":"JWT"}`
	simplejwt := newVerifier(t, config.Auth{JWT: config.JWT{HMACSecret: testSecret, UserClaim: "user_id"}})
	sub := newVerifier(t, config.Auth{JWT: config.JWT{HMACSecret: testSecret, UserClaim: "sub"}})
	for _, tt := range []struct {
		name    string
		v       *Verifier
		payload string
		user    string
		msg     string // "" = accepted
	}{
		{"simplejwt access token", simplejwt, `{"token_type":"access","exp":4102444800,"iat":1700000000,"jti":"a1b2","user_id":42}`, "42", ""},
		{"string user_id", simplejwt, `{"user_id":"alice"}`, "alice", ""},
		{"big integer kept exactly", simplejwt, `{"user_id":123456789012345678901234567890}`, "123456789012345678901234567890", ""},
		{"negative integer", simplejwt, `{"user_id":-7}`, "-7", ""},
		{"sub ignored when user_id is the claim", simplejwt, `{"sub":"mallory","user_id":7}`, "7", ""},
		{"sub of any type ignored when user_id is the claim", simplejwt, `{"sub":{"x":1},"user_id":7}`, "7", ""},
		{"only sub, user_id configured", simplejwt, `{"sub":"alice"}`, "", `token has no "user_id" claim (the user id)`},
		{"null user_id", simplejwt, `{"user_id":null}`, "", `token has no "user_id" claim (the user id)`},
		{"float user_id", simplejwt, `{"user_id":42.0}`, "", `claim "user_id" must be a string or an integer`},
		{"numeric sub", sub, `{"sub":42}`, "42", ""},
		{"numeric sub zero", sub, `{"sub":0}`, "0", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := signRaw(t, jwt.SigningMethodHS256, secret, header, tt.payload)
			c, err := tt.v.Verify(tok)
			if tt.msg != "" {
				wantUnauthorized(t, err, tt.msg, tok)
				if got := ConfigKey(err); got != "auth.jwt.user_claim" {
					t.Errorf("ConfigKey = %q, want auth.jwt.user_claim", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.User != tt.user {
				t.Errorf("User = %q, want %q", c.User, tt.user)
			}
		})
	}
}

// TestRejectionKeys: every refusal names the configuration key that
// governs it, for the operator's log (and none for a token at fault).
func TestRejectionKeys(t *testing.T) {
	secret := []byte(testSecret)
	k := testKeys()
	hs := newVerifier(t, config.Auth{JWT: config.JWT{HMACSecret: testSecret, Issuer: "https://auth.example.com", Audience: "sy"}})
	rs := keyVerifier(t, &k.rsa.PublicKey)
	none := newVerifier(t, config.Auth{})
	good := func(c jwt.RegisteredClaims) jwt.RegisteredClaims {
		c.Issuer, c.Audience = "https://auth.example.com", jwt.ClaimStrings{"sy"}
		return c
	}
	expired := good(claims("alice"))
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	wrongIss := good(claims("alice"))
	wrongIss.Issuer = "https://evil.example.com"
	wrongAud := good(claims("alice"))
	wrongAud.Audience = jwt.ClaimStrings{"other"}
	for _, tt := range []struct {
		name, token string
		v           *Verifier
		key         string
	}{
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("another-secret-0123"), good(claims("alice"))), hs, "auth.jwt.hmac_secret"},
		{"wrong algorithm for the HMAC key", sign(t, jwt.SigningMethodRS256, k.rsa, good(claims("alice"))), hs, "auth.jwt.hmac_secret"},
		{"wrong algorithm for the public key", sign(t, jwt.SigningMethodHS256, secret, claims("alice")), rs, "auth.jwt.public_key_file"},
		{"no key configured", sign(t, jwt.SigningMethodHS256, secret, claims("alice")), none, "auth.jwt.hmac_secret"},
		{"issuer", sign(t, jwt.SigningMethodHS256, secret, wrongIss), hs, "auth.jwt.issuer"},
		{"audience", sign(t, jwt.SigningMethodHS256, secret, wrongAud), hs, "auth.jwt.audience"},
		{"expired: the token's fault", sign(t, jwt.SigningMethodHS256, secret, expired), hs, ""},
		{"malformed: the token's fault", "not-a-token", hs, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.v.Verify(tt.token)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := ConfigKey(err); got != tt.key {
				t.Errorf("ConfigKey(%v) = %q, want %q", err, got, tt.key)
			}
		})
	}
	closed := newVerifier(t, config.Auth{JWT: config.JWT{HMACSecret: testSecret}})
	_, err := closed.FromRequest(httptest.NewRequest(http.MethodGet, "/live", nil))
	if ConfigKey(err) != "auth.anonymous" || switchyard.ErrorMessage(err) != "authentication required" {
		t.Errorf("no token, anonymous refused: %v, key %q", err, ConfigKey(err))
	}
}
