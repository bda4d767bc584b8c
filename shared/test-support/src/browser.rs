//! A real browser for tests of the fleet view: Debian's `chromium`, driven
//! headless through `chromedriver` with a minimal W3C WebDriver client.
//!
//! [`Browser::start`] answers `None` only when Chromium cannot be had (not
//! installed, and installing it with `apt-get` is not possible or failed);
//! the test then says loudly that it skipped. The browser is never fetched
//! any other way.

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use serde_json::{Value, json};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The key under which WebDriver names an element.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one WebDriver command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// An element of the current page, as the driver names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(String);

impl Element {
    /// The element as a script argument of [`Browser::execute`].
    pub fn to_json(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

/// A headless Chromium session. The session is deleted and chromedriver
/// stopped on [`Browser::close`] or, failing that, on drop.
pub struct Browser {
    http: reqwest::Client,
    driver_port: u16,
    session: Option<String>,
    driver: Option<Child>,
    log: PathBuf,
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file()
        })
    })
}

/// Whether this process runs as root (its effective uid, from `/proc`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Runs a command with its output captured; answers whether it succeeded,
/// and its output for the message when it did not.
fn run_captured(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` exited with {}:\n{}{}",
            args.join(" "),
            output.status,
            crate::tail(&String::from_utf8_lossy(&output.stdout), 20),
            crate::tail(&String::from_utf8_lossy(&output.stderr), 20),
        ))
    }
}

/// Makes sure `chromium` and `chromedriver` are installed: as root,
/// installs Debian's packages when they are missing. Answers why not when
/// they cannot be had.
pub fn ensure_chromium() -> Result<(), String> {
    // One installation at a time within this process; apt-get waits for
    // its lock held by another.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let present = || Path::new(CHROMIUM).is_file() && on_path("chromedriver");
    if present() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "{CHROMIUM} or chromedriver is missing and this is not root, so they cannot be \
             installed: run `apt-get install -y chromium chromium-driver`"
        ));
    }
    let wait_for_lock = "-oDPkg::Lock::Timeout=300";
    run_captured("apt-get", &[wait_for_lock, "update"])?;
    run_captured(
        "apt-get",
        &[
            wait_for_lock,
            "install",
            "-y",
            "chromium",
            "chromium-driver",
        ],
    )?;
    if present() {
        Ok(())
    } else {
        Err(format!(
            "apt-get installed chromium and chromium-driver, but {CHROMIUM} or chromedriver \
             is still missing"
        ))
    }
}

/// A port nothing listens on now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

impl Browser {
    /// Installs Chromium when needed and possible, starts chromedriver and
    /// opens a headless session. `None` (after saying why on stderr) only
    /// when Chromium cannot be had; any other failure is an error.
    pub async fn start() -> anyhow::Result<Option<Browser>> {
        if let Err(why) = tokio::task::spawn_blocking(ensure_chromium).await? {
            // Straight to stderr, past the test harness's capture: a skip
            // must be seen.
            let bar = "!".repeat(78);
            let _ = writeln!(
                std::io::stderr(),
                "\n{bar}\n!!! SKIPPED: no browser for the fleet view test.\n!!! {why}\n{bar}\n"
            );
            return Ok(None);
        }
        let mut last_error = None;
        // A port picked free can be taken before chromedriver binds it.
        for _ in 0..3 {
            match Browser::launch().await {
                Ok(browser) => return Ok(Some(browser)),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("chromedriver did not start")))
    }

    async fn launch() -> anyhow::Result<Browser> {
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!(
            "artisync-chromedriver-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let out = std::fs::File::create(&log)?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting chromedriver")?;
        let mut browser = Browser {
            http: reqwest::Client::builder()
                .timeout(COMMAND_TIMEOUT)
                .build()?,
            driver_port: port,
            session: None,
            driver: Some(driver),
            log,
        };
        browser.wait_for_driver().await?;
        browser.open_session().await?;
        Ok(browser)
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.driver_port)
    }

    /// What chromedriver printed so far.
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_for_driver(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(driver) = self.driver.as_mut()
                && let Some(status) = driver.try_wait()?
            {
                bail!(
                    "chromedriver exited with {status}: {}",
                    crate::tail(&self.driver_log(), 20)
                );
            }
            let ready = self
                .http
                .get(format!("{}/status", self.base()))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok();
            if let Some(response) = ready
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "chromedriver was not ready within 20 s: {}",
                    crate::tail(&self.driver_log(), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn open_session(&mut self) -> anyhow::Result<()> {
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1400,900",
                            "--no-first-run",
                            "--no-default-browser-check",
                        ],
                    },
                },
            },
        });
        let value = self
            .raw("POST", "/session".to_owned(), Some(capabilities))
            .await
            .with_context(|| {
                format!(
                    "creating a Chromium session: {}",
                    crate::tail(&self.driver_log(), 20)
                )
            })?;
        let id = value["sessionId"]
            .as_str()
            .context("the new session has no id")?;
        self.session = Some(id.to_owned());
        Ok(())
    }

    /// One WebDriver command; answers its `value`, or the driver's error.
    async fn raw(&self, method: &str, path: String, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base());
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let mut answer: Value = response
            .json()
            .await
            .with_context(|| format!("{method} {path}: the answer is not JSON ({status})"))?;
        let value = answer["value"].take();
        if !status.is_success() || value.get("error").is_some_and(Value::is_string) {
            bail!(
                "{method} {path}: {status} {}: {}",
                value["error"].as_str().unwrap_or("error"),
                value["message"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
            );
        }
        Ok(value)
    }

    /// A command on the session.
    async fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let session = self.session.as_deref().context("the session is closed")?;
        self.raw(method, format!("/session/{session}{path}"), body)
            .await
    }

    fn element(value: &Value) -> anyhow::Result<Element> {
        value[ELEMENT_KEY]
            .as_str()
            .map(|id| Element(id.to_owned()))
            .with_context(|| format!("not an element: {value}"))
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await
            .with_context(|| format!("opening {url}"))?;
        Ok(())
    }

    /// The current page's URL.
    pub async fn url(&self) -> anyhow::Result<String> {
        let value = self.command("GET", "/url", None).await?;
        value.as_str().map(str::to_owned).context("no URL")
    }

    /// Resizes the window (for a screenshot of more than the first screen).
    pub async fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await
        .context("resizing the window")?;
        Ok(())
    }

    /// The first element matching the CSS selector (an error if none does).
    pub async fn find(&self, css: &str) -> anyhow::Result<Element> {
        let value = self
            .command(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .with_context(|| format!("finding {css:?}"))?;
        Browser::element(&value)
    }

    /// Every element matching the CSS selector (maybe none).
    pub async fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element>> {
        let value = self
            .command(
                "POST",
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .with_context(|| format!("finding all {css:?}"))?;
        value
            .as_array()
            .context("the elements are not a list")?
            .iter()
            .map(Browser::element)
            .collect()
    }

    /// The element's rendered text.
    pub async fn text(&self, element: &Element) -> anyhow::Result<String> {
        let value = self
            .command("GET", &format!("/element/{}/text", element.0), None)
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// The element's attribute, `None` when it has none.
    pub async fn attr(&self, element: &Element, name: &str) -> anyhow::Result<Option<String>> {
        let value = self
            .command(
                "GET",
                &format!("/element/{}/attribute/{name}", element.0),
                None,
            )
            .await?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// Whether the element is displayed.
    pub async fn displayed(&self, element: &Element) -> anyhow::Result<bool> {
        let value = self
            .command("GET", &format!("/element/{}/displayed", element.0), None)
            .await?;
        Ok(value == true)
    }

    pub async fn click(&self, element: &Element) -> anyhow::Result<()> {
        self.command("POST", &format!("/element/{}/click", element.0), None)
            .await
            .context("clicking")?;
        Ok(())
    }

    /// Clears a text field.
    pub async fn clear(&self, element: &Element) -> anyhow::Result<()> {
        self.command("POST", &format!("/element/{}/clear", element.0), None)
            .await
            .context("clearing")?;
        Ok(())
    }

    /// Types `text` into the element (`"\u{E007}"` is Enter).
    pub async fn send_keys(&self, element: &Element, text: &str) -> anyhow::Result<()> {
        self.command(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": text })),
        )
        .await
        .context("typing")?;
        Ok(())
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`, elements
    /// given as [`Element::to_json`]) in the page and answers its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
        .with_context(|| format!("running {script:?}"))
    }

    /// Runs `script` with one element as `arguments[0]`.
    pub async fn execute_on(&self, script: &str, element: &Element) -> anyhow::Result<Value> {
        self.execute(script, vec![element.to_json()]).await
    }

    /// Polls `check` until it answers `Some`, or fails after `timeout` with
    /// `what`, the last error and the page's text. Errors of `check` (an
    /// element not there yet, or replaced) count as "not yet".
    pub async fn wait_for<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            match check().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last_error = Some(e),
            }
            if Instant::now() > deadline {
                let page = self
                    .execute(
                        "return document.body ? document.body.innerText : ''",
                        vec![],
                    )
                    .await
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                bail!(
                    "timed out after {} ms waiting for {what}{}\n--- the page says:\n{}",
                    timeout.as_millis(),
                    last_error
                        .map(|e| format!(" (last error: {e:#})"))
                        .unwrap_or_default(),
                    crate::tail(&page, 60)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let value = self.command("GET", "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().context("the screenshot is not a string")?)
            .context("decoding the screenshot")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Deletes the session (Chromium exits) and stops chromedriver.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let result = match self.session.as_deref() {
            Some(session) => self
                .raw("DELETE", format!("/session/{session}"), None)
                .await
                .map(drop),
            None => Ok(()),
        };
        self.session = None;
        self.stop_driver();
        result
    }

    fn stop_driver(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            let _ = driver.kill();
            let _ = driver.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `DELETE /session/{id}` without the runtime (drop may run outside it, or
/// during a panic): plain HTTP/1.1 on a socket, bounded by a timeout.
fn delete_session_blocking(port: u16, session: &str) {
    let Ok(mut stream) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        // Chromium has exited once the driver answers.
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            delete_session_blocking(self.driver_port, &session);
        }
        self.stop_driver();
    }
}
