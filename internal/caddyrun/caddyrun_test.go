package caddyrun

import (
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestWithGlobalsAddsBlock(t *testing.T) {
	got := withGlobals("http://127.0.0.1:1 {\n\trespond hi\n}\n", "/d", 1, 2, 3)
	for _, want := range []string{"admin 127.0.0.1:3", "default_bind 127.0.0.1", "http_port 1", "https_port 2", "auto_https off", "storage file_system /d/storage"} {
		if !strings.Contains(got, "\t"+want+"\n") {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if !strings.HasPrefix(got, "{\n") || !strings.HasSuffix(got, "}\nhttp://127.0.0.1:1 {\n\trespond hi\n}\n") {
		t.Errorf("block not put first:\n%s", got)
	}
}

func TestWithGlobalsMergesOwnBlock(t *testing.T) {
	in := "\n{\n\tdebug\n\tauto_https disable_redirects\n\tservers {\n\t\tprotocols h1\n\t}\n}\n:1 {\n\trespond \"}\"\n}\n"
	got := withGlobals(in, "/d", 1, 2, 3)
	if strings.Count(got, "auto_https") != 1 || !strings.Contains(got, "auto_https disable_redirects") {
		t.Errorf("own auto_https not kept alone:\n%s", got)
	}
	if strings.Count(got, "{\n") != 3 || !strings.Contains(got, "\tdebug\n") || !strings.Contains(got, "admin 127.0.0.1:3") {
		t.Errorf("blocks not merged:\n%s", got)
	}
	if !strings.HasSuffix(got, "}\n\n:1 {\n\trespond \"}\"\n}\n") {
		t.Errorf("site block changed:\n%s", got)
	}
}

func TestExpand(t *testing.T) {
	got := expand("{{.HTTPPort}} {{.HTTPSPort}} {{.AdminPort}} {{.Dir}} {env.X} {{.Other}}", "/d", 1, 2, 3)
	if got != "1 2 3 /d {env.X} {{.Other}}" {
		t.Errorf("expand = %q", got)
	}
}

// TestStart runs the real binary: a site answers, the admin API answers,
// state stays in the private directory, and Stop ends the process.
func TestStart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs caddy")
	}
	inst := Start(t, "http://127.0.0.1:{{.HTTPPort}} {\n\trespond \"hello {env.CADDYTEST_GREETING}\"\n}\n",
		map[string]string{"CADDYTEST_GREETING": "world"})
	res, err := http.Get(inst.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(body) != "hello world" {
		t.Fatalf("GET / = %d %q, want 200 \"hello world\"", res.StatusCode, body)
	}
	res, err = http.Get(inst.AdminURL() + "/config/")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(cfg), filepath.Join(inst.Dir, "storage")) {
		t.Errorf("config does not use the private storage:\n%s", cfg)
	}
	if want := `"listen":["127.0.0.1:` + strconv.Itoa(inst.HTTPPort) + `"]`; !strings.Contains(string(cfg), want) {
		t.Errorf("site does not listen on loopback only (no %s):\n%s", want, cfg)
	}
	if inst.Logs() == "" {
		t.Error("no logs captured")
	}
	inst.Stop()
	select {
	case <-inst.Exited():
	default:
		t.Fatal("Stop returned before the process ended")
	}
}

func TestValidateAndAdapt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs caddy")
	}
	out, err := Validate(t, ":{{.HTTPPort}} {\n\tno_such_directive\n}\n", nil)
	if err == nil || !strings.Contains(out, "no_such_directive") {
		t.Errorf("validate of an unknown directive: err %v, output %q", err, out)
	}
	out, err = Validate(t, ":{{.HTTPPort}} {\n\trespond ok\n}\n", nil)
	if err != nil {
		t.Errorf("validate of a good Caddyfile: %v\n%s", err, out)
	}
	js := Adapt(t, ":{{.HTTPPort}} {\n\trespond ok\n}\n")
	if !strings.Contains(js, `"handler":"static_response"`) {
		t.Errorf("adapt output lacks the handler:\n%s", js)
	}
}
