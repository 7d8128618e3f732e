package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/switchyardhq/switchyard/auth"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/resource"
)

// CheckConfig reports what New would refuse in a configuration that passed
// config validation: drivers this build does not serve, a JWT key file
// that does not parse, resources that do not compile, a data directory
// this process cannot write. Problems come back as config.Errors naming
// the keys, so `switchyard config check` refuses exactly what `switchyard
// serve` would, before anything starts. New calls it; a driver added to
// the build is added here and nowhere else.
//
// CheckConfig creates nothing: for a data_dir that does not exist yet it checks
// that its nearest existing parent is writable.
func CheckConfig(cfg config.Config) error {
	var errs config.Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, &config.Error{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if !slices.Contains(Drivers.Store, cfg.Store.Driver) {
		add("store.driver", "%s is not available in this build (%s are)", cfg.Store.Driver, strings.Join(Drivers.Store, ", "))
	}
	if !slices.Contains(Drivers.Broker, cfg.Broker.Driver) {
		add("broker.driver", "%s is not available in this build (%s are)", cfg.Broker.Driver, strings.Join(Drivers.Broker, ", "))
	}
	if _, err := auth.NewVerifier(cfg.Auth); err != nil {
		add("auth.jwt.public_key_file", "%v", err)
	}
	for _, r := range cfg.Resources {
		if r.External() {
			continue // its fields come from the catalog, checked at start
		}
		if _, err := resource.NewSchema(r); err != nil {
			add("resources."+r.Name, "%v", err)
		}
	}
	if cfg.Store.Driver == config.StoreSQLite {
		if err := checkWritableDir(cfg.DataDir); err != nil {
			add("data_dir", "%v", err)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// checkWritableDir reports whether dir can hold the database: an existing
// directory this process may create files in, or a path whose nearest
// existing parent is such a directory. The error names the path and says
// "permission denied" when that is the problem.
func checkWritableDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := abs; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) && filepath.Dir(p) != p {
			continue
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", p)
		}
		return probeWrite(p)
	}
}

// probeWrite creates and removes a file in dir.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, ".switchyard-probe-*")
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("%s: permission denied (the user running switchyard must be able to create files there)", dir)
		}
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
