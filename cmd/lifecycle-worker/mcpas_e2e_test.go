package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// targets discover against a real peer: the MCP TypeScript SDK's own
// authorization server (mcpAuthRouter) behind an MCP endpoint guarded by the
// SDK's bearer middleware. It reports what that server really offers: an
// RFC 7009 endpoint with client_secret_post, no Global Token Revocation, no
// back-channel logout, no ID-JAG profile.
func TestTargetsDiscoverMCPSDKServer(t *testing.T) {
	dir, _ := filepath.Abs("../../test/mcp-as")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the MCP SDK is not installed in %s (run npm ci there): %v", dir, err)
		}
		t.Skip("MCP SDK not installed: run `npm ci --prefix test/mcp-as`")
	}
	cmd := exec.Command("node", "server.mjs")
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		t.Fatalf("MCP SDK server did not start: %q %v", line, err)
	}

	var out, errb bytes.Buffer
	if code := cli([]string{"targets", "discover", base + "/mcp", "--name", "mcp-demo"}, &out, &errb); code != 0 {
		t.Fatalf("discover: exit %d: %s %s", code, out.String(), errb.String())
	}
	t.Log(out.String())
	for _, want := range []string{
		"resource metadata      " + base + "/.well-known/oauth-protected-resource/mcp",
		"AS metadata            " + base + "/.well-known/oauth-authorization-server",
		"revocation (RFC 7009)  " + base + "/revoke [client_secret_post]",
		"global token revocation - []",
		"back-channel logout    false",
		"accepts ID-JAG         false",
		"driver: httpcall",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("discover output lacks %q", want)
		}
	}
}
