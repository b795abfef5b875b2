package child

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFreePortsDiffer(t *testing.T) {
	ports, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: want 5 distinct", ports)
		}
		seen[p] = true
	}
}

func TestOutputTakesConcurrentWrites(t *testing.T) {
	var o Output
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				fmt.Fprintf(&o, "%d\n", i)
			}
		}()
	}
	wg.Wait()
	if o.Len() != 8*100*2 || len(o.String()) != o.Len() {
		t.Fatalf("%d bytes, want %d", o.Len(), 8*100*2)
	}
}

func TestProcessThatExitsIsNotReady(t *testing.T) {
	var out Output
	p, err := Start(exec.Command("sh", "-c", "echo bye; exit 3"), &out)
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(time.Now().Add(time.Minute), func() bool { return false })
	if err == nil || !strings.Contains(err.Error(), "exited before it answered") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("WaitReady: %v, want the exit named", err)
	}
	if got := out.String(); !strings.Contains(got, "$ sh -c") || !strings.Contains(got, "bye") {
		t.Fatalf("output %q: want the command line and what it wrote", got)
	}
}
