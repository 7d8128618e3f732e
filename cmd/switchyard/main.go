// Command switchyard runs the Switchyard server and its tools.
//
//	switchyard [serve] [flags]        run the server (the default)
//	switchyard config check FILE      validate a configuration file
//	switchyard version                print the version
//	switchyard bench SCENARIO [flags] measure a server (see docs/BENCHMARKS.md)
//
// Exit codes: 0 success, 1 failure at run time, 2 bad usage or
// configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/bench"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/server"
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
  switchyard version
  switchyard bench idle|fanout|resources|longpoll|soak [--target URL] [--conns N] [--channels N]
                   [--rate N] [--duration D] [--size N] [--json]   (docs/BENCHMARKS.md)

With no configuration file (no --config, no SWITCHYARD_CONFIG, no ./switchyard.yaml),
serve runs on the embedded default: SQLite under ./switchyard-data/, the in-memory
broker, anonymous access, listening on 127.0.0.1:8000. Every key can also be set
with a SWITCHYARD_* environment variable (docs/configuration.md).
`

// errUsage marks errors that exit with code 2.
type errUsage struct{ err error }

func (e errUsage) Error() string { return e.err.Error() }
func (e errUsage) Unwrap() error { return e.err }

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, environ, stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "switchyard:", err)
	var ue errUsage
	var ce config.Errors
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return 2
	}
	return 1
}

func dispatch(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, environ, stderr)
	case "config":
		if len(args) != 2 || args[0] != "check" {
			return errUsage{errors.New("usage: switchyard config check FILE")}
		}
		return configCheck(args[1], environ, stdout)
	case "version":
		fmt.Fprintln(stdout, "switchyard", switchyard.Version)
		return nil
	case "bench":
		return bench.Main(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return errUsage{fmt.Errorf("unknown command %q\n\n%s", cmd, usage)}
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

func serve(ctx context.Context, args, environ []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgFile := fs.String("config", "", "configuration file (YAML)")
	listen := fs.String("listen", "", "address to listen on, host:port (config key listen)")
	dataDir := fs.String("data-dir", "", "directory for the embedded store (config key data_dir)")
	logFormat := fs.String("log-format", "", "log format: text or json (config key log.format)")
	logLevel := fs.String("log-level", "", "log level: debug, info, warn or error (config key log.level)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage{err}
	}
	if fs.NArg() > 0 {
		return errUsage{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	path := configPath(*cfgFile, environ)
	cfg, err := config.Load(path, environ)
	if err != nil {
		return err
	}
	// Flags come last: defaults < file < environment < flags.
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *logFormat != "" {
		cfg.Log.Format = *logFormat
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	if path == "" {
		log.Info("no configuration file: running on the embedded default")
	} else {
		log.Info("configuration loaded", "file", path)
	}
	srv, err := server.New(cfg, server.Options{Logger: log})
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func configCheck(path string, environ []string, stdout io.Writer) error {
	if _, err := os.Stat(path); err != nil {
		return errUsage{fmt.Errorf("config check: %w", err)}
	}
	if _, err := config.Load(path, environ); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return nil
}
