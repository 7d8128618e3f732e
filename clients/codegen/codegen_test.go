package codegen_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/clients/codegen"
	"github.com/switchyardhq/switchyard/config"
)

const testConfig = `
auth: {anonymous: false}
resources:
  todos:
    fields:
      title: {type: string, required: true, max_length: 200}
      notes: {type: text}
      done: {type: bool, default: false}
      rank: {type: int, min: 0, max: 100}
      score: {type: float}
      due: {type: datetime}
      meta: {type: json}
      slug: {type: string, unique: true, read_only: true}
      owner: {type: string}
    permissions: {read: owner:owner, create: authenticated, update: owner:owner, delete: owner:owner}
  things_with_pk:
    pk_field: pk
    fields:
      name: {type: string, required: true}
`

func generate(t *testing.T) string {
	t.Helper()
	cfg, err := config.Parse("codegen.yaml", []byte(testConfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := codegen.TypeScript(&b, cfg, "codegen.yaml"); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestTypeScript(t *testing.T) {
	out := generate(t)
	for _, want := range []string{
		"export interface TodosRecord {",
		"  readonly id: number;",
		"  title: string;",
		"  notes: string | null;",
		"  done: boolean | null;",
		"  rank: number | null;",
		"  score: number | null;",
		"  due: string | null;",
		"  meta: unknown;",
		"  readonly slug: string | null;",
		"  readonly owner: string | null;",
		"export interface ThingsWithPkRecord {",
		"  readonly pk: number;",
		`declare module "@switchyard/client" {`,
		"    todos: TodosRecord;",
		"    things_with_pk: ThingsWithPkRecord;",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

// usage uses the generated types the way an application does; every
// @ts-expect-error line must be an error, so tsc fails if the types are
// looser than they should be.
const usage = `import { connect } from "@switchyard/client";
import type { TodosRecord, ThingsWithPkRecord } from "./switchyard.gen";

const sy = connect("ws://localhost/live");

export async function main(): Promise<void> {
  const todos = sy.resource("todos");
  const t: TodosRecord = await todos.create({ title: "x", done: true });
  const title: string = t.title;
  const id: number = t.id;
  const due: string | null = t.due;
  const rows: TodosRecord[] = await todos.list({ filter: { done: false }, ordering: "-rank" });
  const q = sy.liveQuery("todos", { filter: { done: false } });
  const live: readonly TodosRecord[] = q.getSnapshot();
  q.on("update", (row, prev) => console.log(row.title, prev.title));
  const thing: ThingsWithPkRecord = await sy.resource("things_with_pk").retrieve(1);
  const pk: number = thing.pk;
  console.log(title, id, due, rows, live, pk);

  // @ts-expect-error: no such field
  console.log(t.nope);
  // @ts-expect-error: title is a string
  await todos.create({ title: 1 });
  // @ts-expect-error: no such resource
  sy.resource("nope");
  // @ts-expect-error: the primary key is read-only
  t.id = 2;
  // @ts-expect-error: the filter knows the fields
  sy.liveQuery("todos", { filter: { nope: 1 } });
  // @ts-expect-error: done is a boolean
  await todos.patch(1, { done: "yes" });
}
`

// TestTypeScriptChecks compiles the generated declarations and a program
// using them with tsc --noEmit against the built @switchyard/client.
func TestTypeScriptChecks(t *testing.T) {
	js, err := filepath.Abs("../js")
	if err != nil {
		t.Fatal(err)
	}
	tsc := filepath.Join(js, "node_modules", "typescript", "bin", "tsc")
	types := filepath.Join(js, "dist", "index.d.ts")
	for _, p := range []string{tsc, types} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is missing: make test installs and builds clients/js (%v)", p, err)
			}
			t.Skipf("clients/js is not built: cd clients/js && npm ci && npm run build")
		}
	}
	dir := t.TempDir()
	files := map[string]string{
		"switchyard.gen.ts": generate(t),
		"usage.ts":          usage,
		"tsconfig.json": `{"compilerOptions": {"strict": true, "noEmit": true, "target": "ES2020", "module": "ES2020",
  "moduleResolution": "bundler", "lib": ["ES2020", "DOM"], "types": [],
  "paths": {"@switchyard/client": [` + quote(types) + `]}},
  "files": ["switchyard.gen.ts", "usage.ts"]}`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", tsc, "--noEmit", "-p", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tsc --noEmit: %v\n%s", err, out)
	}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `\`, `\\`) + `"` }
