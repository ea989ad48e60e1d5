package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/gtr/gtrtest"
)

// The K test authorization servers run in a process of their own, the bench
// binary started again with receiversEnv=K. Their JWT verification is real
// work (an ECDSA verify per request); in the measuring process it would
// delay the hook senders' goroutines and inflate the response times they
// record, which an IdP on another machine would not see.
const receiversEnv = "LW_BENCH_RECEIVERS"

// receiverSet is the parent's handle on the receivers process.
type receiverSet struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	done    chan error
	control string
	URLs    []string
	client  *http.Client
}

// receiversStatus is what the receivers process reports.
type receiversStatus struct {
	Succeeded int      `json:"succeeded"` // distinct (receiver, subject) pairs answered 2xx
	Rejected  int      `json:"rejected"`
	Reasons   []string `json:"reasons,omitempty"` // the first few
}

// startReceivers starts k receivers in a child process.
func startReceivers(k int) (*receiverSet, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), receiversEnv+"="+strconv.Itoa(k), "GOMAXPROCS=2")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start receivers: %w", err)
	}
	rs := &receiverSet{cmd: cmd, stdin: stdin, done: make(chan error, 1), client: &http.Client{Timeout: 10 * time.Second}}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("receivers process: %w", err)
	}
	var hello struct {
		Control string   `json:"control"`
		URLs    []string `json:"urls"`
	}
	if err := json.Unmarshal(line, &hello); err != nil || len(hello.URLs) != k {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("receivers process said %q", line)
	}
	rs.control, rs.URLs = hello.Control, hello.URLs
	go func() { rs.done <- cmd.Wait() }()
	return rs, nil
}

// SetJWKSURL points every receiver at the sender's keys.
func (rs *receiverSet) SetJWKSURL(u string) error {
	resp, err := rs.client.Post(rs.control+"/jwks", "text/plain", strings.NewReader(u))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("receivers: set jwks: %s", resp.Status)
	}
	return nil
}

// Status asks how many revocations were confirmed and refused so far.
func (rs *receiverSet) Status() (receiversStatus, error) {
	var st receiversStatus
	resp, err := rs.client.Get(rs.control + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("receivers: status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// Pid is the receivers process, for its CPU and memory figures.
func (rs *receiverSet) Pid() int { return rs.cmd.Process.Pid }

// Close ends the receivers process: closing its stdin tells it to stop.
func (rs *receiverSet) Close() {
	_ = rs.stdin.Close()
	select {
	case <-rs.done:
	case <-time.After(10 * time.Second):
		_ = rs.cmd.Process.Kill()
		<-rs.done
	}
}

// serveReceivers is the receivers process: k receivers and a control
// endpoint, announced on stdout; it stops when stdin closes (also when the
// parent dies).
func serveReceivers(arg string) error {
	k, err := strconv.Atoi(arg)
	if err != nil || k < 1 {
		return fmt.Errorf("%s=%q: want a count", receiversEnv, arg)
	}
	receivers := make([]*gtrtest.Receiver, k)
	urls := make([]string, k)
	for i := range receivers {
		receivers[i] = gtrtest.New(gtrtest.Options{Issuer: publicURL})
		defer receivers[i].Close()
		urls[i] = receivers[i].URL
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /jwks", func(w http.ResponseWriter, r *http.Request) {
		u, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
		for _, rc := range receivers {
			rc.SetJWKSURL(string(bytes.TrimSpace(u)))
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		var st receiversStatus
		for _, rc := range receivers {
			st.Succeeded += rc.SucceededSubjects()
			why := rc.Rejected()
			st.Rejected += len(why)
			st.Reasons = append(st.Reasons, why[:min(len(why), 5)]...)
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	control := httptest.NewServer(mux)
	defer control.Close()
	if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"control": control.URL, "urls": urls}); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
