package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/server"
	"github.com/switchyardhq/switchyard/store"
)

const serveAbout = `Runs the server until SIGINT or SIGTERM, then shuts down gracefully.

The configuration comes from the embedded default, then the file (--config, else
$SWITCHYARD_CONFIG, else ./switchyard.yaml if it exists), then SWITCHYARD_*
variables, then these flags (docs/configuration.md).`

func (c *cli) serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgFile := fs.String("config", "", "configuration file (YAML)")
	listen := fs.String("listen", "", "address to listen on, host:port (config key listen)")
	dataDir := fs.String("data-dir", "", "directory for the embedded store (config key data_dir)")
	logFormat := fs.String("log-format", "", "log format: text or json (config key log.format)")
	logLevel := fs.String("log-level", "", "log level: debug, info, warn or error (config key log.level)")
	pos, err := c.parse(fs, "switchyard serve [flags]", serveAbout, args)
	if err != nil {
		return err
	}
	path := configPath(*cfgFile, c.environ)
	// Until the configuration is loaded, a fatal error is a JSON log line
	// if JSON logs were asked for anywhere they can be.
	fail := func(err error) error {
		if logFormatOf(*logFormat, c.environ, path) == config.LogFormatJSON {
			return fatal{err: err, log: slog.New(slog.NewJSONHandler(c.stderr, nil))}
		}
		return err
	}
	if len(pos) > 0 {
		return fail(errUsage{fmt.Errorf("serve: unexpected arguments: %s", strings.Join(pos, " "))})
	}
	cfg, err := config.Load(path, c.environ)
	if err != nil {
		return fail(err)
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
		return fail(err)
	}
	log := newLogger(cfg.Log, c.stderr)
	fail = func(err error) error {
		if cfg.Log.Format == config.LogFormatJSON {
			return fatal{err: err, log: log}
		}
		return err
	}
	if path == "" {
		log.Info("no configuration file: running on the embedded default")
	} else {
		log.Info("configuration loaded", "file", path)
	}
	srv, err := server.New(cfg, server.Options{Logger: log})
	if err != nil {
		return fail(c.withMigrateHint(err, path, *dataDir))
	}
	if err := srv.Run(ctx); err != nil {
		return fail(err)
	}
	return nil
}

// logFormatOf is the log format asked for before the configuration is
// known to be valid: the flag, else SWITCHYARD_LOG_FORMAT, else the
// file's log.format if it can be read.
func logFormatOf(flagValue string, environ []string, path string) string {
	if flagValue != "" {
		return flagValue
	}
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, config.EnvName("log.format")+"="); ok {
			return v
		}
	}
	if path == "" {
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var peek struct {
		Log struct {
			Format string `yaml:"format"`
		} `yaml:"log"`
	}
	_ = yaml.Unmarshal(data, &peek) // a broken file: text it is
	return peek.Log.Format
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == config.LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// fatal is an error that ends the command and is reported as log lines
// (JSON under --log-format json) rather than as plain text.
type fatal struct {
	err error
	log *slog.Logger
}

func (f fatal) Error() string { return f.err.Error() }
func (f fatal) Unwrap() error { return f.err }

// report logs the error: one line per configuration problem, with its
// source, line and key as attributes, or one line with the error.
func (f fatal) report() {
	var ce config.Errors
	if errors.As(f.err, &ce) {
		for _, e := range ce {
			attrs := []any{"key", e.Key, "err", e.Msg}
			if e.Source != "" {
				attrs = append(attrs, "source", e.Source)
			}
			if e.Line > 0 {
				attrs = append(attrs, "line", e.Line)
			}
			f.log.Error("invalid configuration", attrs...)
		}
		return
	}
	var h migrateHint
	if errors.As(f.err, &h) {
		f.log.Error("cannot start", "err", h.err.Error(), "fix", h.command)
		return
	}
	f.log.Error("cannot start", "err", f.err.Error())
}

// migrateHint is a refused migration with the command that applies it,
// built from how this serve was run, so that it runs verbatim.
type migrateHint struct {
	err     error
	command string
}

func (h migrateHint) Error() string {
	return h.err.Error() + "\n  to drop it and its data, stop the server and run:\n    " + h.command
}
func (h migrateHint) Unwrap() error { return h.err }

// withMigrateHint adds the exact drop-column command to an error that a
// removed field caused.
func (c *cli) withMigrateHint(err error, path, dataDir string) error {
	var me *store.MigrationError
	if !errors.As(err, &me) || !me.Drop {
		return err
	}
	argv := []string{c.self, "migrate", "drop-column", me.Table, me.Column}
	if path != "" {
		argv = append(argv, "--config", path)
	}
	if dataDir != "" {
		argv = append(argv, "--data-dir", dataDir)
	}
	argv = append(argv, "--yes")
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = shellQuote(a)
	}
	return migrateHint{err: err, command: strings.Join(quoted, " ")}
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// letters, digits and -_./:=@%+,
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@%+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
