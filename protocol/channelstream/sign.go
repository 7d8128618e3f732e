// Package channelstream will speak the Channelstream API (specs/
// channelstream.md) so Channelstream applications can switch by changing
// a URL. This file holds its request signing: itsdangerous'
// TimestampSigner with its defaults, which Channelstream applications
// and its JS client use for the x-channelstream-secret header.
package channelstream

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strings"
	"time"
)

// Errors of Verify; every one is answered 401 {"request": "Bad Signature"}.
var (
	ErrNoSeparator  = errors.New("channelstream: signature has no separator")
	ErrBadSignature = errors.New("channelstream: bad signature")
	ErrBadTimestamp = errors.New("channelstream: malformed timestamp")
	ErrExpired      = errors.New("channelstream: signature expired")
	ErrFuture       = errors.New("channelstream: signature dated in the future")
)

// DefaultMaxClockSkew is how far in the future Verify lets a signature's
// timestamp be: the application server's clock may run a little ahead.
const DefaultMaxClockSkew = 30 * time.Second

// deriveKey is itsdangerous' django-concat derivation with the default
// salt: SHA1("itsdangerous.Signer" + "signer" + secret).
func deriveKey(secret string) []byte {
	h := sha1.Sum([]byte("itsdangerous.Signer" + "signer" + secret))
	return h[:]
}

// decodeLenient decodes base64 as Python's urlsafe_b64decode after
// re-padding does: trailing "=" ignored, "+" and "/" accepted for "-" and
// "_". Channelstream's JS client produces such tokens (its replace only
// swaps the first occurrence).
func decodeLenient(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	s = strings.NewReplacer("+", "-", "/", "_").Replace(s)
	return base64.RawURLEncoding.DecodeString(s)
}

// Verify checks a "payload.timestamp.signature" token signed with secret
// and returns its payload. maxAge > 0 refuses tokens older than that
// (exactly maxAge passes) and tokens dated more than DefaultMaxClockSkew
// in the future (ErrFuture): itsdangerous 1.1, Channelstream's pin,
// accepted any future date, so a token dated years ahead stayed valid
// for years; itsdangerous 2.x refuses every future date. The comparison
// is constant-time.
func Verify(secret, token string, maxAge time.Duration, now time.Time) (string, error) {
	return VerifySkew(secret, token, maxAge, DefaultMaxClockSkew, now)
}

// VerifySkew is Verify with the tolerated clock skew given: a timestamp
// more than skew after now is refused when maxAge > 0 (skew 0 refuses
// every future timestamp, as itsdangerous 2.x does).
func VerifySkew(secret, token string, maxAge, skew time.Duration, now time.Time) (string, error) {
	i := strings.LastIndexByte(token, '.')
	if i < 0 {
		return "", ErrNoSeparator
	}
	signed, sigPart := token[:i], token[i+1:]
	sig, err := decodeLenient(sigPart)
	if err != nil {
		return "", ErrBadSignature
	}
	mac := hmac.New(sha1.New, deriveKey(secret))
	mac.Write([]byte(signed))
	if subtle.ConstantTimeCompare(sig, mac.Sum(nil)) != 1 {
		return "", ErrBadSignature
	}
	j := strings.LastIndexByte(signed, '.')
	if j < 0 {
		return "", ErrBadTimestamp
	}
	tsb, err := decodeLenient(signed[j+1:])
	if err != nil || len(tsb) == 0 || len(tsb) > 8 {
		return "", ErrBadTimestamp
	}
	var ts int64
	for _, c := range tsb {
		ts = ts<<8 | int64(c)
	}
	if maxAge > 0 && now.Unix()-ts > int64(maxAge/time.Second) {
		return "", ErrExpired
	}
	if maxAge > 0 && ts-now.Unix() > int64(skew/time.Second) {
		return "", ErrFuture
	}
	return signed[:j], nil
}

// Sign makes a token as Channelstream applications do (for tests and Go
// backends).
func Sign(secret, payload string, now time.Time) string {
	ts := now.Unix()
	var b []byte
	for v := ts; v > 0; v >>= 8 {
		b = append([]byte{byte(v)}, b...)
	}
	v := payload + "." + base64.RawURLEncoding.EncodeToString(b)
	mac := hmac.New(sha1.New, deriveKey(secret))
	mac.Write([]byte(v))
	return v + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
