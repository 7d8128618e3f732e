package signal

import (
	"context"
	"slices"
	"sync"
	"time"
)

// WindowStore keeps what the application set for a window key (its
// topics, and the user triggers "to users" reach it as) for the windows
// that connect with that key later: df_websockets' cache of window_key →
// topics, written by a page view before the page opens its socket, read
// when the socket connects.
//
// The memory store (NewMemoryWindows, the default) serves one process; a
// store that every process shares (Redis) lets a page's socket land on
// any of them. Methods are safe for concurrent use and honour ctx.
type WindowStore interface {
	// Get returns what is kept for key; ok is false when nothing is, or
	// when it expired.
	Get(ctx context.Context, key string) (w StoredWindow, ok bool, err error)
	// Update replaces what is kept for key with fn's result and keeps it
	// for ttl from now. fn receives what is kept (the zero StoredWindow
	// when nothing is); a shared store may call it more than once
	// (optimistic retries), so it must not have side effects.
	Update(ctx context.Context, key string, ttl time.Duration, fn func(StoredWindow) StoredWindow) error
}

// StoredWindow is what a WindowStore keeps for a window key.
type StoredWindow struct {
	// Topics are the window's topics, sorted.
	Topics []string `json:"topics"`
	// User, when not nil, is the user triggers "to users" reach the
	// window as ("" for none).
	User *string `json:"user,omitempty"`
}

// MemoryWindows is the WindowStore of one process: a map trimmed of
// expired keys about once a minute.
type MemoryWindows struct {
	now func() time.Time

	mu       sync.Mutex
	m        map[string]memoryWindow
	lastTrim time.Time
}

type memoryWindow struct {
	w       StoredWindow
	expires time.Time
}

var _ WindowStore = (*MemoryWindows)(nil)

// NewMemoryWindows returns an empty store; now is its clock (nil:
// time.Now).
func NewMemoryWindows(now func() time.Time) *MemoryWindows {
	if now == nil {
		now = time.Now
	}
	return &MemoryWindows{now: now, m: map[string]memoryWindow{}}
}

// Get implements WindowStore.
func (s *MemoryWindows) Get(_ context.Context, key string) (StoredWindow, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mw, ok := s.m[key]
	if !ok || !s.now().Before(mw.expires) {
		return StoredWindow{}, false, nil
	}
	return clone(mw.w), true, nil
}

// Update implements WindowStore.
func (s *MemoryWindows) Update(_ context.Context, key string, ttl time.Duration, fn func(StoredWindow) StoredWindow) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var cur StoredWindow
	if mw, ok := s.m[key]; ok && now.Before(mw.expires) {
		cur = clone(mw.w)
	}
	s.m[key] = memoryWindow{w: clone(fn(cur)), expires: now.Add(ttl)}
	if now.Sub(s.lastTrim) > time.Minute {
		s.lastTrim = now
		for k, mw := range s.m {
			if !now.Before(mw.expires) {
				delete(s.m, k)
			}
		}
	}
	return nil
}

// Len returns how many keys are kept, expired ones not yet trimmed
// included.
func (s *MemoryWindows) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func clone(w StoredWindow) StoredWindow {
	w.Topics = slices.Clone(w.Topics)
	if w.User != nil {
		u := *w.User
		w.User = &u
	}
	return w
}

// applyTo returns w changed by u: Topics replace, then Add and Remove
// edit, User replaces.
func (u WindowUpdate) applyTo(w StoredWindow) StoredWindow {
	set := map[string]bool{}
	if u.Topics == nil {
		for _, t := range w.Topics {
			set[t] = true
		}
	}
	for _, t := range u.Topics {
		set[t] = true
	}
	for _, t := range u.Add {
		set[t] = true
	}
	for _, t := range u.Remove {
		delete(set, t)
	}
	topics := make([]string, 0, len(set))
	for t := range set {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	w.Topics = topics
	if u.User != nil {
		w.User = u.User
	}
	return w
}
