package signal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
)

// Sender queues a frame on a connection; it must not block.
type Sender interface {
	Send(frame []byte)
}

// Encoder makes a wire's frame for a pushed signal. One comparable value
// per protocol: a trigger is encoded once per Encoder.
type Encoder interface {
	EncodeSignal(p Push) []byte
}

// Push is a signal sent to windows.
type Push struct {
	Signal   string          `json:"signal"`
	Kwargs   json.RawMessage `json:"kwargs"`
	SignalID string          `json:"signal_id"`
}

// Window is a connection that calls and receives signals, as a protocol
// attaches it.
type Window struct {
	// ID is the connection's client id, unique on the cluster.
	ID string
	// Key is the window key (df_websockets' dfwskey) when the wire has
	// one; "" uses ID.
	Key string
	// User is the authenticated user ("" for anonymous).
	User string
	// Info is the token's info claim.
	Info json.RawMessage
	// Transport names the wire ("live", "dfws", ...).
	Transport  string
	RemoteAddr string
	UserAgent  string
	// Claims is the token's payload (JSON object) for claim:/perm: rules.
	Claims json.RawMessage
	// Topics are the window's initial topics (the token's topics claim).
	Topics  []string
	Sender  Sender
	Encoder Encoder
}

// window is an attached Window, one allocation per connection: what it
// was attached with, its user and topics (under Service.mu) and its call
// bucket (under rmu).
type window struct {
	id, key    string
	tokenUser  string // the principal's user: access rules use it
	user       string // whom "to users" triggers reach it as (SetWindow may change it)
	token      *token // the token's info and claims; nil when it had neither (anonymous)
	transport  string
	remoteAddr string
	userAgent  string
	topics     map[string]struct{} // nil until the first topic
	sender     Sender
	enc        Encoder

	rmu    sync.Mutex
	tokens float32
	filled int64 // unix ns of the last refill; 0: never
}

// token is what a window's token said beyond the user: made only when it
// said something, so an anonymous window (most idle connections) holds
// none. TestWindowSize keeps the window within 192 bytes.
type token struct {
	info   json.RawMessage
	claims json.RawMessage
}

// info returns the token's info claim, or nil.
func (t *token) infoJSON() json.RawMessage {
	if t == nil {
		return nil
	}
	return t.info
}

// claimsJSON returns the token's payload, or nil.
func (t *token) claimsJSON() json.RawMessage {
	if t == nil {
		return nil
	}
	return t.claims
}

// addTopic adds a topic (the set is allocated on the first, so a window
// without topics costs no map).
func (w *window) addTopic(t string) {
	if w.topics == nil {
		w.topics = map[string]struct{}{}
	}
	w.topics[t] = struct{}{}
}

func (w *window) info() WindowInfo {
	wi := WindowInfo{ClientID: w.id, WindowKey: w.key, User: w.user, Info: w.token.infoJSON(), Transport: w.transport, RemoteAddr: w.remoteAddr, UserAgent: w.userAgent,
		UserPK: w.user, UserSet: w.user != "", Perms: []string{}}
	var claims map[string]json.RawMessage
	if c := w.token.claimsJSON(); len(c) > 0 && json.Unmarshal(c, &claims) == nil {
		str := func(name string) string {
			var s string
			json.Unmarshal(claims[name], &s)
			return s
		}
		wi.Username, wi.CSRFCookie, wi.LanguageCode = str("username"), str("csrf_cookie"), str("language_code")
		wi.IsSuperuser, wi.IsStaff = truthy(claims["is_superuser"]), truthy(claims["is_staff"])
		var perms []string
		if json.Unmarshal(claims["perms"], &perms) == nil && perms != nil {
			wi.Perms = perms
		}
		if raw, ok := claims["is_active"]; ok {
			wi.IsActive = truthy(raw)
		} else {
			wi.IsActive = wi.UserSet
		}
	} else {
		wi.IsActive = wi.UserSet
	}
	return wi
}

// allow takes a token from the window's call bucket (bursts of twice the
// rate).
func (w *window) allow(rate int, now time.Time) bool {
	if rate <= 0 {
		return true
	}
	w.rmu.Lock()
	defer w.rmu.Unlock()
	burst := float32(2 * rate)
	ns := now.UnixNano()
	if w.filled == 0 {
		w.tokens = burst
	} else {
		w.tokens = min(burst, w.tokens+float32(float64(ns-w.filled)/1e9*float64(rate)))
	}
	w.filled = ns
	if w.tokens < 1 {
		return false
	}
	w.tokens--
	return true
}

// admits applies an access rule to the window's principal.
func (w *window) admits(access string) bool {
	switch access {
	case config.AccessAnyone:
		return true
	case config.AccessAuthenticated:
		return w.tokenUser != ""
	case config.AccessAnonymous:
		return w.tokenUser == ""
	case config.AccessServerSide, config.AccessNone:
		return false
	}
	if name, ok := strings.CutPrefix(access, config.AccessClaimPrefix); ok {
		return truthy(claim(w.token.claimsJSON(), name))
	}
	if p, ok := strings.CutPrefix(access, config.AccessPermPrefix); ok {
		var perms []string
		if json.Unmarshal(claim(w.token.claimsJSON(), "perms"), &perms) != nil {
			return false
		}
		return slices.Contains(perms, p)
	}
	return false
}

// claim returns one claim of a token payload (nil when absent).
func claim(payload json.RawMessage, name string) json.RawMessage {
	if len(payload) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(payload, &m) != nil {
		return nil
	}
	return m[name]
}

// truthy is Python's truth for a JSON value: false, null, 0, "", [] and
// {} are false.
func truthy(v json.RawMessage) bool {
	t := bytes.TrimSpace(v)
	switch {
	case len(t) == 0, bytes.Equal(t, []byte("null")), bytes.Equal(t, []byte("false")), bytes.Equal(t, []byte(`""`)):
		return false
	case t[0] == '[' || t[0] == '{':
		var x any
		if json.Unmarshal(t, &x) != nil {
			return false
		}
		switch c := x.(type) {
		case []any:
			return len(c) > 0
		case map[string]any:
			return len(c) > 0
		}
	case t[0] == '-' || (t[0] >= '0' && t[0] <= '9'):
		var f float64
		return json.Unmarshal(t, &f) == nil && f != 0
	}
	return true
}

// checkName validates a topic, user or window key.
func checkName(what, s string) error {
	switch {
	case s == "":
		return switchyard.Errorf(switchyard.CodeBadRequest, "%s must not be empty", what)
	case len(s) > MaxNameLength:
		return switchyard.Errorf(switchyard.CodeBadRequest, "%s over %d bytes", what, MaxNameLength)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return switchyard.Errorf(switchyard.CodeBadRequest, "%s contains control characters", what)
	}
	return nil
}

// Attach registers a connection as a window: it receives triggers for
// its id, key, user and topics, and may Call. What the application set
// for its key before it connected (SetWindow, kept in the WindowStore)
// applies: those topics are added, and that user replaces w.User as the
// one triggers "to users" reach it as (access rules keep w.User).
func (s *Service) Attach(ctx context.Context, w Window) error {
	if w.ID == "" || w.Sender == nil || w.Encoder == nil {
		return fmt.Errorf("signal: Attach needs ID, Sender and Encoder")
	}
	win := &window{
		id: w.ID, key: w.Key, tokenUser: w.User, user: w.User,
		transport: w.Transport, remoteAddr: w.RemoteAddr, userAgent: w.UserAgent,
		sender: w.Sender, enc: w.Encoder,
	}
	if len(w.Info) > 0 || len(w.Claims) > 0 {
		win.token = &token{info: w.Info, claims: w.Claims}
	}
	if win.key == "" {
		win.key = w.ID
	}
	for _, t := range w.Topics {
		if checkName("topic", t) == nil {
			win.addTopic(t)
		}
	}
	// The store is read outside mu (it may be remote); an update applied
	// meanwhile (gen moved) may have missed this window, so read again.
	for try := 0; ; try++ {
		s.mu.RLock()
		gen := s.gen
		s.mu.RUnlock()
		stored, ok, err := s.cfg.Windows.Get(ctx, win.key)
		if err != nil {
			return fmt.Errorf("signal: window store: %w", err)
		}
		s.mu.Lock()
		if s.gen != gen && try < 3 {
			s.mu.Unlock()
			continue
		}
		defer s.mu.Unlock()
		if _, dup := s.windows[w.ID]; dup {
			return fmt.Errorf("signal: window %q already attached", w.ID)
		}
		if ok {
			for _, t := range stored.Topics {
				win.addTopic(t)
			}
			if stored.User != nil {
				win.user = *stored.User
			}
		}
		break
	}
	s.windows[w.ID] = win
	if win.key != w.ID {
		addTo(s.byKey, win.key, win)
	}
	if win.user != "" {
		addTo(s.byUser, win.user, win)
	}
	for t := range win.topics {
		addTo(s.byTopic, t, win)
	}
	return nil
}

// Detach forgets a window (its connection closed).
func (s *Service) Detach(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	win := s.windows[id]
	if win == nil {
		return
	}
	delete(s.windows, id)
	removeFrom(s.byKey, win.key, win)
	removeFrom(s.byUser, win.user, win)
	for t := range win.topics {
		removeFrom(s.byTopic, t, win)
	}
}

func addTo(m map[string]map[*window]struct{}, k string, w *window) {
	set := m[k]
	if set == nil {
		set = map[*window]struct{}{}
		m[k] = set
	}
	set[w] = struct{}{}
}

func removeFrom(m map[string]map[*window]struct{}, k string, w *window) {
	if set := m[k]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// WindowUpdate changes the topics or the user of the windows with a key
// (or client id).
type WindowUpdate struct {
	// Window is a window key or a client id.
	Window string `json:"window"`
	// Topics, when not nil, replace the windows' topics.
	Topics []string `json:"topics,omitempty"`
	// Add and Remove add and remove topics (after Topics).
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
	// User, when not nil, is the user triggers "to users" reach the
	// windows as.
	User *string `json:"user,omitempty"`
}

// SetWindow applies an update to the connected windows with that key or
// id, on every process, and keeps it for Signals.WindowTTL for windows
// that connect later with that key. It returns how many windows of this
// process changed.
func (s *Service) SetWindow(ctx context.Context, u WindowUpdate) (int, error) {
	if err := checkName("window", u.Window); err != nil {
		return 0, err
	}
	for _, list := range [][]string{u.Topics, u.Add, u.Remove} {
		if len(list) > 1000 {
			return 0, switchyard.Errorf(switchyard.CodeBadRequest, "at most 1000 topics per list")
		}
		for _, t := range list {
			if err := checkName("topic", t); err != nil {
				return 0, err
			}
		}
	}
	if u.User != nil && *u.User != "" {
		if err := checkName("user", *u.User); err != nil {
			return 0, err
		}
	}
	if u.Topics == nil && u.Add == nil && u.Remove == nil && u.User == nil {
		return 0, switchyard.Errorf(switchyard.CodeBadRequest, "nothing to change: give topics, add, remove or user")
	}
	if err := s.cfg.Windows.Update(ctx, u.Window, s.ttl, u.applyTo); err != nil {
		return 0, fmt.Errorf("signal: window store: %w", err)
	}
	n := s.applyWindow(u)
	if s.cfg.Bus != nil {
		if err := s.publish(ctx, busMessage{Window: &u}); err != nil {
			return n, err
		}
	}
	return n, nil
}

// applyWindow applies an update to the connected windows of this
// process with that key or id; it returns how many.
func (s *Service) applyWindow(u WindowUpdate) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	var wins []*window
	if w := s.windows[u.Window]; w != nil {
		wins = append(wins, w)
	}
	for w := range s.byKey[u.Window] {
		wins = append(wins, w)
	}
	for _, w := range wins {
		if u.Topics != nil {
			for t := range w.topics {
				removeFrom(s.byTopic, t, w)
			}
			clear(w.topics)
			for _, t := range u.Topics {
				w.addTopic(t)
			}
		}
		for _, t := range u.Add {
			w.addTopic(t)
		}
		for _, t := range u.Remove {
			delete(w.topics, t)
			removeFrom(s.byTopic, t, w)
		}
		for t := range w.topics {
			addTo(s.byTopic, t, w)
		}
		if u.User != nil && *u.User != w.user {
			removeFrom(s.byUser, w.user, w)
			w.user = *u.User
			if w.user != "" {
				addTo(s.byUser, w.user, w)
			}
		}
	}
	return len(wins)
}

// WindowState is a window as Windows lists it.
type WindowState struct {
	WindowInfo
	Topics []string `json:"topics"`
}

// Windows lists the windows of this process with a key or id ("" for
// all, at most limit).
func (s *Service) Windows(key string, limit int) []WindowState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []WindowState
	add := func(w *window) {
		ts := make([]string, 0, len(w.topics))
		for t := range w.topics {
			ts = append(ts, t)
		}
		slices.Sort(ts)
		out = append(out, WindowState{WindowInfo: w.info(), Topics: ts})
	}
	if key != "" {
		if w := s.windows[key]; w != nil {
			add(w)
		}
		for w := range s.byKey[key] {
			add(w)
		}
		return out
	}
	for _, w := range s.windows {
		if len(out) >= limit {
			break
		}
		add(w)
	}
	return out
}

// NumWindows returns how many windows are attached on this process.
func (s *Service) NumWindows() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.windows)
}
