package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/testenv"
)

const faultsAPIKey = "faults-test-api-key-0123456789"

// call makes an HTTP request with a JSON body and decodes the answer.
func call(t *testing.T, method, u string, body any, apiKey bool) (int, map[string]any) {
	t.Helper()
	var r *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	} else {
		r = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, u, r)
	req.Header.Set("Content-Type", "application/json")
	if apiKey {
		req.Header.Set("Authorization", "apikey "+faultsAPIKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func publishAPI(t *testing.T, base string, data any) (int, map[string]any) {
	return call(t, "POST", base+"/api/server/publish", map[string]any{"channel": "chat:room", "data": data}, true)
}

// errorCode returns the code of an error body {"error": {"code"}}.
func errorCode(body map[string]any) any {
	e, _ := body["error"].(map[string]any)
	return e["code"]
}

// Redis lost at runtime (every connection cut by a proxy): publishes
// answer 503 unavailable, /readyz says the broker fails, connected
// clients stay connected; when Redis is back the subscriptions are
// restored and a client's recovery gets what it missed.
func TestRedisLostAtRuntime(t *testing.T) {
	proxy := testenv.NewProxy(t, testenv.Redis(t))
	prefix := testenv.RedisPrefix(t)
	base, _ := start(t, func(c *config.Config) {
		channelsConfig(c)
		c.APIKeys = []config.Secret{faultsAPIKey}
		c.Broker.Driver, c.Broker.URL, c.Broker.Prefix = "redis", config.Secret("redis://"+proxy.Addr()+"/0"), prefix
		c.Broker.ConnectTimeout = config.Duration(time.Second)
	}, Options{})
	lc := newLiveClient(t, base)
	lc.ok("subscribe", map[string]any{"channel": "chat:room"})
	for i := 1; i <= 2; i++ {
		if code, res := publishAPI(t, base, i); code != 200 {
			t.Fatalf("publish: %d %v", code, res)
		}
		lc.push("message", "chat:room")
	}

	proxy.Cut()
	eventually(t, 10*time.Second, func() error {
		code, res := publishAPI(t, base, "while down")
		if code != 503 || errorCode(res) != "unavailable" {
			return fmt.Errorf("publish while Redis is down: %d %v", code, res)
		}
		return nil
	})
	code, body := get(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, `"broker"`) || strings.Contains(body, `"broker":"ok"`) {
		t.Fatalf("readyz while Redis is down: %d %s", code, body)
	}
	// The client is still connected: it gets an answer (an error) on the
	// same socket.
	if p := lc.request("$channels", "history", map[string]any{"channel": "chat:room"}); p["response_status"] != 503.0 {
		t.Fatalf("history while Redis is down: %v", p)
	}

	proxy.Restore()
	eventually(t, 10*time.Second, func() error {
		if code, body := get(t, base+"/readyz"); code != 200 {
			return fmt.Errorf("readyz after Redis is back: %d %s", code, body)
		}
		return nil
	})
	// Deliveries resume once the pub/sub connections resubscribed;
	// probes published before that are missed live.
	var last float64
	eventually(t, 10*time.Second, func() error {
		code, res := publishAPI(t, base, "probe")
		if code != 200 {
			return fmt.Errorf("publish after Redis is back: %d %v", code, res)
		}
		last = res["offset"].(float64)
		lc.mu.Lock()
		defer lc.mu.Unlock()
		for _, m := range lc.in {
			if p, _ := m["payload"].(map[string]any); p["action"] == "message" && p["offset"] == last {
				return nil
			}
		}
		return fmt.Errorf("publication %v not delivered yet", last)
	})
	// A client that saw offset 2 recovers everything after it.
	back := newLiveClient(t, base)
	hist := back.ok("history", map[string]any{"channel": "chat:room", "limit": 1})
	d := back.ok("subscribe", map[string]any{"channel": "chat:room", "since": map[string]any{"offset": 2, "epoch": hist["epoch"]}})
	pubs := d["publications"].([]any)
	if d["recovered"] != true || len(pubs) != int(last)-2 || pubs[0].(map[string]any)["offset"] != 3.0 {
		t.Fatalf("recovery after the outage: %v", d)
	}
}

// CLIENT KILL of the server's Redis connections: it reconnects by itself,
// its subscriptions are restored, and what was published meanwhile is
// recovered from history.
func TestRedisClientKill(t *testing.T) {
	prefix := testenv.RedisPrefix(t)
	base, _ := start(t, func(c *config.Config) {
		channelsConfig(c)
		c.APIKeys = []config.Secret{faultsAPIKey}
		c.Broker.Driver, c.Broker.URL, c.Broker.Prefix = "redis", config.Secret(testenv.RedisURL(t)), prefix
	}, Options{})
	lc := newLiveClient(t, base)
	lc.ok("subscribe", map[string]any{"channel": "chat:room"})
	publishAPI(t, base, 1)
	first := lc.push("message", "chat:room")

	admin := testenv.RedisClient(t)
	ctx := context.Background()
	list, err := admin.Do(ctx, admin.B().ClientList().Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(" "+line+" ", " name="+prefix+" ") {
			continue // only this server's connections, named after its prefix
		}
		for _, f := range strings.Fields(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				var n int64
				fmt.Sscan(id, &n)
				if admin.Do(ctx, admin.B().ClientKill().Id(n).Build()).Error() == nil {
					killed++
				}
			}
		}
	}
	if killed < 2 {
		t.Fatalf("killed %d connections, want the command and pub/sub ones", killed)
	}
	var last float64
	eventually(t, 10*time.Second, func() error {
		code, res := publishAPI(t, base, "probe")
		if code != 200 {
			return fmt.Errorf("publish after CLIENT KILL: %d %v", code, res)
		}
		last = res["offset"].(float64)
		lc.mu.Lock()
		defer lc.mu.Unlock()
		for _, m := range lc.in {
			if p, _ := m["payload"].(map[string]any); p["action"] == "message" && p["offset"] == last {
				return nil
			}
		}
		return fmt.Errorf("publication %v not delivered yet", last)
	})
	back := newLiveClient(t, base)
	d := back.ok("subscribe", map[string]any{"channel": "chat:room", "since": map[string]any{"offset": first["offset"], "epoch": first["epoch"]}})
	if pubs := d["publications"].([]any); d["recovered"] != true || len(pubs) != int(last)-1 {
		t.Fatalf("recovery after CLIENT KILL: %v", d)
	}
}

// PostgreSQL lost at runtime (every connection cut by a proxy): writes
// and reads answer 503 unavailable, /readyz says the store fails, nothing
// acknowledged is lost, and service resumes by itself.
func TestPostgresLostAtRuntime(t *testing.T) {
	pg, err := url.Parse(testenv.PostgresSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, pg.Host)
	pg.Host = proxy.Addr()
	base, _ := start(t, func(c *config.Config) {
		c.Store.Driver, c.Store.URL, c.Store.ConnectTimeout = "postgres", config.Secret(pg.String()), config.Duration(time.Second)
		c.Resources = []config.Resource{{Name: "things", PKField: "id", PageSize: 25,
			Fields:      []config.Field{{Name: "name", Type: "string", Required: true}},
			Permissions: config.ResourcePermissions{Read: "anyone", Create: "anyone", Update: "anyone", Delete: "anyone"}}}
	}, Options{})
	things := base + "/api/resources/things/"
	var acked []any
	create := func(name string) (int, map[string]any) {
		code, res := call(t, "POST", things, map[string]any{"name": name}, false)
		if code == 201 {
			acked = append(acked, res["id"])
		}
		return code, res
	}
	for i := range 3 {
		if code, res := create(fmt.Sprint("before ", i)); code != 201 {
			t.Fatalf("create: %d %v", code, res)
		}
	}
	proxy.Cut()
	eventually(t, 10*time.Second, func() error {
		// REST answers in DRF's shape: {"detail": "..."}.
		if code, res := create("while down"); code != 503 || !strings.Contains(fmt.Sprint(res["detail"]), "unavailable") {
			return fmt.Errorf("create while PostgreSQL is down: %d %v", code, res)
		}
		return nil
	})
	if code, res := call(t, "GET", things, nil, false); code != 503 || !strings.Contains(fmt.Sprint(res["detail"]), "unavailable") {
		t.Fatalf("list while PostgreSQL is down: %d %v", code, res)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || strings.Contains(body, `"store":"ok"`) {
		t.Fatalf("readyz while PostgreSQL is down: %d %s", code, body)
	}
	proxy.Restore()
	eventually(t, 10*time.Second, func() error {
		if code, res := create("after"); code != 201 {
			return fmt.Errorf("create after PostgreSQL is back: %d %v", code, res)
		}
		return nil
	})
	for _, id := range acked {
		if code, res := call(t, "GET", fmt.Sprintf("%s%v/", things, id), nil, false); code != 200 {
			t.Fatalf("acknowledged record %v: %d %v", id, code, res)
		}
	}
}
