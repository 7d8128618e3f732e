// Package signin bounds password guessing on the server's sign-in forms
// (the Channelstream admin panel, the dashboard): a Limiter counts
// attempts per address and failures across all addresses. It is safe for
// concurrent use.
package signin

import (
	"net"
	"sync"
	"time"
)

// maxTrackedAddresses bounds the addresses the sign-in limiter remembers;
// when it is full of live entries, new addresses get only the global
// limit.
const maxTrackedAddresses = 10000

// Limiter bounds password guessing on a sign-in form: per address,
// attempts are counted when they start (so parallel guesses count before
// any of them fails) and past perAddress in one period the address is
// locked out for a period; across all addresses, past global failures in
// one period every sign-in is refused until that period ends. A success
// clears its address. The address is the direct peer's, as for the
// request: behind a proxy the per-address limit is a global one.
type Limiter struct {
	perAddress, global int
	period             time.Duration
	now                func() time.Time

	mu          sync.Mutex
	addrs       map[string]*count
	failures    int       // global failures in the period that began at since
	since       time.Time // start of the global period
	lockedUntil time.Time // global lockout
}

type count struct {
	attempts    int // started (and not succeeded) in the period
	since       time.Time
	lockedUntil time.Time
}

// New returns a limiter: perAddress attempts per address and global
// failures in all per period; now is the clock (nil: time.Now).
func New(perAddress, global int, period time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{perAddress: perAddress, global: global, period: period, now: now, addrs: map[string]*count{}}
}

// AddressOf is the host of a RemoteAddr.
func AddressOf(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// Begin starts an attempt from addr. When it is refused, retry is how
// long until the lockout ends and global reports whether it is the
// global one.
func (l *Limiter) Begin(addr string) (ok bool, retry time.Duration, global bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Before(l.lockedUntil) {
		return false, l.lockedUntil.Sub(now), true
	}
	c := l.entry(addr, now)
	if c == nil {
		return true, 0, false
	}
	if now.Before(c.lockedUntil) {
		return false, c.lockedUntil.Sub(now), false
	}
	if now.Sub(c.since) >= l.period {
		c.attempts, c.since = 0, now
	}
	if c.attempts >= l.perAddress {
		c.lockedUntil = now.Add(l.period)
		return false, l.period, false
	}
	c.attempts++
	return true, 0, false
}

// End records how an attempt begun from addr ended. It reports whether
// this failure started a global lockout.
func (l *Limiter) End(addr string, success bool) (globalLockout bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if success {
		delete(l.addrs, addr)
		return false
	}
	if c := l.addrs[addr]; c != nil && c.attempts >= l.perAddress {
		c.lockedUntil = now.Add(l.period)
	}
	if now.Sub(l.since) >= l.period {
		l.failures, l.since = 0, now
	}
	l.failures++
	if l.failures >= l.global && !now.Before(l.lockedUntil) {
		l.lockedUntil = now.Add(l.period)
		return true
	}
	return false
}

// entry returns addr's entry, creating it; nil when the table is full of
// live entries.
func (l *Limiter) entry(addr string, now time.Time) *count {
	if c := l.addrs[addr]; c != nil {
		return c
	}
	if len(l.addrs) >= maxTrackedAddresses {
		for a, c := range l.addrs {
			if now.Sub(c.since) >= l.period && !now.Before(c.lockedUntil) {
				delete(l.addrs, a)
			}
		}
		if len(l.addrs) >= maxTrackedAddresses {
			return nil
		}
	}
	c := &count{since: now}
	l.addrs[addr] = c
	return c
}
