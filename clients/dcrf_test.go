package clients_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dcrfImport is the import line of tests/dcrf: the only line the ported
// dcrf-client cases change to run against @switchyard/client.
const dcrfImport = "const dcrf = require('dcrf-client').default;"

// withSwitchyardClient copies a file of tests/dcrf into a temporary
// directory with its dcrf-client import replaced by the CommonJS build of
// @switchyard/client, and checks that nothing else differs. Other
// requires (ws) resolve from tests/dcrf/node_modules through NODE_PATH.
func withSwitchyardClient(t *testing.T, jsDir, name string) (dir string, env []string) {
	t.Helper()
	dcrfDir, err := filepath.Abs("../tests/dcrf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dcrfDir, "node_modules", "ws")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("tests/dcrf/node_modules is missing: make test runs npm ci there (%v)", err)
		}
		t.Skipf("tests/dcrf is not installed: cd tests/dcrf && npm ci")
	}
	src, err := os.ReadFile(filepath.Join(dcrfDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(src), dcrfImport) != 1 {
		t.Fatalf("tests/dcrf/%s no longer has exactly one %q", name, dcrfImport)
	}
	replacement := "const dcrf = require(" + jsString(filepath.Join(jsDir, "dist", "index.cjs")) + ").default;"
	ported := strings.Replace(string(src), dcrfImport, replacement, 1)
	a, b := strings.Split(string(src), "\n"), strings.Split(ported, "\n")
	changed := 0
	for i := range a {
		if a[i] != b[i] {
			changed++
		}
	}
	if len(a) != len(b) || changed != 1 {
		t.Fatalf("the port changed %d lines, want exactly the import", changed)
	}
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(ported), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, append(os.Environ(), "NODE_PATH="+filepath.Join(dcrfDir, "node_modules"))
}

func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// TestDCRFClientCases runs dcrf-client's ported integration cases
// (tests/dcrf/dcrf.test.js, which TestDCRFClient in server runs against the
// npm dcrf-client) against @switchyard/client, with only the import
// changed: the same 27 cases must pass.
func TestDCRFClientCases(t *testing.T) {
	jsDir := nodeDir(t)
	dir, env := withSwitchyardClient(t, jsDir, "dcrf.test.js")
	h := newHarness(t, testConfig, nil)
	env = append(env, "SWITCHYARD_URL=ws://"+h.proxy.Addr()+"/live")
	out := runNode(t, dir, env, 2*60e9, "--test", "--test-reporter=spec", "dcrf.test.js")
	// 12 cases × 2 streams, their 2 parents, and the queue-before-connect case.
	summary(t, out, 27)
}

// TestDCRFClientReconnect runs tests/dcrf/reconnect.js against
// @switchyard/client (import changed only): the server restarts under a
// subscribed client, which reconnects, resubscribes and gets the next
// change.
func TestDCRFClientReconnect(t *testing.T) {
	jsDir := nodeDir(t)
	dir, env := withSwitchyardClient(t, jsDir, "reconnect.js")
	h := newHarness(t, testConfig, nil)
	cmd := exec.Command("node", "reconnect.js")
	cmd.Dir = dir
	cmd.Env = append(env, "SWITCHYARD_URL=ws://"+h.proxy.Addr()+"/live")
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
	h.proxy.SetDown(true)
	h.stop()
	h.start()
	h.proxy.SetDown(false)
	io.WriteString(stdin, "RESTARTED\n")
	var out []string
	for lines.Scan() {
		out = append(out, lines.Text())
	}
	if err := cmd.Wait(); err != nil || len(out) == 0 || out[len(out)-1] != "EVENT after restart" {
		t.Fatalf("client after restart: %v %q", err, out)
	}
}
