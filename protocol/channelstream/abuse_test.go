package channelstream

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// signIn posts the sign-in form and returns the status and page.
func (ts *testServer) signIn(user, pass string) (int, string) {
	ts.t.Helper()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(ts.url+"/admin/sign_in", url.Values{"username": {user}, "password": {pass}})
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Parallel guesses from one address cannot outrun the limit: attempts
// count when they start. Past it the address is locked out, even with
// the right password, until the lockout ends. Before, 50 parallel guesses
// all went through.
func TestSignInAttemptsPerAddress(t *testing.T) {
	clock := newClock()
	ts := newTestServer(t, func(c *Config) {
		c.Now = clock.now
		c.SignInAttempts = 3
		c.SignInAttemptsGlobal = 1000
		c.SignInLockout = 10 * time.Minute
	})
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			st, _ := ts.signIn("admin", "guess")
			mu.Lock()
			statuses[st]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if statuses[200] != 3 || statuses[429] != 17 {
		t.Fatalf("20 parallel guesses with a limit of 3: %v", statuses)
	}
	st, page := ts.signIn("admin", "admin-pw")
	if st != 429 || !strings.Contains(page, "channelstream.sign_in_attempts") {
		t.Fatalf("the right password during the lockout: %d %s", st, page)
	}
	clock.add(10*time.Minute + time.Second)
	if st, page := ts.signIn("admin", "admin-pw"); st != 302 {
		t.Fatalf("after the lockout: %d %s", st, page)
	}
}

// A success clears its address's count.
func TestSignInSuccessClearsTheCount(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.SignInAttempts = 3 })
	for range 2 {
		if st, _ := ts.signIn("admin", "guess"); st != 200 {
			t.Fatal(st)
		}
	}
	if st, _ := ts.signIn("admin", "admin-pw"); st != 302 {
		t.Fatal(st)
	}
	for range 2 {
		if st, page := ts.signIn("admin", "guess"); st != 200 {
			t.Fatalf("%d %s", st, page)
		}
	}
}

// Failures from everyone together are bounded too: past the global
// limit, every sign-in is refused for the period.
func TestSignInAttemptsGlobal(t *testing.T) {
	clock := newClock()
	ts := newTestServer(t, func(c *Config) {
		c.Now = clock.now
		c.SignInAttempts = 1000
		c.SignInAttemptsGlobal = 3
		c.SignInLockout = time.Minute
	})
	for range 3 {
		if st, _ := ts.signIn("admin", "guess"); st != 200 {
			t.Fatal(st)
		}
	}
	st, page := ts.signIn("admin", "admin-pw")
	if st != 429 || !strings.Contains(page, "channelstream.sign_in_attempts_global") {
		t.Fatalf("after 3 failures with a global limit of 3: %d %s", st, page)
	}
	clock.add(time.Minute)
	if st, _ := ts.signIn("admin", "admin-pw"); st != 302 {
		t.Fatalf("after the period: %d", st)
	}
}

// A signature dated beyond the clock skew is refused; within it, it
// passes. Before, a signature dated 10 years ahead was accepted (and
// stayed valid for 10 years).
func TestFutureSignatures(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, tc := range []struct {
		name   string
		ahead  time.Duration
		status int
	}{
		{"ten years ahead", 10 * 365 * 24 * time.Hour, 401},
		{"an hour ahead", time.Hour, 401},
		{"a clock 10 s fast", 10 * time.Second, 200},
	} {
		st, _, body := ts.do("POST", "/connect", map[string]any{"username": "u"}, false,
			"X-Channelstream-Secret", Sign(testSecret, "channelstream", time.Now().Add(tc.ahead)))
		if st != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, st, body, tc.status)
		}
	}
}
