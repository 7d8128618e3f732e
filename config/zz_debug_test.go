package config

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func FuzzDebugHang(f *testing.F) {
	example, _ := os.ReadFile("../docs/examples/switchyard.yaml")
	f.Add(example, "")
	f.Add([]byte(fullFile), "{a: {fields: {b: {type: int}}}}")
	f.Add([]byte("log: &a\n  <<: *a\n"), "")
	f.Add([]byte("a: &a [*a, *a]\nresources: {x: {fields: {f: {type: json, default: *a}}}}\n"), "")
	f.Add([]byte("channels:\n  namespaces:\n    b: &b {<<: [*b, *b]}\n"), "[")
	f.Fuzz(func(t *testing.T, data []byte, envDoc string) {
		tm := time.AfterFunc(2*time.Second, func() {
			os.WriteFile(fmt.Sprintf("/tmp/hang-%d.txt", time.Now().UnixNano()), []byte(fmt.Sprintf("%q\n%q\n", data, envDoc)), 0o644)
		})
		defer tm.Stop()
		env := []string{"SWITCHYARD_RESOURCES=" + envDoc, "SWITCHYARD_LISTEN=" + envDoc}
		if envDoc == "" {
			env = nil
		}
		Parse("fuzz.yaml", data, env)
	})
}
