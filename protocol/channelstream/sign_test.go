package channelstream

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

// The worked examples of specs/channelstream.md §2.2 (produced there by
// itsdangerous 1.1.0 and 2.2.0).
func TestSignatureVectors(t *testing.T) {
	at := time.Unix(1700000000, 0)
	if got := hex.EncodeToString(deriveKey("secret")); got != "3a1c28f7aad5a02fe672d24f1003fb52a7312ed7" {
		t.Fatalf("derived key %s", got)
	}
	for _, tc := range []struct{ secret, payload, token string }{
		{"secret", "channelstream", "channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsQ"},
		{"secret", "/connect", "/connect.ZVPxAA.LGgz2XYmQrtshS37benqptPevTY"},
		{"my-very-secret-key", "channelstream", "channelstream.ZVPxAA.YFTOejNBL4AOjCC1gfrIRwSdFdM"},
	} {
		if got := Sign(tc.secret, tc.payload, at); got != tc.token {
			t.Errorf("Sign(%q) = %s, want %s", tc.payload, got, tc.token)
		}
		if p, err := Verify(tc.secret, tc.token, time.Minute, at.Add(30*time.Second)); err != nil || p != tc.payload {
			t.Errorf("Verify(%s) = %q, %v", tc.token, p, err)
		}
	}
	for _, tc := range []struct {
		name, token string
		now         time.Time
		err         error
	}{
		{"JS client leftover =", "channelstream.ZVPxAA=.UnambZyUHmgFmelQMUgVo1LT02M", at, nil},
		{"JS client mixed alphabet", "channelstream.ZVPxBg=.xpp-ZWZgTriDBPeL1bvk8g+GsLU", at.Add(6 * time.Second), nil},
		{"padded signature", "channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsQ=", at, nil},
		{"tampered", "channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsq", at, ErrBadSignature},
		{"no dot", "nodot", at, ErrNoSeparator},
		{"age exactly 60 s passes", "channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsQ", at.Add(60 * time.Second), nil},
		{"61 s is expired", "channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsQ", at.Add(61 * time.Second), ErrExpired},
		{"a timestamp within the clock skew passes", "channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsQ", at.Add(-DefaultMaxClockSkew), nil},
		{"an hour in the future is refused", "channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsQ", at.Add(-time.Hour), ErrFuture},
		{"ten years in the future is refused", "channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsQ", at.Add(-10 * 365 * 24 * time.Hour), ErrFuture},
		{"a Signer token without timestamp", "x." + Sign("secret", "", at)[len(".ZVPxAA."):], at, ErrBadSignature},
	} {
		_, err := Verify("secret", tc.token, time.Minute, tc.now)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	if _, err := Verify("wrong", "channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsQ", 0, at); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong secret: %v", err)
	}
	// Without the age check (validate_requests = false) no date is
	// refused, as in Channelstream.
	if _, err := Verify("secret", "channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsQ", 0, at.Add(-time.Hour)); err != nil {
		t.Fatalf("future timestamp without the age check: %v", err)
	}
	// A skew of 0 refuses any future timestamp (itsdangerous 2.x).
	if _, err := VerifySkew("secret", "channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsQ", time.Minute, 0, at.Add(-time.Second)); !errors.Is(err, ErrFuture) {
		t.Fatalf("skew 0: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("channelstream.ZVPxAA.UB9ITnnv9UITu0ka92WJCn1VFsQ")
	f.Add("a.b.c.d")
	f.Add("....")
	f.Fuzz(func(t *testing.T, token string) {
		Verify("secret", token, time.Minute, time.Unix(1700000000, 0))
	})
}
