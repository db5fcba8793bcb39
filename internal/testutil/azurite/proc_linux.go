package azurite

import "syscall"

// sysProcAttr puts Azurite in its own process group (so Stop can kill Node
// and anything it spawned) and asks the kernel to SIGKILL it when the test
// process dies without running its cleanup.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
