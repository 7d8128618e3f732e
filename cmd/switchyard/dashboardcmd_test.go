package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchyardhq/switchyard/config"
)

// runStdin runs the binary with stdin.
func runStdin(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = testEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stdout.String(), stderr.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

// The printed hash is one the configuration accepts and that matches the
// password (and nothing else); short passwords and passwords in the
// arguments are refused.
func TestDashboardHashPassword(t *testing.T) {
	const pw = "a long admin password"
	code, out, errOut := runStdin(t, pw+"\n", "dashboard", "hash-password", "--cost", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	hash := strings.TrimSpace(out)
	if !config.IsBcryptHash(hash) || strings.Contains(out, pw) {
		t.Fatalf("output %q", out)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) != nil || bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw+"x")) == nil {
		t.Fatal("the hash does not match the password alone")
	}
	cfg, err := config.Parse("x.yaml", []byte("dashboard: {enabled: true, password_hash: '"+hash+"'}\n"), nil)
	if err != nil || string(cfg.Dashboard.PasswordHash) != hash {
		t.Fatalf("the configuration refuses the hash: %v", err)
	}
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"short\n", nil, "at least 12 characters"},
		{"", nil, "no password on stdin"},
		{pw + "\n", []string{pw}, "read from stdin"},
		{pw + "\n", []string{"--cost", "99"}, "--cost must be"},
	} {
		code, _, errOut := runStdin(t, tc.stdin, append([]string{"dashboard", "hash-password"}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q %v: exit %d %s, want 2 and %q", tc.stdin, tc.args, code, errOut, tc.want)
		}
	}
}
