package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/switchyardhq/switchyard/clients/codegen"
	"github.com/switchyardhq/switchyard/config"
)

const codegenUsage = `Usage:
  switchyard codegen ts [--config FILE]

Prints TypeScript declarations for @switchyard/client: an interface per
resource of the configuration, and the augmentation that makes
client.resource("name") and client.liveQuery("name") typed (docs/clients.md).
The configuration is found as serve finds it (--config, SWITCHYARD_CONFIG,
./switchyard.yaml, else the embedded default).
`

// codegenCommand runs `switchyard codegen LANG`.
func codegenCommand(args, environ []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "ts" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, codegenUsage)
			return nil
		}
		return errUsage{errors.New("usage: switchyard codegen ts [--config FILE] (TypeScript is the only target)")}
	}
	fs := flag.NewFlagSet("codegen ts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, codegenUsage) }
	cfgFile := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args[1:]); err != nil {
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
	return codegen.TypeScript(stdout, cfg, path)
}
