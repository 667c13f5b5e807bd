package postgres

// SweepLock is the advisory lock a replica holds while it sweeps.
const SweepLock int64 = sweepLock

// SetSweepChunk makes DetectAnomalies commit every n entries until the
// test ends (restore puts the default back).
func SetSweepChunk(n int64) (restore func()) {
	old := sweepChunk
	sweepChunk = n
	return func() { sweepChunk = old }
}

// SetBetweenChunks has DetectAnomalies call fn after each chunk it
// committed (with the seq it got to) and before the next, until the test
// ends.
func SetBetweenChunks(fn func(upTo int64)) (restore func()) {
	betweenChunks = fn
	return func() { betweenChunks = nil }
}
