// Command switchyard runs the Switchyard server and its tools.
//
//	switchyard [serve] [flags]                  run the server (the default)
//	switchyard config check FILE                validate a file against this build
//	switchyard config init [FILE]               write a commented starting configuration with new secrets
//	switchyard token --user ID [flags]          mint an HS256 token for development
//	switchyard migrate drop-column RES FIELD    drop a field removed from the configuration, with its data
//	switchyard capture status|install|remove RES  the capture trigger of a PostgreSQL table
//	switchyard healthcheck [flags]              GET /healthz of the configured server (container HEALTHCHECK)
//	switchyard dashboard hash-password          print the bcrypt hash of a password read on stdin
//	switchyard version | --version              print the version and commit
//	switchyard bench SCENARIO [flags]           measure a server (see docs/BENCHMARKS.md)
//
// Every command and subcommand prints its flags with -h or --help and
// exits 0. Exit codes: 0 success, 1 failure at run time, 2 bad usage or
// configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/switchyardhq/switchyard/bench"
	"github.com/switchyardhq/switchyard/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `Usage:
  switchyard [serve] [--config FILE] [--listen ADDR] [--data-dir DIR] [--log-format text|json] [--log-level LEVEL]
  switchyard config check FILE
  switchyard config init [FILE] [--force]
  switchyard token --user ID [--info JSON] [--ttl DURATION] [--channels A,B] [--config FILE]
  switchyard migrate drop-column RESOURCE FIELD [--config FILE] [--data-dir DIR] [--yes]
  switchyard capture status|install|remove RESOURCE [--config FILE]   (existing tables, docs/existing-tables.md)
  switchyard healthcheck [--url URL] [--config FILE] [--timeout DURATION]
  switchyard dashboard hash-password [--cost N] < PASSWORD   (for dashboard.password_hash, docs/dashboard.md)
  switchyard version
  switchyard codegen ts [--config FILE]   (TypeScript declarations of the resources, docs/clients.md)
  switchyard bench idle|fanout|floor|resources|longpoll|signals|soak|capture [--target URL] [--conns N] [--json] ...  (docs/BENCHMARKS.md)

Every command prints its flags with --help (switchyard bench fanout --help, ...).

With no configuration file (no --config, no SWITCHYARD_CONFIG, no ./switchyard.yaml),
serve runs on the embedded default: SQLite under ./switchyard-data/, the in-memory
broker, anonymous access, listening on 127.0.0.1:8000. Every key can also be set
with a SWITCHYARD_* environment variable (docs/configuration.md).
`

// errUsage marks errors that exit with code 2.
type errUsage struct{ err error }

func (e errUsage) Error() string { return e.err.Error() }
func (e errUsage) Unwrap() error { return e.err }

// cli is what every command runs with: the environment, the output
// streams and the name the binary was run as (for commands it prints).
type cli struct {
	environ        []string
	stdout, stderr io.Writer
	self           string
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	self := "switchyard"
	if len(os.Args) > 0 && os.Args[0] != "" {
		self = os.Args[0]
	}
	c := &cli{environ: environ, stdout: stdout, stderr: stderr, self: self}
	err := c.dispatch(ctx, args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var f fatal
	if errors.As(err, &f) {
		f.report()
	} else {
		fmt.Fprintln(stderr, "switchyard:", err)
	}
	var ue errUsage
	var be bench.UsageError
	var ce config.Errors
	if errors.As(err, &ue) || errors.As(err, &be) || errors.As(err, &ce) {
		return 2
	}
	return 1
}

func (c *cli) dispatch(ctx context.Context, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(c.stdout, usage)
			return nil
		case "-version", "--version":
			return c.version(args[1:])
		}
	}
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return c.serve(ctx, args)
	case "config":
		return c.configCmd(args)
	case "token":
		return c.token(args)
	case "migrate":
		return c.migrate(ctx, args)
	case "capture":
		return c.capture(ctx, args)
	case "healthcheck":
		return c.healthcheck(ctx, args)
	case "version":
		return c.version(args)
	case "bench":
		return bench.Main(ctx, args, c.stdout, c.stderr)
	case "codegen":
		return c.codegen(args)
	case "dashboard":
		return c.dashboardCmd(args)
	}
	return errUsage{fmt.Errorf("unknown command %q\n\n%s", cmd, usage)}
}

// parse parses args with fs, flags and positional arguments in any order
// ("--" ends the flags), and returns the positional ones. -h or --help
// prints the command's help (synopsis, about, flags) on stdout and returns
// flag.ErrHelp, which exits 0.
func (c *cli) parse(fs *flag.FlagSet, synopsis, about string, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos, rest []string
	for i, a := range args {
		if a == "--" {
			args, rest = args[:i], args[i+1:]
			break
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(c.stdout, "Usage: %s\n\n%s\n", synopsis, about)
				if hasFlags(fs) {
					fmt.Fprintln(c.stdout, "\nFlags:")
					printFlags(c.stdout, fs)
				}
				return nil, flag.ErrHelp
			}
			return nil, errUsage{fmt.Errorf("%s: %w (see switchyard %s --help)", fs.Name(), err, fs.Name())}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	return append(pos, rest...), nil
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// configPath finds the configuration file: --config, then
// SWITCHYARD_CONFIG, then ./switchyard.yaml if it exists; "" means none.
func configPath(flagValue string, environ []string) string {
	if flagValue != "" {
		return flagValue
	}
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "SWITCHYARD_CONFIG="); ok && v != "" {
			return v
		}
	}
	if _, err := os.Stat("switchyard.yaml"); err == nil {
		return "switchyard.yaml"
	}
	return ""
}

// printFlags lists fs's flags the way the docs write them (--name).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if kind != "" {
			line += " " + kind
		}
		fmt.Fprintf(w, "%s\n      %s", line, usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
