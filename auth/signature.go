package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Request signing: every HTTP call Switchyard makes to the application
// (the connect proxy, signal webhooks) carries
//
//	Switchyard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
//
// with a secret the application shares (Stripe's scheme). The timestamp
// is inside the MAC, so a receiver that checks its age refuses replays;
// several v1 values may be present (while a secret is being rotated) and
// one match is enough.

// SignatureHeader is the header that carries a request's signature.
const SignatureHeader = "Switchyard-Signature"

// ErrBadSignature is returned by VerifySignature for a header that is
// malformed, too old or too new, or whose MAC does not match.
var ErrBadSignature = errors.New("auth: bad signature")

// Sign returns the SignatureHeader value for body, sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

// VerifySignature checks a SignatureHeader value against body: one v1
// must be the MAC of "<t>.<body>", and t must be within tolerance of now
// (tolerance <= 0: any age). Go receivers use it as is; docs/django.md
// shows the same check in Python.
func VerifySignature(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrBadSignature
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return ErrBadSignature
		}
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if got, err := hex.DecodeString(s); err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrBadSignature
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}
