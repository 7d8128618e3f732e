package config

import (
	"strings"
	"time"
)

// Dashboard configures the admin dashboard served at /dashboard/. It is
// off unless Enabled is set and one of Password and PasswordHash is.
type Dashboard struct {
	// Enabled serves the dashboard; it requires Password or PasswordHash.
	Enabled bool `yaml:"enabled"`
	// Password is the admin password (at least 12 characters). Prefer
	// PasswordHash in files: a bcrypt hash is not the password.
	Password Secret `yaml:"password"`
	// PasswordHash is the bcrypt hash of the admin password ($2a$, $2b$ or
	// $2y$, 60 characters), as `switchyard dashboard hash-password` or
	// htpasswd -B print it. Mutually exclusive with Password.
	PasswordHash Secret `yaml:"password_hash"`
	// SessionTTL is how long a sign-in lasts; after it the browser is sent
	// back to the login page.
	SessionTTL Duration `yaml:"session_ttl"`
	// LoginAttempts is how many sign-ins one address may try per
	// LoginLockout; past it the address is locked out until the period
	// ends. A success clears the address's count.
	LoginAttempts int `yaml:"login_attempts"`
	// LoginAttemptsGlobal is how many failed sign-ins all addresses
	// together may make per LoginLockout; past it every sign-in is
	// refused until the period ends.
	LoginAttemptsGlobal int `yaml:"login_attempts_global"`
	// LoginLockout is the period over which sign-in attempts are counted
	// and how long a lockout lasts.
	LoginLockout Duration `yaml:"login_lockout"`
}

// DefaultDashboard returns the dashboard's defaults: off.
func DefaultDashboard() Dashboard {
	return Dashboard{
		SessionTTL:          Duration(8 * time.Hour),
		LoginAttempts:       5,
		LoginAttemptsGlobal: 50,
		LoginLockout:        Duration(15 * time.Minute),
	}
}

// MinDashboardPassword is the shortest plain dashboard.password accepted.
const MinDashboardPassword = 12

func (c *Config) validateDashboard(v *validator) {
	d := c.Dashboard
	switch {
	case d.Password != "" && d.PasswordHash != "":
		v.add("dashboard.password_hash", "set either dashboard.password or dashboard.password_hash, not both")
	case d.Enabled && d.Password == "" && d.PasswordHash == "":
		v.addAt("dashboard.password", "dashboard.enabled", "dashboard.password or dashboard.password_hash is required when dashboard.enabled is true")
	}
	if d.Password != "" && len([]rune(string(d.Password))) < MinDashboardPassword {
		v.add("dashboard.password", "must be at least %d characters", MinDashboardPassword)
	}
	if h := string(d.PasswordHash); h != "" && !IsBcryptHash(h) {
		v.add("dashboard.password_hash", "must be a bcrypt hash: 60 characters starting with $2a$, $2b$ or $2y$ (switchyard dashboard hash-password prints one)")
	}
	if d.SessionTTL < Duration(time.Minute) {
		v.add("dashboard.session_ttl", "must be at least 1m (got %s)", d.SessionTTL)
	}
	if d.LoginAttempts < 1 {
		v.add("dashboard.login_attempts", "must be at least 1 (got %d)", d.LoginAttempts)
	}
	if d.LoginAttemptsGlobal < 1 {
		v.add("dashboard.login_attempts_global", "must be at least 1 (got %d)", d.LoginAttemptsGlobal)
	}
	v.positive("dashboard.login_lockout", d.LoginLockout)
}

// IsBcryptHash reports whether s has the shape of a bcrypt hash (the
// dashboard checks it fully when it starts).
func IsBcryptHash(s string) bool {
	if len(s) != 60 {
		return false
	}
	for _, p := range []string{"$2a$", "$2b$", "$2y$"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// RedactURL shows the scheme, user name, host and path of a URL and
// hides its password and query, as the logs show store.url and
// broker.url.
func RedactURL(s string) string { return redactURL(s) }
