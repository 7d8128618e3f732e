package bench

import (
	"context"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/internal/testenv"
)

// The capture scenario measures every external write's event, through
// the memory broker and through Redis (the server then leads and
// publishes captured changes through the broker).
func TestCaptureScenario(t *testing.T) {
	for _, broker := range []string{"memory", "redis"} {
		t.Run(broker, func(t *testing.T) {
			cfg := CaptureConfig{StoreURL: testenv.Postgres(t), Rate: 200, Duration: time.Second, Writers: 2, Subscribers: 2, OverheadWrites: 20}
			if broker == "redis" {
				cfg.BrokerURL = testenv.RedisURL(t)
			}
			res, err := Capture(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			// 200 writes/s asked for a second; a loaded machine (CI beside
			// other work) makes fewer, which is not what this checks.
			if res.Broker != broker || res.Writes < 20 || res.Expected != 2*res.Writes || res.Received != res.Expected {
				t.Fatalf("%+v", res)
			}
			if !(res.LatencyMS.P50 > 0 && res.LatencyMS.P50 <= res.LatencyMS.P99) || res.Overhead <= 0 {
				t.Fatalf("figures %+v", res)
			}
		})
	}
}
