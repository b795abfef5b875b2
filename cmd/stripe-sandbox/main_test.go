package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRunServesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"-addr", "127.0.0.1:0", "-webhook-url", "http://127.0.0.1:1/hook"}, pw, io.Discard)
		pw.Close()
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	var base string
	var out []string
	for sc.Scan() {
		line := sc.Text()
		out = append(out, line)
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "listening" {
			base = f[2]
		}
		if strings.HasPrefix(line, "Press Ctrl-C") {
			break
		}
	}
	text := strings.Join(out, "\n")
	if base == "" || !strings.Contains(text, "test mode, no real money") || !strings.Contains(text, "signing secret whsec_") {
		t.Fatalf("banner:\n%s", text)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("index: %d", res.StatusCode)
	}
	cancel()
	go io.Copy(io.Discard, pr)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop")
	}
}

func TestRunRefusesNonLoopback(t *testing.T) {
	err := run(context.Background(), []string{"-addr", "0.0.0.0:12112"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("got %v", err)
	}
}
