package main

import (
	"strings"
	"testing"
)

// Two wires on one path: config check and serve refuse it, naming both
// keys; Channelstream's /ws and df_websockets' /ws/ coexist.
func TestConfigCheckDFWebsocketsPath(t *testing.T) {
	dir := t.TempDir()
	clash := writeFile(t, dir, "clash.yaml", "channelstream: {enabled: true, secret: a-secret}\ndf_websockets:\n  path: /ws\n")
	for _, args := range [][]string{{"config", "check", clash}, {"serve", "--config", clash}} {
		code, _, errOut := runCmd(t, dir, nil, args...)
		if code != 2 {
			t.Fatalf("%v exited %d", args, code)
		}
		for _, want := range []string{"clash.yaml:3", "df_websockets.path", "channelstream.prefix", "/ws"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%v: error output lacks %q:\n%s", args, want, errOut)
			}
		}
	}
	both := writeFile(t, dir, "both.yaml", "channelstream: {enabled: true, secret: a-secret}\n")
	if code, out, errOut := runCmd(t, dir, nil, "config", "check", both); code != 0 {
		t.Errorf("/ws and /ws/: exit %d %s %s", code, out, errOut)
	}
}
