//! Broker JVMs that cannot outlive the process that started them.
//!
//! Test processes panic, abort or get killed, and the shared cluster lives in
//! a `static` that is never dropped, so destructors alone cannot guarantee
//! cleanup. Instead every JVM runs under a tiny `sh` supervisor whose stdin
//! is a pipe whose only writer is this process (Rust creates pipes
//! close-on-exec, so no other child inherits it). However this process ends,
//! the kernel closes the pipe, the supervisor sees EOF and SIGKILLs the
//! JVM. `PR_SET_PDEATHSIG` is not used because it fires when
//! the spawning *thread* exits, and test threads are short-lived.
//!
//! A second supervisor of the same kind, the janitor, removes the cluster's
//! temporary directory once the pipe closes.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// Runs `"$@"` in the background with output appended to `$1`, prints its
/// pid, and SIGKILLs it when stdin reaches EOF or the shell gets SIGHUP,
/// SIGINT or SIGTERM.
///
/// The EOF is awaited in a background subshell because a shell blocked in
/// the `read` builtin defers traps until the read returns, whereas `wait`
/// is interrupted by trapped signals. Background jobs get /dev/null as
/// stdin unless redirected explicitly, hence the detour through fd 3.
const NODE_SUPERVISOR: &str = r#"log=$1; shift
"$@" </dev/null >>"$log" 2>&1 &
pid=$!
exec 3<&0 0</dev/null
(read -r _ <&3 || :) &
watcher=$!
exec 3<&-
trap 'kill -9 "$pid" 2>/dev/null; kill "$watcher" 2>/dev/null' EXIT
trap 'exit 143' HUP INT TERM
echo "$pid"
wait "$watcher"
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
trap - EXIT
"#;

/// Waits for EOF on stdin, then removes `$1`. A JVM killed at the same
/// moment may still be creating files, so removal is retried briefly.
const JANITOR: &str = r#"read -r _ || :
i=0
while [ -e "$1" ] && [ "$i" -lt 20 ]; do
  rm -rf "$1" 2>/dev/null || :
  [ -e "$1" ] || break
  sleep 0.5
  i=$((i + 1))
done
"#;

/// One running broker JVM and its supervisor.
pub(crate) struct NodeProcess {
    supervisor: Child,
    java_pid: libc::pid_t,
}

impl NodeProcess {
    /// Starts `program args…` under a supervisor, with stdout and stderr
    /// appended to `log`, in a new process group so a terminal's Ctrl-C goes
    /// only to the test process (whose exit then tears the node down).
    pub(crate) fn spawn(program: &Path, args: &[String], log: &Path, cwd: &Path) -> Result<NodeProcess> {
        let log_file = open_append(log)?;
        let mut child = with_clean_signal_mask(&mut Command::new("sh"))
            .arg("-c")
            .arg(NODE_SUPERVISOR)
            .arg("kafka-harness-node")
            .arg(log)
            .arg(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .process_group(0)
            .spawn()
            .map_err(|e| HarnessError::io("spawning the broker supervisor (sh)", e))?;

        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let java_pid = match read.ok().and_then(|_| line.trim().parse::<libc::pid_t>().ok()) {
            Some(pid) if pid > 0 => pid,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::Startup {
                    message: format!("the broker supervisor did not report a pid (got {line:?})"),
                    log_path: log.display().to_string(),
                    log_tail: crate::cluster::read_tail(log),
                });
            }
        };
        Ok(NodeProcess {
            supervisor: child,
            java_pid,
        })
    }

    /// The JVM's process id.
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.java_pid
    }

    /// Whether the JVM is still running.
    ///
    /// The supervisor's `wait` reaps a JVM that died on its own, after which
    /// its pid may in principle be reused; a process only counts as our JVM
    /// while its parent is our supervisor (and it is not a zombie).
    pub(crate) fn is_running(&self) -> bool {
        if self.java_pid <= 0 {
            return false;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.java_pid)) {
            Ok(stat) => {
                // Fields after the parenthesised command name (which may
                // itself contain spaces or parentheses): state, ppid, ...
                let mut rest = stat
                    .rsplit_once(") ")
                    .map(|(_, r)| r)
                    .unwrap_or_default()
                    .split_whitespace();
                let state = rest.next().and_then(|s| s.chars().next());
                let ppid = rest.next().and_then(|p| p.parse::<u32>().ok());
                matches!(state, Some(s) if s != 'Z' && s != 'X') && ppid == Some(self.supervisor.id())
            }
            Err(_) if Path::new("/proc/self/stat").exists() => false,
            // Without procfs, existence is the best available answer.
            // SAFETY: signal 0 only checks for existence and permission.
            Err(_) => unsafe { libc::kill(self.java_pid, 0) == 0 },
        }
    }

    /// SIGKILLs the JVM, lets the supervisor reap it and waits for both.
    pub(crate) fn kill(mut self) {
        self.kill_in_place();
    }

    fn kill_in_place(&mut self) {
        if self.is_running() {
            // SAFETY: plain syscall; `is_running` just confirmed the pid is
            // our supervisor's live child.
            unsafe {
                libc::kill(self.java_pid, libc::SIGKILL);
            }
        }
        self.java_pid = 0;
        // Closing stdin lets the supervisor proceed to `wait`.
        drop(self.supervisor.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.supervisor.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.supervisor.kill();
                    let _ = self.supervisor.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill_in_place();
    }
}

/// Removes a directory once this process is gone, however it ends.
pub(crate) struct Janitor {
    child: Option<Child>,
}

impl Janitor {
    /// Starts the janitor for `dir`.
    pub(crate) fn spawn(dir: &Path) -> Result<Janitor> {
        let child = with_clean_signal_mask(&mut Command::new("sh"))
            .arg("-c")
            .arg(JANITOR)
            .arg("kafka-harness-janitor")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| HarnessError::io("spawning the cleanup supervisor (sh)", e))?;
        Ok(Janitor { child: Some(child) })
    }

    /// Makes the janitor remove the directory now and waits for it.
    pub(crate) fn finish(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Makes `cmd` start with no blocked signals.
///
/// A blocked-signal mask survives `fork` and `exec`, and the standard library
/// does not clear it. Programs that block SIGINT/SIGTERM to handle them
/// synchronously (as `kse-demo` does) would otherwise hand that mask to the
/// supervisor and the JVM, and the supervisor's signal traps would never run.
pub(crate) fn with_clean_signal_mask(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure only calls async-signal-safe functions on a local
    // signal set, as required between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| HarnessError::io(format!("opening {}", path.display()), e))
}
