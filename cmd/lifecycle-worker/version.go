package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// buildInfo is what this binary knows of its own making: the version (set
// with -ldflags "-X main.version=…", else the module version of a go
// install), the commit and its time from the VCS stamp, the Go version, and
// the versions of the modules that hold the data (NATS, SQLite).
type buildInfo struct {
	Version, Commit, Date, Go, NATSServer, SQLite string
}

// commit and date are set by the release build (-ldflags -X), which builds
// without VCS stamping so that its output depends on the source alone.
var commit, date string

func readBuildInfo() (b buildInfo) {
	b = buildInfo{Version: version, Go: runtime.Version(), Commit: "unknown", Date: "unknown"}
	defer func() { // the release build's values win
		if commit != "" {
			b.Commit = commit
		}
		if date != "" {
			b.Date = date
		}
	}()
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if b.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		b.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.Date = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				b.Commit += "+dirty"
			}
		}
	}
	for _, m := range info.Deps {
		switch m.Path {
		case "github.com/nats-io/nats-server/v2":
			b.NATSServer = m.Version
		case "github.com/mattn/go-sqlite3":
			b.SQLite = m.Version
		}
	}
	return b
}

func printVersion(w io.Writer) {
	b := readBuildInfo()
	fmt.Fprintf(w, "lifecycle-worker %s\ncommit      %s\nbuilt       %s\ngo          %s\nnats-server %s\ngo-sqlite3  %s\n",
		b.Version, b.Commit, b.Date, b.Go, b.NATSServer, b.SQLite)
}
