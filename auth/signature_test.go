package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The vector was computed with Python's hmac module, as a Django receiver
// computes it:
// hmac.new(b'whsec-0123456789abcdef', b'1700000000.{"client_id":"c1"}', hashlib.sha256).hexdigest()
func TestSignVector(t *testing.T) {
	got := Sign([]byte("whsec-0123456789abcdef"), time.Unix(1700000000, 0), []byte(`{"client_id":"c1"}`))
	want := "t=1700000000,v1=e2e88e5562e69746d2a00ea71ac819cf13e575b2342b2b5e202b88c43af4f6e8"
	if got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestVerifySignature(t *testing.T) {
	secret := []byte("whsec-0123456789abcdef")
	body := []byte(`{"client_id":"c1"}`)
	now := time.Unix(1700000000, 0)
	h := Sign(secret, now, body)
	if err := VerifySignature(secret, h, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("a fresh signature: %v", err)
	}
	// A rotated secret: the old and the new v1 side by side.
	rot := h + ",v1=" + strings.TrimPrefix(Sign([]byte("another-secret-000000"), now, body), "t=1700000000,v1=")
	if err := VerifySignature([]byte("another-secret-000000"), rot, body, now, time.Minute); err != nil {
		t.Fatalf("the second v1: %v", err)
	}
	for name, c := range map[string]struct {
		secret, body []byte
		header       string
		now          time.Time
	}{
		"other body":        {secret, []byte(`{"client_id":"c2"}`), h, now},
		"other secret":      {[]byte("not-the-secret-0000"), body, h, now},
		"too old":           {secret, body, h, now.Add(6 * time.Minute)},
		"from the future":   {secret, body, h, now.Add(-6 * time.Minute)},
		"no v1":             {secret, body, "t=1700000000", now},
		"no t":              {secret, body, strings.TrimPrefix(h, "t=1700000000,"), now},
		"t outside the mac": {secret, body, strings.Replace(h, "t=1700000000", "t=1700000001", 1), now},
		"not hex":           {secret, body, "t=1700000000,v1=zz", now},
		"empty":             {secret, body, "", now},
	} {
		if err := VerifySignature(c.secret, c.header, c.body, c.now, 5*time.Minute); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", name, err)
		}
	}
	if err := VerifySignature(secret, h, body, now.Add(24*time.Hour), 0); err != nil {
		t.Fatalf("tolerance 0 accepts any age: %v", err)
	}
}

func FuzzVerifySignature(f *testing.F) {
	f.Add("t=1700000000,v1=e2e88e5562e69746d2a00ea71ac819cf13e575b2342b2b5e202b88c43af4f6e8", []byte(`{"client_id":"c1"}`))
	f.Add("t=,v1=", []byte{})
	f.Add(",,,=,t=1,t=2,v1=00", []byte("x"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := VerifySignature([]byte("whsec-0123456789abcdef"), header, body, time.Unix(1700000000, 0), time.Minute)
		if err != nil && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
