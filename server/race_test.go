//go:build race

package server

// raceEnabled: the race detector adds shadow memory to every allocation,
// so memory figures mean nothing under it.
const raceEnabled = true
