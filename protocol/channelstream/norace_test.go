//go:build !race

package channelstream

const raceEnabled = false
