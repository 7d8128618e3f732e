package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// binary is the switchyard command built once for the tests that run it
// as a process (signals, exit codes, working directory).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "switchyard-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "switchyard")
	build := exec.Command("go", "build", "-race", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runCmd runs the binary to completion.
func runCmd(t *testing.T, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(testEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// testEnv is the environment without SWITCHYARD_* settings except the
// test services' (which the config package ignores).
func testEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SWITCHYARD_") && !strings.HasPrefix(kv, "SWITCHYARD_TEST_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVersionAndUsage(t *testing.T) {
	code, out, _ := runCmd(t, t.TempDir(), nil, "version")
	if code != 0 || !strings.HasPrefix(out, "switchyard ") {
		t.Fatalf("version: %d %q", code, out)
	}
	code, _, errOut := runCmd(t, t.TempDir(), nil, "frobnicate")
	if code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	code, _, errOut = runCmd(t, t.TempDir(), nil, "serve", "--no-such-flag")
	if code != 2 || !strings.Contains(errOut, "no-such-flag") {
		t.Fatalf("unknown flag: %d %q", code, errOut)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "listen: 127.0.0.1:9000\nchannels:\n  namespaces:\n    chat: {presence: true, history_size: 10, history_ttl: 1m, recover: true}\n")
	code, out, errOut := runCmd(t, dir, nil, "config", "check", good)
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("good file: %d %q %q", code, out, errOut)
	}
	bad := writeFile(t, dir, "bad.yaml", "listen: 127.0.0.1:9000\nlimits:\n  max_mesage_size: 1KiB\nchannels:\n  namespaces:\n    chat:\n      permissions: {publish: anyon}\n")
	code, _, errOut = runCmd(t, dir, nil, "config", "check", bad)
	if code != 2 {
		t.Fatalf("bad file exited %d", code)
	}
	for _, want := range []string{"bad.yaml:3", "limits.max_mesage_size", "bad.yaml:7", "channels.namespaces.chat.permissions.publish", "anyon"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("error output lacks %q:\n%s", want, errOut)
		}
	}
	code, _, errOut = runCmd(t, dir, nil, "config", "check", filepath.Join(dir, "missing.yaml"))
	if code != 2 || !strings.Contains(errOut, "missing.yaml") {
		t.Fatalf("missing file: %d %q", code, errOut)
	}
	// serve refuses to start on a bad file, with the same message.
	code, _, errOut = runCmd(t, dir, nil, "serve", "--config", bad)
	if code != 2 || !strings.Contains(errOut, "limits.max_mesage_size") {
		t.Fatalf("serve with a bad file: %d %q", code, errOut)
	}
	// A bad environment variable is named.
	code, _, errOut = runCmd(t, dir, []string{"SWITCHYARD_LIMITS_MAX_MESSAGE_SIZE=lots"}, "config", "check", good)
	if code != 2 || !strings.Contains(errOut, "SWITCHYARD_LIMITS_MAX_MESSAGE_SIZE") {
		t.Fatalf("bad env: %d %q", code, errOut)
	}
}

// serveProcess starts `switchyard serve` and waits until it is healthy.
func serveProcess(t *testing.T, dir string, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, string) {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(binary, append([]string{"serve", "--listen", addr}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(testEnv(), env...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd, &logs, base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not healthy: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServeEmbeddedDefaultAndGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	cmd, logs, base := serveProcess(t, dir, nil, "--log-format", "json", "--log-level", "debug")
	if _, err := os.Stat(filepath.Join(dir, "switchyard-data", "switchyard.db")); err != nil {
		t.Fatalf("embedded default did not create ./switchyard-data/switchyard.db: %v", err)
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()

	wsBase := "ws" + strings.TrimPrefix(base, "http") + "/live"
	// A token the server cannot verify (no JWT key is configured) is
	// refused before the upgrade, and never logged.
	if _, resp, err := websocket.DefaultDialer.Dial(wsBase+"?token=secret-in-query", nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("unverifiable token: %v", err)
	}
	c, _, err := websocket.DefaultDialer.Dial(wsBase+"?ticket=another-secret-in-query", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	closed := make(chan int, 1)
	go func() {
		for {
			_, _, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					closed <- ce.Code
				} else {
					closed <- -1
				}
				return
			}
		}
	}()

	began := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("not stopped within 10 s\n%s", logs.String())
	}
	t.Logf("stopped in %v", time.Since(began))
	if code := <-closed; code != 1001 {
		t.Fatalf("WebSocket closed with %d, want 1001", code)
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"no configuration file: running on the embedded default"`) {
		t.Errorf("logs are not JSON or lack the default notice:\n%s", out)
	}
	if strings.Contains(out, "secret-in-query") {
		t.Errorf("a query string reached the logs:\n%s", out)
	}
	if !strings.Contains(out, `"path":"/live"`) {
		t.Errorf("the debug request log lacks the path (so the check above proves nothing):\n%s", out)
	}
}

func TestServeEnvironmentAndFlagPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "switchyard.yaml", "data_dir: from-file\nlog: {level: info}\n")
	// ./switchyard.yaml is found by default; the environment beats the
	// file and the flag beats the environment.
	cmd, _, base := serveProcess(t, dir, []string{"SWITCHYARD_DATA_DIR=from-env"}, "--data-dir", "from-flag")
	_ = file
	if _, err := os.Stat(filepath.Join(dir, "from-flag")); err != nil {
		t.Fatalf("flag did not win: %v", err)
	}
	for _, d := range []string{"from-file", "from-env"} {
		if _, err := os.Stat(filepath.Join(dir, d)); err == nil {
			t.Errorf("%s was used", d)
		}
	}
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGINT: %v", err)
	}
}

func TestRunInProcess(t *testing.T) {
	// The same entry point without a process, for coverage of run's
	// exit codes.
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"version"}, nil, &out, &errOut); code != 0 {
		t.Fatal(code)
	}
	if code := run(context.Background(), []string{"config"}, nil, &out, &errOut); code != 2 {
		t.Fatal(code)
	}
	if code := run(context.Background(), []string{"bench", "idle", "--target", "http://10.1.2.3:80", "--conns", "1"}, nil, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "loopback") {
		t.Fatalf("non-loopback target: %d %s", code, errOut.String())
	}
}

// Writes acknowledged over REST survive kill -9 of the server, and the
// restarted server (same data directory) serves them.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	cfgFile := writeFile(t, dir, "switchyard.yaml", `
data_dir: data
resources:
  notes:
    fields:
      text: {type: text, required: true}
    permissions: {read: anyone, create: anyone, update: anyone, delete: anyone}
`)
	cmd, logs, base := serveProcess(t, dir, nil, "--config", cfgFile)
	var ids []string
	for i := range 200 {
		resp, err := http.Post(base+"/api/resources/notes/", "application/json", strings.NewReader(fmt.Sprintf(`{"text": "note %d"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("POST %d: %v\n%s", resp.StatusCode, m, logs.String())
		}
		ids = append(ids, fmt.Sprint(m["id"]))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	_, _, base = serveProcess(t, dir, nil, "--config", cfgFile)
	for _, id := range ids {
		resp, err := http.Get(base + "/api/resources/notes/" + id + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("note %s lost after kill -9: %d", id, resp.StatusCode)
		}
	}
}

// Two wires on one path: config check and serve refuse it, naming both
// keys.
func TestConfigCheckPathClaimedTwice(t *testing.T) {
	dir := t.TempDir()
	clash := writeFile(t, dir, "clash.yaml", "channelstream: {enabled: true, secret: a-secret}\nbinding:\n  path: /ws\n")
	for _, args := range [][]string{{"config", "check", clash}, {"serve", "--config", clash}} {
		code, _, errOut := runCmd(t, dir, nil, args...)
		if code != 2 {
			t.Fatalf("%v exited %d", args, code)
		}
		for _, want := range []string{"clash.yaml:3", "binding.path", "channelstream.prefix", "/ws"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%v: error output lacks %q:\n%s", args, want, errOut)
			}
		}
	}
}
