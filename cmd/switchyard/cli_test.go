package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// commands are every command and subcommand, as typed.
var commands = [][]string{
	{"serve"}, {"config", "check"}, {"config", "init"}, {"token"},
	{"migrate", "drop-column"}, {"healthcheck"}, {"version"},
	{"capture", "status"}, {"capture", "install"}, {"capture", "remove"},
	{"bench", "idle"}, {"bench", "fanout"}, {"bench", "floor"}, {"bench", "resources"}, {"bench", "longpoll"}, {"bench", "capture"},
	{"codegen", "ts"}, {"dashboard", "hash-password"},
}

// groups answer --help with the list of their subcommands.
var groups = [][]string{{}, {"config"}, {"migrate"}, {"bench"}, {"dashboard"}, {"capture"}}

// TestHelpEverywhere: -h and --help on every command print its usage and
// flags on stdout and exit 0.
func TestHelpEverywhere(t *testing.T) {
	for _, cmd := range append(append([][]string{}, commands...), groups...) {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string{}, cmd...), h)
			code, out, errOut := runCmd(t, t.TempDir(), nil, args...)
			if code != 0 || !strings.Contains(out, "Usage") || errOut != "" {
				t.Errorf("switchyard %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
			}
		}
	}
	// The flags of each command are listed, under the names the docs use.
	for cmd, flags := range map[string][]string{
		"serve":               {"--config", "--listen", "--data-dir", "--log-format", "--log-level"},
		"token":               {"--user", "--info", "--ttl", "--config", "--channels"},
		"config init":         {"--force"},
		"migrate drop-column": {"--config", "--data-dir", "--yes"},
		"healthcheck":         {"--url", "--config", "--timeout"},
		"bench resources":     {"--writers", "--conns", "--duration", "--target", "--json"},
		"bench idle":          {"--conns", "--target-pid", "--settle"},
		"bench floor":         {"--conns", "--rate", "--size", "--duration", "--json", "--with-fanout", "--compress", "--io-uring"},
		"bench fanout":        {"--conns", "--rate", "--compress"},
	} {
		_, out, _ := runCmd(t, t.TempDir(), nil, append(strings.Fields(cmd), "--help")...)
		for _, f := range flags {
			if !strings.Contains(out, f+" ") && !strings.Contains(out, f+"\n") {
				t.Errorf("switchyard %s --help does not list %s:\n%s", cmd, f, out)
			}
		}
	}
	// A wrong flag is a usage error that points at --help.
	code, _, errOut := runCmd(t, t.TempDir(), nil, "token", "--usr", "alice")
	if code != 2 || !strings.Contains(errOut, "--help") {
		t.Errorf("token --usr: %d %s", code, errOut)
	}
}

// docCommand matches a command line in the docs: "switchyard" and what
// follows on the line up to a backtick, a pipe, a comment or a new
// command.
var docCommand = regexp.MustCompile("switchyard((?: +[^ `|#;&]+)+)")

// TestDocumentedFlagsAppearInHelp: every flag the docs give a command is
// one its --help lists.
func TestDocumentedFlagsAppearInHelp(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md", "../../Makefile", "../../dist/Dockerfile")
	known := map[string]bool{}
	for _, c := range commands {
		known[strings.Join(c, " ")] = true
	}
	help := map[string]string{}
	helpOf := func(cmd string) string {
		if h, ok := help[cmd]; !ok {
			_, out, _ := runCmd(t, t.TempDir(), nil, append(strings.Fields(cmd), "--help")...)
			help[cmd] = out
			return out
		} else {
			return h
		}
	}
	checked := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			for _, m := range docCommand.FindAllStringSubmatch(line, -1) {
				words := strings.Fields(m[1])
				var cmd []string
				switch {
				case len(words) >= 2 && known[words[0]+" "+words[1]]:
					cmd = words[:2]
				case known[words[0]]:
					cmd = words[:1]
				case strings.HasPrefix(words[0], "--"):
					cmd = []string{"serve"}
				default:
					continue // prose, or a command without flags
				}
				for _, w := range words[len(cmd):] {
					flag, _, _ := strings.Cut(w, "=")
					if !regexp.MustCompile(`^--[a-z][a-z-]*$`).MatchString(flag) || flag == "--help" || flag == "--version" {
						continue
					}
					checked++
					if out := helpOf(strings.Join(cmd, " ")); !strings.Contains(out, flag+" ") && !strings.Contains(out, flag+"\n") {
						t.Errorf("%s: %q uses %s, which `switchyard %s --help` does not list", f, strings.TrimSpace(line), flag, strings.Join(cmd, " "))
					}
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d documented flags found: the scan is broken", checked)
	}
}

func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}, {"-version"}} {
		code, out, _ := runCmd(t, t.TempDir(), nil, args...)
		if code != 0 || !regexp.MustCompile(`^switchyard \S+ \(commit \S+\)\n$`).MatchString(out) {
			t.Errorf("%v: %d %q", args, code, out)
		}
	}
}

// config check fails for what serve refuses, with the same keys.
func TestConfigCheckRefusesWhatServeRefuses(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "cluster.yaml", "store: {driver: postgres, url: \"postgres://u@db/sy\"}\nbroker: {driver: nats, url: \"nats://127.0.0.1:4222\"}\n")
	code, out, errOut := runCmd(t, dir, nil, "config", "check", file)
	if code != 2 || strings.Contains(out, "ok") || strings.Contains(errOut, "store.driver") || !strings.Contains(errOut, "broker.driver: nats is not available in this build") {
		t.Fatalf("config check: %d %q %q", code, out, errOut)
	}
	code, _, serveErr := runCmd(t, dir, nil, "serve", "--config", file, "--listen", "127.0.0.1:0")
	if code != 2 || !strings.Contains(serveErr, "broker.driver") {
		t.Fatalf("serve: %d %q", code, serveErr)
	}
	// A JWT key file that does not parse: serve refuses it, so does check.
	key := writeFile(t, dir, "key.pem", "not a key\n")
	file = writeFile(t, dir, "jwt.yaml", "auth: {jwt: {public_key_file: "+key+"}}\n")
	if code, _, errOut := runCmd(t, dir, nil, "config", "check", file); code != 2 || !strings.Contains(errOut, "auth.jwt.public_key_file") {
		t.Fatalf("bad key file: %d %q", code, errOut)
	}
}

// config init writes a private, commented file with fresh secrets that
// passes the check and serves; token mints what that server accepts.
func TestConfigInitAndToken(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCmd(t, dir, nil, "config", "init")
	if code != 0 || !strings.Contains(out, "wrote switchyard.yaml") {
		t.Fatalf("config init: %d %q %q", code, out, errOut)
	}
	path := filepath.Join(dir, "switchyard.yaml")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	first, _ := os.ReadFile(path)
	if !strings.Contains(string(first), "# ") || strings.Contains(string(first), "JWT_SECRET") {
		t.Fatalf("not a commented file with its secrets filled in:\n%s", first)
	}
	if code, out, errOut := runCmd(t, dir, nil, "config", "check", "switchyard.yaml"); code != 0 || out != "switchyard.yaml: ok\n" {
		t.Fatalf("check of the generated file: %d %q %q", code, out, errOut)
	}
	// Kept unless --force; another run has other secrets.
	if code, _, errOut := runCmd(t, dir, nil, "config", "init"); code != 2 || !strings.Contains(errOut, "--force") {
		t.Fatalf("second init: %d %q", code, errOut)
	}
	if again, _ := os.ReadFile(path); string(again) != string(first) {
		t.Fatal("the existing file was changed without --force")
	}
	code, stdout, _ := runCmd(t, dir, nil, "config", "init", "-")
	secret := regexp.MustCompile(`hmac_secret: "([^"]+)"`)
	a, b := secret.FindStringSubmatch(string(first)), secret.FindStringSubmatch(stdout)
	if code != 0 || a == nil || b == nil || a[1] == b[1] || len(a[1]) < 16 {
		t.Fatalf("secrets %v and %v: want two different ones of at least 16 characters", a, b)
	}
	if code, _, _ := runCmd(t, dir, nil, "config", "init", "--force"); code != 0 {
		t.Fatal("init --force")
	}

	// The minted token connects as its user, with its info.
	_, _, base := serveProcess(t, dir, nil, "--config", "switchyard.yaml")
	code, tok, errOut := runCmd(t, dir, nil, "token", "--user", "alice", "--info", `{"name": "Alice"}`, "--ttl", "10m")
	if code != 0 {
		t.Fatalf("token: %d %q", code, errOut)
	}
	tok = strings.TrimSpace(tok)
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/live?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var hello struct{ Payload map[string]any }
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := c.ReadJSON(&hello); err != nil || hello.Payload["user"] != "alice" {
		t.Fatalf("connected as %v (%v)", hello.Payload, err)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		t.Fatal(err)
	}
	if exp, _ := claims.GetExpirationTime(); exp == nil || time.Until(exp.Time) > 10*time.Minute || time.Until(exp.Time) < 9*time.Minute {
		t.Fatalf("exp %v, want in 10 minutes", exp)
	}
	if fmt.Sprint(claims["info"]) != "map[name:Alice]" {
		t.Fatalf("info %v", claims["info"])
	}
}

func TestTokenRefusals(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no secret", nil, []string{"--user", "alice"}, "auth.jwt.hmac_secret"},
		{"no user", []string{"SWITCHYARD_AUTH_JWT_HMAC_SECRET=0123456789abcdef0123"}, nil, "--user is required"},
		{"bad info", []string{"SWITCHYARD_AUTH_JWT_HMAC_SECRET=0123456789abcdef0123"}, []string{"--user", "a", "--info", "{nope"}, "--info must be a JSON value"},
		{"bad ttl", []string{"SWITCHYARD_AUTH_JWT_HMAC_SECRET=0123456789abcdef0123"}, []string{"--user", "a", "--ttl", "-1h"}, "--ttl must be positive"},
	} {
		code, out, errOut := runCmd(t, dir, tc.env, append([]string{"token"}, tc.args...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: %d %q %q", tc.name, code, out, errOut)
		}
	}
	// simplejwt's claim: the user id goes where the server reads it.
	env := []string{"SWITCHYARD_AUTH_JWT_HMAC_SECRET=0123456789abcdef0123", "SWITCHYARD_AUTH_JWT_USER_CLAIM=user_id"}
	code, tok, _ := runCmd(t, dir, env, "token", "--user", "42")
	claims := jwt.MapClaims{}
	if _, err := jwt.NewParser().ParseWithClaims(strings.TrimSpace(tok), claims, func(*jwt.Token) (any, error) { return []byte("0123456789abcdef0123"), nil }); code != 0 || err != nil || claims["user_id"] != "42" {
		t.Fatalf("user_id token: %d %v %v", code, claims, err)
	}
}

// Under --log-format json (or its variable, or the file's log.format),
// a fatal start-up error is JSON log lines, like every other line.
func TestFatalErrorsAreJSON(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", "limits:\n  max_mesage_size: 1KiB\nlisten: nowhere\n")
	badJSON := writeFile(t, dir, "badjson.yaml", "log: {format: json}\nlisten: nowhere\n")
	busy := freeAddr(t)
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", busy)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"flag", nil, []string{"serve", "--config", bad, "--log-format", "json"}, 2, "limits.max_mesage_size"},
		{"environment", []string{"SWITCHYARD_LOG_FORMAT=json"}, []string{"serve", "--config", bad}, 2, "limits.max_mesage_size"},
		{"the file itself", nil, []string{"serve", "--config", badJSON}, 2, "listen"},
		{"flag error", nil, []string{"serve", "--log-format", "json", "--listen", "bad"}, 2, "listen"},
		{"at run time", nil, []string{"serve", "--log-format", "json", "--listen", busy, "--data-dir", filepath.Join(dir, "d")}, 1, "address already in use"},
	} {
		code, _, errOut := runCmd(t, dir, tc.env, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, want %d; stderr %q", tc.name, code, tc.code, errOut)
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(errOut))
		errors := 0
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("%s: not a JSON line: %q", tc.name, sc.Text())
				continue
			}
			if m["level"] == "ERROR" {
				errors++
			}
		}
		if errors == 0 {
			t.Errorf("%s: no error line:\n%s", tc.name, errOut)
		}
	}
	// Text stays text.
	if _, _, errOut := runCmd(t, dir, nil, "serve", "--config", bad); !strings.HasPrefix(errOut, "switchyard: ") {
		t.Errorf("text mode: %q", errOut)
	}
}

// The hint printed when a field was removed is a command that runs as
// printed and lets the server start.
func TestMigrateHintRunsVerbatim(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "my data's dir")
	os.Mkdir(sub, 0o755)
	cfg := func(fields string) string {
		return "data_dir: " + filepath.Join(sub, "db") + "\nresources:\n  todos:\n    fields: {" + fields + "}\n"
	}
	withOld := writeFile(t, sub, "with old.yaml", cfg("title: {type: string}, old: {type: string, unique: true}"))
	cmd, _, base := serveProcess(t, dir, nil, "--config", withOld)
	resp, err := http.Post(base+"/api/resources/todos/", "application/json", strings.NewReader(`{"title": "kept", "old": "dropped"}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %v %v", resp, err)
	}
	resp.Body.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	without := writeFile(t, sub, "without old.yaml", cfg("title: {type: string}"))
	code, _, errOut := runCmd(t, dir, nil, "serve", "--config", without, "--listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, "the field was removed") {
		t.Fatalf("serve without the field: %d %q", code, errOut)
	}
	var hint string
	for _, l := range strings.Split(errOut, "\n") {
		if strings.Contains(l, "migrate drop-column") && strings.HasPrefix(strings.TrimSpace(l), binary) {
			hint = strings.TrimSpace(l)
		}
	}
	if hint == "" {
		t.Fatalf("no command to run in:\n%s", errOut)
	}
	sh := exec.Command("sh", "-c", hint)
	sh.Dir = dir
	sh.Env = testEnv()
	if out, err := sh.CombinedOutput(); err != nil || !strings.Contains(string(out), "dropped column old of todos") {
		t.Fatalf("%s: %v\n%s", hint, err, out)
	}
	_, _, base = serveProcess(t, dir, nil, "--config", without)
	resp, err = http.Get(base + "/api/resources/todos/")
	if err != nil {
		t.Fatal(err)
	}
	var page struct{ Results []map[string]any }
	json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if len(page.Results) != 1 || page.Results[0]["title"] != "kept" || page.Results[0]["old"] != nil {
		t.Fatalf("after the drop: %v", page.Results)
	}
}

func TestMigrateDropColumnRefusals(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "c.yaml", "data_dir: "+filepath.Join(dir, "data")+"\nresources:\n  todos:\n    fields: {title: {type: string}}\n")
	if code, _, errOut := runCmd(t, dir, nil, "migrate", "drop-column", "todos", "title", "--config", file, "--yes"); code != 2 || !strings.Contains(errOut, "resources.todos.fields.title is still declared") {
		t.Fatalf("declared field: %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, dir, nil, "migrate", "drop-column", "todos", "x", "--config", file, "--yes"); code != 1 || !strings.Contains(errOut, "no database") {
		t.Fatalf("no database: %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, dir, nil, "migrate", "drop-column", "todos"); code != 2 || !strings.Contains(errOut, "usage") {
		t.Fatalf("missing field: %d %q", code, errOut)
	}
}

// An unwritable data directory is reported with "permission denied" and
// the path, by serve and by config check, never as SQLite's code 14.
func TestUnwritableDataDir(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("uses Linux credentials or permissions")
	}
	// Root writes anywhere: run the binary as nobody then, from a
	// directory nobody may read and execute.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		os.Chmod(filepath.Dir(binary), 0o755)
	}
	base, err := os.MkdirTemp("", "switchyard-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(base, 0o755); os.RemoveAll(base) })
	readOnly := filepath.Join(base, "read-only")
	os.Mkdir(readOnly, 0o755)
	// A writable directory holding a database that is not writable.
	ownDir := filepath.Join(base, "own")
	os.Mkdir(ownDir, 0o777)
	os.WriteFile(filepath.Join(ownDir, "switchyard.db"), nil, 0o444)
	if cred == nil {
		os.Chmod(readOnly, 0o555)
	} else {
		os.Chown(ownDir, 65534, 65534)
	}
	os.Chmod(base, 0o755)

	run := func(args ...string) (int, string) {
		cmd := exec.Command(binary, args...)
		cmd.Dir = base
		cmd.Env = testEnv()
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}
	for _, dataDir := range []string{readOnly, filepath.Join(readOnly, "sub", "dir")} {
		code, out := run("serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir)
		if code == 0 || !strings.Contains(out, "permission denied") || !strings.Contains(out, readOnly) || strings.Contains(out, "(14)") || !strings.Contains(out, "data_dir") {
			t.Errorf("serve --data-dir %s: %d %s", dataDir, code, out)
		}
		cfg := filepath.Join(base, "c.yaml")
		os.WriteFile(cfg, []byte("data_dir: "+dataDir+"\n"), 0o644)
		if code, out := run("config", "check", cfg); code != 2 || !strings.Contains(out, "permission denied") || !strings.Contains(out, "data_dir") {
			t.Errorf("config check with data_dir %s: %d %s", dataDir, code, out)
		}
	}
	code, out := run("serve", "--listen", "127.0.0.1:0", "--data-dir", ownDir)
	if code == 0 || !strings.Contains(out, "permission denied") || !strings.Contains(out, filepath.Join(ownDir, "switchyard.db")) || strings.Contains(out, "(14)") {
		t.Errorf("a read-only database file: %d %s", code, out)
	}
}

func TestHealthcheck(t *testing.T) {
	dir := t.TempDir()
	_, _, base := serveProcess(t, dir, nil)
	addr := strings.TrimPrefix(base, "http://")
	// The address comes from the same configuration as serve's.
	if code, out, errOut := runCmd(t, dir, []string{"SWITCHYARD_LISTEN=" + addr}, "healthcheck"); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("healthy: %d %q %q", code, out, errOut)
	}
	_, port, _ := strings.Cut(addr, ":")
	if code, _, errOut := runCmd(t, dir, []string{"SWITCHYARD_LISTEN=0.0.0.0:" + port}, "healthcheck"); code != 0 {
		t.Fatalf("0.0.0.0 is asked on loopback: %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, dir, nil, "healthcheck", "--url", "http://"+freeAddr(t)+"/healthz", "--timeout", "2s"); code != 1 || !strings.Contains(errOut, "healthcheck") {
		t.Fatalf("nothing listening: %d %q", code, errOut)
	}
}

// make dist stamps the version and commit into a static binary and lists
// it in SHA256SUMS; the host's platform only (all six are make dist's).
func TestDistStampsVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a release binary")
	}
	if _, err := exec.LookPath("make"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("make is not installed")
		}
		t.Skip("make is not installed")
	}
	out := t.TempDir()
	platform := runtime.GOOS + "/" + runtime.GOARCH
	mk := exec.Command("make", "-C", "../..", "dist", "PLATFORMS="+platform, "VERSION=v1.2.3-test", "COMMIT=abc123def456", "DIST="+out)
	if b, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make dist: %v\n%s", err, b)
	}
	name := "switchyard-" + runtime.GOOS + "-" + runtime.GOARCH
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	bin := filepath.Join(out, name)
	v, err := exec.Command(bin, "version").Output()
	if err != nil || string(v) != "switchyard v1.2.3-test (commit abc123def456)\n" {
		t.Fatalf("version: %q %v", v, err)
	}
	data, _ := os.ReadFile(bin)
	sum := sha256.Sum256(data)
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil || strings.TrimSpace(string(sums)) != hex.EncodeToString(sum[:])+"  "+name {
		t.Fatalf("SHA256SUMS %q (%v), want the sum of %s", sums, err, name)
	}
	if runtime.GOOS == "linux" {
		// Static: no program interpreter (PT_INTERP), so no libc needed.
		if strings.Contains(string(data[:min(len(data), 4096)]), "ld-linux") {
			t.Fatal("dynamically linked")
		}
	}
}

// dist/Dockerfile builds from make dist's binaries: a static base, a
// non-root user, the /data volume, a HEALTHCHECK on /healthz through the
// binary (no curl in the image).
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../../dist/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var from, user, volume, health, copyBin string
	env := map[string]string{}
	for _, l := range strings.Split(strings.ReplaceAll(string(data), "\\\n", " "), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "FROM":
			from = f[1]
		case "USER":
			user = f[1]
		case "VOLUME":
			volume = strings.Join(f[1:], " ")
		case "HEALTHCHECK":
			health = l
		case "COPY":
			if strings.Contains(l, "switchyard-${TARGETOS}-${TARGETARCH}") {
				copyBin = l
			}
		case "ENV":
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
		}
	}
	if !strings.HasPrefix(from, "gcr.io/distroless/static") {
		t.Errorf("final stage FROM %s, want a static base", from)
	}
	if user == "" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
		t.Errorf("USER %q, want a non-root user", user)
	}
	if volume != `["/data"]` || env["SWITCHYARD_DATA_DIR"] != "/data" {
		t.Errorf("VOLUME %s, SWITCHYARD_DATA_DIR %q", volume, env["SWITCHYARD_DATA_DIR"])
	}
	if !strings.Contains(health, `"healthcheck"`) || env["SWITCHYARD_LISTEN"] == "" {
		t.Errorf("HEALTHCHECK %q with SWITCHYARD_LISTEN %q", health, env["SWITCHYARD_LISTEN"])
	}
	// The binary it copies is one make dist names.
	mk, _ := os.ReadFile("../../Makefile")
	if copyBin == "" || !strings.Contains(string(mk), "name=switchyard-$$os-$$arch$$ext") {
		t.Errorf("COPY %q does not match make dist's names", copyBin)
	}
}
