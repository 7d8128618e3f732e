package signin

import (
	"testing"
	"time"
)

// Per address: attempts count when they start; past the limit the address
// waits out the period, even for the right password. A success clears
// the address. Across addresses: past the global failures, everyone waits.
func TestLimiter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := New(2, 3, time.Minute, func() time.Time { return now })
	for range 2 {
		if ok, _, _ := l.Begin("a"); !ok {
			t.Fatal("refused within the limit")
		}
	}
	ok, retry, global := l.Begin("a")
	if ok || global || retry != time.Minute {
		t.Fatalf("third attempt in progress: %v %v %v", ok, retry, global)
	}
	l.End("a", false)
	l.End("a", false)
	now = now.Add(time.Minute)
	if ok, _, _ := l.Begin("a"); !ok {
		t.Fatal("still locked after the period")
	}
	l.End("a", true)
	if ok, _, _ := l.Begin("a"); !ok {
		t.Fatal("a success did not clear the address")
	}
	l.End("a", false)
	for _, addr := range []string{"c", "d"} { // three failures in one period
		l.Begin(addr)
		l.End(addr, false)
	}
	if ok, _, global := l.Begin("b"); ok || !global {
		t.Fatalf("another address during the global lockout: %v %v", ok, global)
	}
	now = now.Add(time.Minute)
	if ok, _, _ := l.Begin("b"); !ok {
		t.Fatal("the global lockout outlived its period")
	}
}

func TestAddressOf(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.1:4000": "192.0.2.1", "[::1]:80": "::1", "weird": "weird"} {
		if got := AddressOf(in); got != want {
			t.Errorf("AddressOf(%q) = %q", in, got)
		}
	}
}
