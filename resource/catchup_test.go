package resource

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/store"
)

// lastSeq is the Seq of the newest event a service emitted.
func (e *events) lastSeq() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.got[len(e.got)-1].Seq
}

func TestCatchUpReplaysTheRecordsChanges(t *testing.T) {
	svc, ev, db := serviceDB(t, config.ResourcePermissions{})
	ctx := context.Background()
	out, _ := svc.Create(ctx, "things", As(""), json.RawMessage(`{"name": "a"}`))
	pk := int64(decode(t, out)["pk"].(float64))
	since := ev.lastSeq()
	svc.Write(ctx, "things", As(""), pk, json.RawMessage(`{"counter": 1}`), Patch)
	p1 := ev.lastSeq()
	svc.Create(ctx, "things", As(""), json.RawMessage(`{"name": "other"}`)) // another record: not in the catch-up
	svc.Write(ctx, "things", As(""), pk, json.RawMessage(`{"name": "b"}`), Update)
	u2 := ev.lastSeq()

	cu, err := svc.CatchUp(ctx, "things", As(""), pk, since, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !cu.Recovered || cu.Seq != u2 || len(cu.Events) != 2 || cu.Current != nil {
		t.Fatalf("catch-up %+v", cu)
	}
	// Each change as it left the record.
	if e := cu.Events[0]; e.Seq != p1 || e.Op != store.OpUpdate || decode(t, e.Data)["counter"] != 1.0 || decode(t, e.Data)["name"] != "a" {
		t.Fatalf("first change %+v %s", e, e.Data)
	}
	if e := cu.Events[1]; e.Seq != u2 || decode(t, e.Data)["name"] != "b" || decode(t, e.Data)["counter"] != 1.0 {
		t.Fatalf("second change %+v %s", e, e.Data)
	}
	// From a later position, only what came after; from the newest or from
	// 0, nothing but the position.
	if cu, _ = svc.CatchUp(ctx, "things", As(""), pk, p1, 0); len(cu.Events) != 1 || cu.Events[0].Seq != u2 {
		t.Fatalf("after p1: %+v", cu)
	}
	for _, s := range []int64{u2, 0} {
		if cu, _ = svc.CatchUp(ctx, "things", As(""), pk, s, 0); !cu.Recovered || len(cu.Events) != 0 || cu.Seq != u2 {
			t.Fatalf("since %d: %+v", s, cu)
		}
	}
	// More missing than the limit: the record as it is instead.
	if cu, _ = svc.CatchUp(ctx, "things", As(""), pk, since, 1); cu.Recovered || len(cu.Events) != 0 || decode(t, cu.Current)["name"] != "b" || cu.Seq != u2 {
		t.Fatalf("over the limit: %+v", cu)
	}
	// A position this store never reached (another or a restored
	// database): not recovered either.
	if cu, _ = svc.CatchUp(ctx, "things", As(""), pk, u2+5, 0); cu.Recovered || cu.Current == nil {
		t.Fatalf("since beyond the log: %+v", cu)
	}
	// Deleted: the delete is the last change, without data.
	svc.Delete(ctx, "things", As(""), pk)
	del := ev.lastSeq()
	cu, err = svc.CatchUp(ctx, "things", As(""), pk, since, 0)
	if err != nil || !cu.Recovered || len(cu.Events) != 3 || cu.Events[2].Op != store.OpDelete || cu.Events[2].Seq != del || cu.Events[2].Data != nil {
		t.Fatalf("after the delete: %+v %v", cu, err)
	}
	// Already gone at since: not found, as for a plain subscribe.
	if _, err := svc.CatchUp(ctx, "things", As(""), pk, del, 0); switchyard.ErrorCode(err) != switchyard.CodeNotFound {
		t.Fatalf("gone before since: %v", err)
	}
	if _, err := svc.CatchUp(ctx, "things", As(""), pk, 0, 0); switchyard.ErrorCode(err) != switchyard.CodeNotFound {
		t.Fatalf("gone, since 0: %v", err)
	}
	// Trimmed past since: not recovered; the record is gone (Current nil).
	if err := db.TrimChanges(ctx, p1); err != nil {
		t.Fatal(err)
	}
	if cu, err = svc.CatchUp(ctx, "things", As(""), pk, since, 0); err != nil || cu.Recovered || cu.Current != nil || cu.Seq != del {
		t.Fatalf("trimmed: %+v %v", cu, err)
	}
	// Since at the trimmed position still recovers.
	if cu, err = svc.CatchUp(ctx, "things", As(""), pk, p1, 0); err != nil || !cu.Recovered || len(cu.Events) != 2 {
		t.Fatalf("since the trimmed position: %+v %v", cu, err)
	}
	var ve *ValidationError
	if _, err := svc.CatchUp(ctx, "things", As(""), pk, -1, 0); !errors.As(err, &ve) || ve.Fields["since"] == nil {
		t.Fatalf("negative since: %v", err)
	}
	if _, err := svc.CatchUp(ctx, "nope", As(""), pk, 1, 0); switchyard.ErrorCode(err) != switchyard.CodeNotFound {
		t.Fatalf("unknown resource: %v", err)
	}
}

// The catch-up shows what retrieve shows: another owner's record does not
// exist, a deleted one exists for its owner only.
func TestCatchUpPermissions(t *testing.T) {
	svc, ev, db := serviceDB(t, config.ResourcePermissions{Read: "owner:owner", Create: "owner:owner", Update: "owner:owner", Delete: "owner:owner"})
	ctx := context.Background()
	out, _ := svc.Create(ctx, "things", As("alice"), json.RawMessage(`{"name": "hers"}`))
	pk := int64(decode(t, out)["pk"].(float64))
	since := ev.lastSeq()
	svc.Write(ctx, "things", As("alice"), pk, json.RawMessage(`{"counter": 2}`), Patch)
	if cu, err := svc.CatchUp(ctx, "things", As("alice"), pk, since, 0); err != nil || len(cu.Events) != 1 {
		t.Fatalf("owner: %+v %v", cu, err)
	}
	if _, err := svc.CatchUp(ctx, "things", As("bob"), pk, since, 0); switchyard.ErrorCode(err) != switchyard.CodeNotFound {
		t.Fatalf("another user: %v", err)
	}
	if _, err := svc.CatchUp(ctx, "things", As(""), pk, since, 0); switchyard.ErrorCode(err) != switchyard.CodeForbidden {
		t.Fatalf("anonymous: %v", err)
	}
	svc.Delete(ctx, "things", As("alice"), pk)
	if cu, err := svc.CatchUp(ctx, "things", As("alice"), pk, since, 0); err != nil || len(cu.Events) != 2 || cu.Events[1].Op != store.OpDelete {
		t.Fatalf("owner after the delete: %+v %v", cu, err)
	}
	if _, err := svc.CatchUp(ctx, "things", As("bob"), pk, since, 0); switchyard.ErrorCode(err) != switchyard.CodeNotFound {
		t.Fatalf("another user after the delete: %v", err)
	}
	// When the log no longer keeps the deleted record's state, nobody can
	// be shown to have owned it: not found.
	if err := db.TrimChanges(ctx, ev.lastSeq()-1); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CatchUp(ctx, "things", As("alice"), pk, since, 0); switchyard.ErrorCode(err) != switchyard.CodeNotFound {
		t.Fatalf("owner, the state trimmed away: %v", err)
	}
}
