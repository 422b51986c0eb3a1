//go:build unix

package localhost

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the handler in its own process group so that killing it
// also kills what it started (for example the binary under "go run").
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func killProcess(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}
