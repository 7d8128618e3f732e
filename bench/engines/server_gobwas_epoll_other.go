//go:build !linux

package main

import "errors"

// serveGobwasEpoll needs epoll: the candidate exists on Linux only.
func serveGobwasEpoll(string) error {
	return errors.New("gobwas-epoll: epoll is Linux-only")
}
