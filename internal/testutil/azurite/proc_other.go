//go:build !linux

package azurite

import "syscall"

// sysProcAttr puts Azurite in its own process group so Stop can kill Node and
// anything it spawned.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
