// Package config holds Switchyard's server configuration: the Config type
// and its sections, the embedded default, and the loader that reads one
// YAML file and the SWITCHYARD_* environment variables on top of it.
//
// Precedence, lowest first: the embedded default (Default), the YAML file,
// the environment, and finally command-line flags, which cmd/switchyard
// applies to the loaded Config before calling Config.Validate again.
//
// Loading is strict. An unknown key, a value of the wrong type or a value
// outside its allowed set is an error that names the dotted key path and
// where the value came from (file and line, or environment variable); all
// such errors are collected and returned together as Errors. Nothing falls
// back silently to a default.
//
// Every key can be set from the environment as SWITCHYARD_ followed by the
// upper-cased dotted key path with "." replaced by "_", for example
// SWITCHYARD_LIMITS_MAX_MESSAGE_SIZE for limits.max_message_size. The
// mapping is derived from the yaml struct tags, so the struct definitions
// are the single source of truth; docs/configuration.md lists every key.
//
// Secrets (JWT HMAC secret, API keys, Channelstream secrets, store and
// broker URLs) have the type Secret, which prints and logs as "[redacted]".
package config
