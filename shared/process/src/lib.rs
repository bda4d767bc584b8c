#![forbid(unsafe_code)]
//! Child processes: started with their output in a log file, watched,
//! signalled (SIGTERM with a grace period, SIGKILL, SIGSTOP/SIGCONT).
//! `artisync up` runs its external-mode components with it, and so do the
//! end-to-end tests.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How to start one component.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Launch {
    /// The component's own binary if it sits beside the current executable
    /// (a `cargo build` of the workspace), else this `artisync` binary in
    /// component mode (`artisync run <component>`).
    pub fn component(component: &str, config: &Path) -> std::io::Result<Launch> {
        let exe = std::env::current_exe()?;
        let mut dirs = Vec::new();
        if let Some(dir) = exe.parent() {
            dirs.push(dir.to_path_buf());
            // Test executables live in target/<profile>/deps.
            if dir.ends_with("deps")
                && let Some(parent) = dir.parent()
            {
                dirs.push(parent.to_path_buf());
            }
        }
        for dir in dirs {
            let candidate = dir.join(component);
            if candidate.is_file() {
                return Ok(Launch {
                    program: candidate,
                    args: vec!["--config".into(), config.display().to_string()],
                    env: Vec::new(),
                });
            }
        }
        let is_cli = exe
            .file_stem()
            .is_some_and(|s| s.to_string_lossy().starts_with("artisync"));
        if is_cli {
            return Ok(Launch {
                program: exe,
                args: vec![
                    "run".into(),
                    component.into(),
                    "--config".into(),
                    config.display().to_string(),
                ],
                env: Vec::new(),
            });
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "cannot find the {component} binary beside {}; run `cargo build --workspace --bins` first",
                exe.display()
            ),
        ))
    }
}

/// A running child with its output in a log file.
pub struct ManagedProcess {
    pub name: String,
    pub launch: Launch,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl ManagedProcess {
    pub fn spawn(name: &str, launch: Launch, log_path: PathBuf) -> std::io::Result<Self> {
        let mut p = ManagedProcess {
            name: name.to_owned(),
            launch,
            log_path,
            child: None,
        };
        p.start()?;
        Ok(p)
    }

    /// Starts (or restarts) the process, appending to its log.
    pub fn start(&mut self) -> std::io::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = Command::new(&self.launch.program);
        command
            .args(&self.launch.args)
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        self.child = Some(command.spawn()?);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: std::time::Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = child.start_kill();
                child.wait().await.ok()
            }
        }
    }

    /// The log so far, for diagnostics.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}
