package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/postgres"
)

const captureUsage = `Usage:
  switchyard capture status|install|remove RESOURCE [--config FILE]
  switchyard capture install RESOURCE --sql [--config FILE]

Capture turns the row changes any program commits to a resource's PostgreSQL
table (psql, Django, a cron job) into resource events (docs/existing-tables.md).
serve installs it at start for resources with capture: trigger; these commands
show it, install it, or remove it cleanly. Each prints its flags with --help.
`

const captureAbout = `status: whether the capture trigger is installed and enabled on the resource's
table, and how many captured changes no process has published yet.
install: creates (or replaces) the trigger and its function, in one transaction;
with --sql, prints that SQL instead (for a DBA to run when Switchyard's role
may not create triggers). remove: drops the trigger (and the function when no
other table uses it); the table is left as it was, and changes already
recorded stay in the change log.`

func (c *cli) capture(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errUsage{errors.New("usage: switchyard capture status|install|remove RESOURCE (see switchyard capture --help)")}
	}
	op := args[0]
	switch op {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, captureUsage)
		return nil
	case "status", "install", "remove":
	default:
		return errUsage{fmt.Errorf("unknown capture command %q (have: status, install, remove)", op)}
	}
	fset := flag.NewFlagSet("capture "+op, flag.ContinueOnError)
	cfgFile := fset.String("config", "", "configuration file (default: $SWITCHYARD_CONFIG, else ./switchyard.yaml)")
	sqlOnly := false
	if op == "install" {
		fset.BoolVar(&sqlOnly, "sql", false, "print the SQL that installs capture instead of running it")
	}
	synopsis := "switchyard capture " + op + " RESOURCE [--config FILE]"
	pos, err := c.parse(fset, synopsis, captureAbout, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errUsage{errors.New("usage: " + synopsis)}
	}
	cfg, err := config.Load(configPath(*cfgFile, c.environ), c.environ)
	if err != nil {
		return err
	}
	var r *config.Resource
	for i := range cfg.Resources {
		if cfg.Resources[i].Name == pos[0] {
			r = &cfg.Resources[i]
		}
	}
	if r == nil {
		return errUsage{fmt.Errorf("capture: no resource %q in the configuration", pos[0])}
	}
	if cfg.Store.Driver != config.StorePostgres {
		return errUsage{fmt.Errorf("capture: needs store.driver: postgres (it is %s)", cfg.Store.Driver)}
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: string(cfg.Store.URL), MaxConns: 2, ConnectTimeout: time.Duration(cfg.Store.ConnectTimeout)})
	if err != nil {
		return err
	}
	defer db.Close()
	res := *r
	if res.External() {
		cols, err := db.Describe(ctx, res.Table)
		if err != nil {
			return fmt.Errorf("capture: resources.%s.table: %w", res.Name, err)
		}
		if res, _, err = resource.FromCatalog(res, cols); err != nil {
			return fmt.Errorf("capture: %w", err)
		}
	}
	sc, err := resource.NewSchema(res)
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	if !res.External() {
		// A table Switchyard manages: it must exist, as serve made it.
		if _, err := db.Describe(ctx, res.Name); err != nil {
			return fmt.Errorf("capture: the table of %s: %w (start serve once to create it)", res.Name, err)
		}
	}
	if err := db.Migrate(ctx, []store.Table{sc.Table()}); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	switch op {
	case "status":
		st, err := db.CaptureStatus(ctx, res.Name)
		if err != nil {
			return err
		}
		state := "not installed"
		switch {
		case st.Installed && st.Enabled:
			state = "installed"
		case st.Installed:
			state = "installed but disabled (ALTER TABLE … ENABLE TRIGGER " + postgres.CaptureTrigger + ")"
		}
		fmt.Fprintf(c.stdout, "resource:  %s\ntable:     %s\ncapture:   %s (configured: %s)\npending:   %d captured changes not yet published\n", res.Name, st.Table, state, res.Capture, st.Pending)
		if st.Definition != "" {
			fmt.Fprintf(c.stdout, "trigger:   %s\n", st.Definition)
		}
	case "install":
		if sqlOnly {
			q, err := db.InstallSQL(ctx, res.Name)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, q)
			return nil
		}
		if err := db.InstallCapture(ctx, res.Name); err != nil {
			var pe *postgres.PrivilegeError
			if errors.As(err, &pe) {
				return fmt.Errorf("capture install: %w", err)
			}
			return err
		}
		fmt.Fprintf(c.stdout, "capture installed on %s (resource %s)\n", sc.Table().Source, res.Name)
	case "remove":
		if err := db.RemoveCapture(ctx, res.Name); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "capture removed from %s (resource %s)\n", sc.Table().Source, res.Name)
		if res.Capture == config.CaptureTrigger {
			fmt.Fprintf(c.stdout, "resources.%s still says capture: trigger: serve installs it again at start unless you change that\n", res.Name)
		}
	}
	return nil
}
