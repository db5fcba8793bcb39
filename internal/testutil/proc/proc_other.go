//go:build !linux

package proc

import (
	"os"
	"syscall"
)

// sysProcAttr puts a child in its own process group; outside Linux there is
// no parent-death signal, so only the test's cleanup stops it.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killGroup kills the process pid.
func killGroup(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
