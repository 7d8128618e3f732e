package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyardhq/switchyard/config"
)

const tokenAbout = `Mints an HS256 token for USER with the configured auth.jwt.hmac_secret, for
development and curl examples, and prints it. The user id goes in the claim
named by auth.jwt.user_claim; iss and aud are set when the configuration
requires them. It refuses when no HMAC secret is configured (with
auth.jwt.public_key_file, tokens come from your identity provider).

  switchyard token --user alice --ttl 10m
  wscat -c "ws://127.0.0.1:8000/live?token=$(switchyard token --user alice)"`

func (c *cli) token(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	user := fs.String("user", "", "the user id (required)")
	info := fs.String("info", "", `the info claim, a JSON value passed to presence, e.g. '{"name": "Alice"}'`)
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token (exp)")
	channels := fs.String("channels", "", "comma-separated channels the connection joins at connect")
	cfgFile := fs.String("config", "", "configuration file (default: $SWITCHYARD_CONFIG, else ./switchyard.yaml)")
	pos, err := c.parse(fs, "switchyard token --user ID [--info JSON] [--ttl DURATION] [--channels A,B] [--config FILE]", tokenAbout, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errUsage{fmt.Errorf("token: unexpected arguments: %s", strings.Join(pos, " "))}
	}
	if *user == "" {
		return errUsage{errors.New("token: --user is required")}
	}
	if *ttl <= 0 {
		return errUsage{fmt.Errorf("token: --ttl must be positive (got %s)", *ttl)}
	}
	cfg, err := config.Load(configPath(*cfgFile, c.environ), c.environ)
	if err != nil {
		return err
	}
	j := cfg.Auth.JWT
	if j.HMACSecret == "" {
		why := "this configuration has none"
		if j.PublicKeyFile != "" {
			why = "this configuration verifies tokens with auth.jwt.public_key_file: your identity provider signs them"
		}
		return errUsage{fmt.Errorf("token: needs auth.jwt.hmac_secret (%s); set it in the file or SWITCHYARD_AUTH_JWT_HMAC_SECRET", why)}
	}
	now := time.Now()
	claims := jwt.MapClaims{
		j.UserClaim: *user,
		"iat":       now.Unix(),
		"exp":       now.Add(*ttl).Unix(),
	}
	if j.Issuer != "" {
		claims["iss"] = j.Issuer
	}
	if j.Audience != "" {
		claims["aud"] = j.Audience
	}
	if *info != "" {
		if !json.Valid([]byte(*info)) {
			return errUsage{fmt.Errorf("token: --info must be a JSON value, like '{\"name\": \"Alice\"}'")}
		}
		claims["info"] = json.RawMessage(*info)
	}
	if *channels != "" {
		var list []string
		for ch := range strings.SplitSeq(*channels, ",") {
			if ch = strings.TrimSpace(ch); ch != "" {
				list = append(list, ch)
			}
		}
		claims["channels"] = list
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(j.HMACSecret))
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(c.stdout, signed)
	return nil
}
