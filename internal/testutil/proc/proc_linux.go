package proc

import "syscall"

// sysProcAttr puts a child in its own process group (so Kill reaches
// anything it spawned) and asks the kernel to SIGKILL it when the test
// process dies without running its cleanup, so it never outlives the test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends SIGKILL to the process group led by pid.
func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }
