package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	limited := filepath.Join(dir, "limited")
	unlimited := filepath.Join(dir, "unlimited")
	if err := os.WriteFile(limited, []byte("536870912\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unlimited, []byte("max\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flag   string
		envSet bool
		file   string
		want   int64
	}{
		{"auto", false, limited, 536870912 / 10 * 9}, // 90% of a 512Mi container
		{"", false, limited, 536870912 / 10 * 9},
		{"auto", true, limited, 0}, // GOMEMLIMIT wins: the runtime applied it
		{"auto", false, unlimited, 0},
		{"auto", false, filepath.Join(dir, "absent"), 0}, // not in a cgroup v2 container
		{"off", false, limited, 0},
		{"900Mi", false, unlimited, 900 << 20},
		{"1Gi", true, limited, 1 << 30},
	} {
		got, err := memoryLimit(c.flag, c.envSet, c.file)
		if err != nil || got != c.want {
			t.Errorf("memoryLimit(%q, env %v, %s) = %d, %v; want %d", c.flag, c.envSet, filepath.Base(c.file), got, err, c.want)
		}
	}
	for _, bad := range []string{"lots", "-1Mi"} {
		if _, err := memoryLimit(bad, false, limited); err == nil {
			t.Errorf("memoryLimit(%q) accepted", bad)
		}
	}
}
