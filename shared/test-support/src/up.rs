//! `artisync up` as a user runs it: the real binary, in a work dir, on
//! ports moved by an offset, stopped with Ctrl-C or killed.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

/// The ports `up` listens on before any offset.
pub const BASE_PORTS: [u16; 8] = [9400, 9500, 8280, 8281, 8282, 9600, 9601, 9602];

/// An offset that moves every port of the `up` topology onto free ports.
/// The shifted ports stay below 32768, where the kernel hands out ports for
/// outgoing connections: a port picked there can be taken by one of the
/// cluster's own connections before the component binds it.
pub fn free_offset() -> anyhow::Result<u16> {
    for _ in 0..50 {
        let offset = 10_000 + uuid::Uuid::new_v4().as_u128() as u16 % 13_000;
        let all_free = BASE_PORTS
            .iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p + offset)).is_ok());
        if all_free {
            return Ok(offset);
        }
    }
    bail!("no free port range found")
}

/// The `artisync` binary beside this executable (a benchmark binary in
/// `target/<profile>`, a test in `target/<profile>/deps`).
pub fn artisync_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the executable has no directory")?;
    let candidates = [Some(dir), dir.parent()];
    for dir in candidates.into_iter().flatten() {
        let bin = dir.join("artisync");
        if bin.is_file() {
            return Ok(bin);
        }
    }
    bail!(
        "no artisync binary beside {}: run `cargo build --workspace --bins` first",
        exe.display()
    )
}

/// How to run `up`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    pub args: Vec<String>,
    /// Variables set for the child.
    pub env: Vec<(String, String)>,
    /// Variables removed from the child's environment.
    pub env_remove: Vec<String>,
}

impl UpOptions {
    /// The embedded default: no database or broker anywhere in sight.
    pub fn embedded() -> Self {
        UpOptions {
            env_remove: vec!["DATABASE_URL".into(), "AMQP_URL".into()],
            ..Default::default()
        }
    }

    /// Without the sample API.
    pub fn with_no_sample(mut self) -> Self {
        self.args.push("--no-sample".into());
        self
    }
}

/// A running `artisync up`.
pub struct Up {
    child: tokio::process::Child,
    pub work_dir: PathBuf,
    pub offset: u16,
    /// What `up` wrote to its state file once ready.
    pub state: Value,
    log: PathBuf,
}

fn command(
    work_dir: &Path,
    offset: u16,
    options: &UpOptions,
    log: &Path,
) -> anyhow::Result<tokio::process::Command> {
    let out = std::fs::File::create(log)?;
    let mut command = tokio::process::Command::new(artisync_binary()?);
    command
        .arg("up")
        .arg("--work-dir")
        .arg(work_dir)
        .arg("--port-offset")
        .arg(offset.to_string())
        .args(&options.args)
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true);
    for name in &options.env_remove {
        command.env_remove(name);
    }
    Ok(command)
}

impl Up {
    /// Starts `up` and waits until it wrote its state file (everything is
    /// ready and the sample API deployed).
    pub async fn start(work_dir: &Path, offset: u16, options: &UpOptions) -> anyhow::Result<Up> {
        std::fs::create_dir_all(work_dir)?;
        let state_file = work_dir.join("state.json");
        let _ = std::fs::remove_file(&state_file);
        let log = work_dir.with_extension(format!("up-{}.log", uuid::Uuid::new_v4().simple()));
        let mut child = command(work_dir, offset, options, &log)?.spawn()?;
        let deadline = Instant::now() + Duration::from_secs(90);
        let state = loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "artisync up exited early with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if let Some(state) = std::fs::read(&state_file)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                break state;
            }
            ensure!(
                Instant::now() < deadline,
                "artisync up wrote no state file within 90 s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        Ok(Up {
            child,
            work_dir: work_dir.to_owned(),
            offset,
            state,
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn publisher(&self) -> (String, String) {
        (
            self.state["publisher"]["url"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            self.state["publisher"]["token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }

    /// Ctrl-C; answers the exit status and everything it printed.
    pub async fn interrupt(mut self) -> anyhow::Result<(ExitStatus, String)> {
        let pid = self.child.id().context("pid of artisync up")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid)?),
            nix::sys::signal::Signal::SIGINT,
        )?;
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("artisync up did not stop after Ctrl-C")??;
        Ok((status, self.output()))
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}

/// Runs `up` expecting it to stop by itself (a refused config); answers
/// its exit status and output.
pub async fn run_to_exit(
    work_dir: &Path,
    offset: u16,
    options: &UpOptions,
) -> anyhow::Result<(ExitStatus, String)> {
    let log =
        std::env::temp_dir().join(format!("artisync-up-{}.log", uuid::Uuid::new_v4().simple()));
    let mut child = command(work_dir, offset, options, &log)?.spawn()?;
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .context("artisync up did not stop by itself")??;
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    Ok((status, output))
}

/// The remote ports of the TCP connections process `pid` holds, from
/// `/proc/<pid>/fd` and `/proc/net/tcp{,6}`.
pub fn remote_ports_of(pid: u32) -> anyhow::Result<Vec<u16>> {
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
            let (Some(remote), Some(inode)) = (fields.get(2), fields.get(9)) else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            if let Some(port) = remote
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                .filter(|p| *p != 0)
            {
                ports.push(port);
            }
        }
    }
    Ok(ports)
}
