package memlimit

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestContainerLimit(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string
		self  string
		want  int64
	}{
		{"v2 in a cgroup namespace", map[string]string{"memory.max": "268435456\n"}, "0::/\n", 256 << 20},
		{"v2 at the process's path", map[string]string{"system.slice/lw.service/memory.max": "536870912\n", "memory.max": "max\n"},
			"0::/system.slice/lw.service\n", 512 << 20},
		{"v2 path not visible: the root's", map[string]string{"memory.max": "134217728\n"}, "0::/kubepods/pod1/abc\n", 128 << 20},
		{"v2 without a limit", map[string]string{"memory.max": "max\n"}, "0::/\n", 0},
		{"v1", map[string]string{"memory/docker/abc/memory.limit_in_bytes": "1073741824\n"},
			"12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n", 1 << 30},
		{"v1 without a limit", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, "4:memory:/\n", 0},
		{"hybrid: v1's memory controller decides", map[string]string{"memory/memory.limit_in_bytes": "268435456\n", "memory.max": "max\n"},
			"4:memory:/\n0::/\n", 256 << 20},
		{"no cgroups", map[string]string{}, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, content := range c.files {
				write(t, root, rel, content)
			}
			got, err := Container(root, []byte(c.self))
			if err != nil || got != c.want {
				t.Fatalf("Container = %d, %v; want %d", got, err, c.want)
			}
		})
	}
}

func TestContainerLimitRefusesGarbage(t *testing.T) {
	root := t.TempDir()
	write(t, root, "memory.max", "lots\n")
	if n, err := Container(root, []byte("0::/\n")); err == nil {
		t.Fatalf("a limit of %q read as %d", "lots", n)
	}
}

func TestSoftLeavesRoomBelowTheLimit(t *testing.T) {
	for _, c := range []struct{ limit, want int64 }{
		{64 << 20, 64 << 20 / 10 * 9},     // small: 90 %
		{256 << 20, 224 << 20},            // 32 MiB below beats 90 % (230 MiB)
		{4 << 30, 4 << 30 / 10 * 9},       // large: 90 %
		{200 << 20, (200 << 20) - margin}, // 168 MiB < 180 MiB
	} {
		if got := Soft(c.limit); got != c.want {
			t.Errorf("Soft(%d MiB) = %d, want %d", c.limit>>20, got, c.want)
		}
	}
}

func TestApplySetsGosSoftLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	root := t.TempDir()
	write(t, root, "fs/memory.max", "268435456\n")
	write(t, root, "self", "0::/\n")
	t.Setenv("GOMEMLIMIT", "") // restored after the test

	t.Run("from the container", func(t *testing.T) {
		os.Unsetenv("GOMEMLIMIT")
		debug.SetMemoryLimit(math.MaxInt64)
		limit, soft, err := Apply(filepath.Join(root, "fs"), filepath.Join(root, "self"))
		if err != nil || limit != 256<<20 || soft != 224<<20 {
			t.Fatalf("Apply = %d, %d, %v", limit, soft, err)
		}
		if got := debug.SetMemoryLimit(-1); got != 224<<20 {
			t.Fatalf("Go's soft limit is %d", got)
		}
	})
	t.Run("GOMEMLIMIT wins", func(t *testing.T) {
		os.Setenv("GOMEMLIMIT", "1GiB")
		debug.SetMemoryLimit(math.MaxInt64)
		if limit, soft, err := Apply(filepath.Join(root, "fs"), filepath.Join(root, "self")); limit != 0 || soft != 0 || err != nil {
			t.Fatalf("Apply = %d, %d, %v with GOMEMLIMIT set", limit, soft, err)
		}
		if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
			t.Fatalf("Go's soft limit changed to %d", got)
		}
	})
	t.Run("no cgroup file", func(t *testing.T) {
		os.Unsetenv("GOMEMLIMIT")
		debug.SetMemoryLimit(math.MaxInt64)
		if limit, soft, err := Apply(root, filepath.Join(root, "absent")); limit != 0 || soft != 0 || err != nil {
			t.Fatalf("Apply = %d, %d, %v", limit, soft, err)
		}
		if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
			t.Fatalf("Go's soft limit changed to %d", got)
		}
	})
}

// On this machine: whatever the cgroups say, they are read without error.
func TestThisMachinesCgroups(t *testing.T) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip("no /proc/self/cgroup here")
	}
	limit, err := Container("/sys/fs/cgroup", self)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("container memory limit: %d bytes (0: none)", limit)
}
