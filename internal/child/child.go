// Package child holds what the tests and the load run need for the
// processes they start (Caddy, Mailpit, the auth service): free loopback
// ports to give them, and a buffer for their output.
package child

import (
	"bytes"
	"net"
	"sync"
)

// FreePorts returns n distinct loopback ports that were free a moment ago.
// All n are held at once, so that they differ.
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Output is a buffer safe for the concurrent writes of a process's stdout
// and stderr and the reads of whoever waits on it.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

// Len is the number of bytes written so far.
func (o *Output) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Len()
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}
