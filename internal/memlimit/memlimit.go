// Package memlimit gives Go's soft memory limit the container's limit, less
// a margin, when the environment sets none. The Go runtime does not read
// cgroup limits: without a soft limit the heap may grow to twice what is
// live before it is collected, and a container's limit kills the process
// instead (docs/decisions/0015).
package memlimit

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// margin is what the soft limit leaves below the container's at least:
// memory that is not Go's (SQLite's page caches, thread stacks).
const margin = 32 << 20

// Soft is the soft limit for a container limit: 90 % of it, and at least
// margin below it when the limit is large enough to leave that.
func Soft(limit int64) int64 {
	soft := limit / 10 * 9
	if limit > 4*margin {
		soft = min(soft, limit-margin)
	}
	return soft
}

// Container returns the memory limit of the cgroup this process runs in,
// or 0 when it has none. root is where the cgroup file systems are
// mounted (/sys/fs/cgroup) and self describes the process's cgroups
// (/proc/self/cgroup). Both cgroup v2 (memory.max) and v1
// (memory/…/memory.limit_in_bytes) are read; a cgroup whose own file is
// not visible (a cgroup namespace shows the container's as "/") is looked
// up at the root.
func Container(root string, self []byte) (int64, error) {
	var v2, v1 string
	hasV2, hasV1 := false, false
	sc := bufio.NewScanner(strings.NewReader(string(self)))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2, hasV2 = parts[2], true
		case hasController(parts[1], "memory"):
			v1, hasV1 = parts[2], true
		}
	}
	if hasV1 {
		limit, err := read(root, "memory", v1, "memory.limit_in_bytes")
		if err == nil || !errors.Is(err, fs.ErrNotExist) || !hasV2 {
			return limit, err
		}
	}
	if hasV2 {
		return read(root, "", v2, "memory.max")
	}
	return 0, nil
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// read reads a limit file at the cgroup's path, else at the hierarchy's
// root; "max" and v1's page-aligned "unlimited" are no limit.
func read(root, hierarchy, cgroup, file string) (int64, error) {
	cgroup = path.Clean("/" + cgroup)
	var data []byte
	var err error
	for _, p := range []string{path.Join(root, hierarchy, cgroup, file), path.Join(root, hierarchy, file)} {
		if data, err = os.ReadFile(p); err == nil {
			break
		}
	}
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup memory limit %q: %w", s, err)
	}
	if n <= 0 || n >= 1<<62 { // v1 writes "no limit" as a huge number
		return 0, nil
	}
	return n, nil
}

// Apply sets Go's soft memory limit from the container's limit when
// GOMEMLIMIT is not set, reading the cgroup files under root and self
// (/sys/fs/cgroup and /proc/self/cgroup). It returns the container's limit
// and the soft limit set (0, 0 when it set none: GOMEMLIMIT is set, the
// process has no container limit, or self cannot be read, as on systems
// without cgroups).
func Apply(root, self string) (limit, soft int64, err error) {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		return 0, 0, nil
	}
	data, err := os.ReadFile(self)
	if err != nil {
		return 0, 0, nil
	}
	limit, err = Container(root, data)
	if err != nil || limit == 0 {
		return 0, 0, err
	}
	soft = Soft(limit)
	debug.SetMemoryLimit(soft)
	return limit, soft, nil
}
