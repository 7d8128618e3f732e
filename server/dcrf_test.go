package server

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/testenv"
)

// dcrfDir returns tests/dcrf with its node_modules installed.
func dcrfDir(t *testing.T) string { return nodeTestDir(t, "dcrf", "dcrf-client") }

// nodeTestDir returns tests/<name> with its node_modules (holding module)
// installed. make test installs them (npm ci), so in CI a missing install
// fails the test; locally it skips, visibly.
func nodeTestDir(t *testing.T, name, module string) string {
	t.Helper()
	dir, err := filepath.Abs("../tests/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", module)); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("tests/%s/node_modules is missing: make test runs npm ci there (%v)", name, err)
		}
		t.Skipf("%s not installed: cd tests/%s && npm ci", module, name)
	}
	return dir
}

// TestDCRFClient runs the unmodified npm dcrf-client (tests/dcrf, pinned
// by its package-lock.json) against this server. CI installs it with npm
// ci; locally the test skips, visibly, until `cd tests/dcrf && npm ci`.
func TestDCRFClient(t *testing.T) { runDCRFClient(t, nil) }

// TestDCRFClientPostgres runs the same suite with the resources in
// PostgreSQL (a schema of the test's own) and the Redis broker.
func TestDCRFClientPostgres(t *testing.T) {
	runDCRFClient(t, clusterConfig(t, testenv.RedisPrefix(t), testenv.PostgresSchema(t)))
}

func runDCRFClient(t *testing.T, backends func(*config.Config)) {
	dir := dcrfDir(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is required for the dcrf-client tests")
	}
	base, _ := start(t, func(c *config.Config) {
		maxLen := 64
		fields := []config.Field{{Name: "name", Type: "string", MaxLength: &maxLen, Required: true}, {Name: "counter", Type: "int", Default: 0}}
		open := config.ResourcePermissions{Read: "anyone", Create: "anyone", Update: "anyone", Delete: "anyone"}
		c.Resources = []config.Resource{
			{Name: "things", PKField: "pk", Fields: fields, PageSize: 25, Permissions: open},
			{Name: "things_with_id", PKField: "id", Fields: fields, PageSize: 25, Permissions: open},
		}
		if backends != nil {
			backends(c)
		}
	}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "dcrf.test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SWITCHYARD_URL=ws"+strings.TrimPrefix(base, "http")+"/live")
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("dcrf-client tests failed: %v", err)
	}
	// 12 cases × 2 streams, their 2 parents, and the queue-before-connect case.
	if !strings.Contains(string(out), "ℹ pass 27") || !strings.Contains(string(out), "ℹ fail 0") {
		t.Fatalf("unexpected summary: want 19 passing and none failing")
	}
}

// TestDCRFClientReconnect restarts the server under a connected
// dcrf-client: the client reconnects, resubscribes and gets the next
// change, and the data survived the restart.
func TestDCRFClientReconnect(t *testing.T) {
	dir := dcrfDir(t)
	data := t.TempDir()
	resources := func(c *config.Config) {
		c.DataDir = data // the restarted server finds the same database
		maxLen := 64
		c.Resources = []config.Resource{{Name: "things", PKField: "pk", PageSize: 25,
			Fields:      []config.Field{{Name: "name", Type: "string", MaxLength: &maxLen, Required: true}, {Name: "counter", Type: "int", Default: 0}},
			Permissions: config.ResourcePermissions{Read: "anyone", Create: "anyone", Update: "anyone", Delete: "anyone"}}}
	}
	base, stop := start(t, resources, Options{})
	addr := strings.TrimPrefix(base, "http://")
	cmd := exec.Command("node", "reconnect.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SWITCHYARD_URL=ws://"+addr+"/live")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "SUBSCRIBED") {
		t.Fatalf("client: %q", lines.Text())
	}
	stop() // graceful: the client sees 1001 and starts reconnecting
	start(t, func(c *config.Config) { resources(c); c.Listen = addr }, Options{})
	io.WriteString(stdin, "RESTARTED\n")
	var out []string
	for lines.Scan() {
		out = append(out, lines.Text())
	}
	if err := cmd.Wait(); err != nil || len(out) == 0 || out[len(out)-1] != "EVENT after restart" {
		t.Fatalf("client after restart: %v %q", err, out)
	}
}
