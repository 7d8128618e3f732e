package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
)

// A short soak: connections churn, publications and resource writes run,
// everything is delivered, nothing fails, and the figures are read at both
// ends. (Client and server share this process, so its figures are both
// of theirs; the descriptor count must still come back.)
func TestSoakScenario(t *testing.T) {
	u := startTestServer(t, func(cfg *config.Config) {
		maxLen := 100
		cfg.Resources = []config.Resource{{Name: ResourceBenchName, PKField: "id", PageSize: 25,
			Fields:      []config.Field{{Name: "name", Type: "string", MaxLength: &maxLen}, {Name: "t", Type: "int"}},
			Permissions: config.ResourcePermissions{Read: "anyone", Create: "anyone", Update: "anyone", Delete: "anyone"}}}
	})
	var progress strings.Builder
	res, err := Soak(context.Background(), SoakConfig{Target: u, APIKey: benchKey, Conns: 200, Duration: 3 * time.Second, Warmup: time.Second,
		Settle: 500 * time.Millisecond, Churn: 40, Channels: 4, Rate: 40, Writes: 30, Writers: 2, Watchers: 5, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.UnexpectedDisconnects != 0 {
		t.Fatalf("%d errors (%s), %d unexpected disconnects", res.Errors, res.FirstError, res.UnexpectedDisconnects)
	}
	if res.Reconnects < 40 || res.Publications < 40 || res.ResourceWrites < 30 || res.Deliveries < res.Publications*200/4/2 {
		t.Fatalf("too little load: %+v", res)
	}
	if res.ServerConns != [2]float64{202, 202} {
		t.Fatalf("server connections %v, want 202 at both ends", res.ServerConns)
	}
	if !res.OpenFDs.Pass || res.OpenFDs.Start < 200 || res.RSS.Start == 0 || res.Goroutines.Start == 0 {
		t.Fatalf("figures %+v", res)
	}
	var table strings.Builder
	res.WriteTable(&table)
	for _, want := range []string{"RSS", "goroutines", "open fds", "result: "} {
		if !strings.Contains(table.String(), want) {
			t.Fatalf("table without %q:\n%s", want, table.String())
		}
	}
	t.Log("\n" + table.String())
}
