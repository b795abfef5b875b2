package child

import (
	"fmt"
	"sync"
	"testing"
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
