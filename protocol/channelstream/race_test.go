//go:build race

package channelstream

// raceEnabled: the race detector adds its own memory to every
// allocation, so memory figures mean nothing under it.
const raceEnabled = true
