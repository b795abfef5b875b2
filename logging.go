package paywall

import (
	"sync"
	"time"
)

// floodLogWindow is how often a repeated failure is logged at most.
const floodLogWindow = time.Minute

// logThrottle summarises a flood of one kind of failure: the first is logged
// at once, the rest are counted, and the next line, at least a minute later,
// says how many were left out. A flood of forged requests can then never
// fill the log; the metrics count every one.
type logThrottle struct {
	mu         sync.Mutex
	next       int64 // unix nanos before which lines are counted, not written
	suppressed int
}

// allow reports whether to write a line at t (unix nanos), and how many were
// left out since the last one written.
func (l *logThrottle) allow(t int64) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t < l.next {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.suppressed = 0
	l.next = t + int64(floodLogWindow)
	return true, n
}
