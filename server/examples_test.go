package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyardhq/switchyard/config"
)

// yamlBlock returns the first ```yaml block of a markdown file that
// contains marker.
func yamlBlock(t *testing.T, path, marker string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range strings.Split(string(b), "```yaml\n")[1:] {
		block, _, _ := strings.Cut(part, "```")
		if strings.Contains(block, marker) {
			return []byte(block)
		}
	}
	t.Fatalf("%s: no yaml block with %q", path, marker)
	return nil
}

// The owner examples of the docs work as written (issue 11): each config
// is loaded as the docs show it — only where it runs (listen, data_dir,
// the store, the key file's path) and, for a fragment without auth, a
// signing secret are set by the test — and the story its resource
// promises plays out over REST: the creator owns the record and edits
// it, another user cannot, and nobody can hand the record to someone
// else.
func TestDocumentedOwnerExamples(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyFile := filepath.Join(t.TempDir(), "jwt.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)

	for _, ex := range []struct {
		name string
		yaml []byte
	}{
		{"docs/configuration.md", yamlBlock(t, "../docs/configuration.md", "update: owner:owner")},
		{"docs/resources.md", yamlBlock(t, "../docs/resources.md", "update: owner:owner")},
		{"docs/examples/switchyard.yaml", func() []byte { b, _ := os.ReadFile("../docs/examples/switchyard.yaml"); return b }()},
	} {
		t.Run(strings.ReplaceAll(ex.name, "/", "_"), func(t *testing.T) {
			y := strings.ReplaceAll(string(ex.yaml), "/etc/switchyard/jwt.pem", keyFile)
			cfg, err := config.Parse(ex.name, []byte(y), nil)
			if err != nil {
				t.Fatalf("the documented config does not load: %v", err)
			}
			cfg.Listen, cfg.DataDir = "127.0.0.1:0", t.TempDir()
			cfg.Store = config.Default().Store
			var mint func(user string) string
			if cfg.Auth.JWT.PublicKeyFile != "" {
				mint = func(user string) string {
					claims := jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}
					if cfg.Auth.JWT.Issuer != "" {
						claims["iss"] = cfg.Auth.JWT.Issuer
					}
					s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
					if err != nil {
						t.Fatal(err)
					}
					return s
				}
			} else {
				if cfg.Auth.JWT.HMACSecret == "" {
					cfg.Auth.JWT.HMACSecret = testSecret
				}
				secret := []byte(cfg.Auth.JWT.HMACSecret)
				mint = func(user string) string {
					s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
					return s
				}
			}
			srv, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logWriter{t}, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Listen(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			api := "http://" + srv.Addr().String() + "/api/resources/todos/"
			call := func(method, path, user, body string, want int) map[string]any {
				t.Helper()
				req, _ := http.NewRequest(method, api+path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+mint(user))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != want {
					t.Fatalf("%s %s as %s: %d %s, want %d", method, path, user, resp.StatusCode, b, want)
				}
				var m map[string]any
				json.Unmarshal(b, &m)
				return m
			}
			todo := call("POST", "", "alice", `{"title": "Buy milk"}`, 201)
			if todo["owner"] != "alice" {
				t.Fatalf("the creator does not own the record: %v", todo)
			}
			pk := fmt.Sprint(todo["id"]) + "/"
			if got := call("PATCH", pk, "alice", `{"done": true}`, 200); got["done"] != true || got["owner"] != "alice" {
				t.Fatalf("the owner's edit: %v", got)
			}
			call("PATCH", pk, "bob", `{"done": false}`, 403)
			call("DELETE", pk, "bob", ``, 403)
			if got := call("PATCH", pk, "alice", `{"owner": "bob"}`, 400); fmt.Sprint(got["owner"]) != "[This field is read-only.]" {
				t.Fatalf("handing the record over: %v", got)
			}
			if got := call("GET", pk, "bob", ``, 200); got["owner"] != "alice" || got["done"] != true {
				t.Fatalf("after the refusals: %v", got)
			}
			call("DELETE", pk, "alice", ``, 204)
		})
	}
}
