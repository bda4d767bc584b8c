//! The fleet view (DESIGN.md §14) in a real browser: headless Chromium
//! through WebDriver, against `artisync up` (the embedded default: the real
//! publisher, traffic manager and three gateway nodes). A change made with
//! the `artisync` client shows on the open page without a reload, and its
//! receipt says every node applied it.
//!
//! Without Chromium (not installed and not installable with apt-get) the
//! test says loudly that it skipped.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use artisync_cli::client::PublisherClient;
use artisync_e2e::browser::{Browser, Element};
use artisync_e2e::mock_api;
use artisync_e2e::up::{Up, UpOptions, artisync_binary, free_offset};
use serde_json::{Value, json};

/// The label of gw-1 and gw-2 in the `up` topology (gw-3 has `Label1`).
const PROD: &str = "Production and Sandbox";
const PROD_NODES: [&str; 2] = ["gw-1", "gw-2"];
const ALL_NODES: [&str; 3] = ["gw-1", "gw-2", "gw-3"];
/// How long the page may take to show what it should (it polls every 500 ms).
const PAGE_DEADLINE: Duration = Duration::from_secs(10);

fn work_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "artisync-fleet-view-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// Where the screenshot goes: the cargo target directory.
fn target_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    // target/<profile>/deps/fleet_view-<hash>
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .context("no target directory above the test executable")
}

/// The cells of one API in the grid: node, state and text.
async fn cells_of(browser: &Browser, api: &str) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut cells = Vec::new();
    for cell in browser
        .find_all(&format!("#grid td[data-api=\"{api}\"]"))
        .await?
    {
        let node = browser.attr(&cell, "data-node").await?.unwrap_or_default();
        let state = browser.attr(&cell, "data-state").await?.unwrap_or_default();
        cells.push((node, state, browser.text(&cell).await?));
    }
    cells.sort();
    Ok(cells)
}

async fn submit_token(browser: &Browser, token: &str) -> anyhow::Result<()> {
    let input = browser.find("#token").await?;
    browser.clear(&input).await?;
    browser.send_keys(&input, token).await?;
    browser
        .click(&browser.find("#token-form button").await?)
        .await
}

async fn shown(browser: &Browser, css: &str) -> anyhow::Result<bool> {
    let all: Vec<Element> = browser.find_all(css).await?;
    match all.first() {
        Some(e) => browser.displayed(e).await,
        None => Ok(false),
    }
}

/// Deploys with the client: `artisync deploy API --label L`; answers
/// what it printed (JSON).
async fn deploy_with_the_client(url: &str, token: &str, api: &str) -> anyhow::Result<Value> {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(artisync_binary()?)
            .args(["deploy", api, "--label", PROD, "--output", "json"])
            .env("ARTISYNC_URL", url)
            .env("ARTISYNC_TOKEN", token)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("artisync deploy did not finish within 60 s")??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "artisync deploy exited with {}: {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).with_context(|| format!("artisync deploy printed {stdout:?}"))
}

#[tokio::test]
async fn the_fleet_view_shows_a_deploy_reach_every_node_without_a_reload() -> anyhow::Result<()> {
    let dir = work_dir();
    let mut options = UpOptions::embedded();
    // Where `Up` looks for it, named (the default is not its business).
    options.args.push("--state-file".into());
    options
        .args
        .push(dir.join("state.json").to_string_lossy().into_owned());
    let up = Up::start(&dir, free_offset()?, &options).await?;
    let (url, token) = up.publisher();
    let http = reqwest::Client::new();

    // The page and its assets carry the same-origin CSP; the data needs the token.
    for path in ["/ui", "/ui/app.js", "/ui/app.css"] {
        let r = http.get(format!("{url}{path}")).send().await?;
        ensure!(r.status() == 200, "{path}: {}", r.status());
        let csp = r
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .with_context(|| format!("{path} has no Content-Security-Policy"))?
            .to_owned();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
        ] {
            ensure!(
                csp.contains(directive),
                "{path}: CSP {csp:?} lacks {directive:?}"
            );
        }
        ensure!(!csp.contains("unsafe-inline"), "{path}: CSP {csp:?}");
    }
    let r = http.get(format!("{url}/api/v1/fleet")).send().await?;
    ensure!(
        r.status() == 401,
        "the fleet without a token: {}",
        r.status()
    );

    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let result = drive(&browser, &up, &url, &token).await;
    if result.is_err() {
        let shot = target_dir()?.join("fleet-view-failure.png");
        if browser.screenshot(&shot).await.is_ok() {
            eprintln!("the page when the test failed: {}", shot.display());
        }
    }
    browser.close().await?;
    result?;
    let (status, output) = up.interrupt().await?;
    ensure!(status.success(), "artisync up: {status}: {output}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn drive(browser: &Browser, up: &Up, url: &str, token: &str) -> anyhow::Result<()> {
    browser.goto(&format!("{url}/ui")).await?;
    // Anything the CSP blocks from here on is a bug of the page.
    browser
        .execute(
            "window.__cspViolations = [];
             document.addEventListener('securitypolicyviolation',
               e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));",
            vec![],
        )
        .await?;

    // A wrong token: refused, forgotten, and the form asks again.
    browser
        .wait_for("the token form", PAGE_DEADLINE, || async {
            Ok(shown(browser, "#token").await?.then_some(()))
        })
        .await?;
    submit_token(browser, "not-the-token").await?;
    browser
        .wait_for(
            "the form to ask again after a wrong token",
            PAGE_DEADLINE,
            || async {
                let error = browser.text(&browser.find("#login-error").await?).await?;
                let again = error.contains("refused")
                    && shown(browser, "#token").await?
                    && !shown(browser, "#fleet").await?;
                Ok(again.then_some(()))
            },
        )
        .await?;
    let kept = browser
        .execute("return sessionStorage.length", vec![])
        .await?;
    ensure!(kept == 0, "a refused token stays in sessionStorage: {kept}");

    // The right token: the three nodes show, and the token is kept for the session.
    submit_token(browser, token).await?;
    browser
        .wait_for(
            "the three nodes in the nodes table",
            PAGE_DEADLINE,
            || async {
                let mut ids = Vec::new();
                for row in browser.find_all("#nodes tbody tr[data-node-id]").await? {
                    ids.push(
                        browser
                            .attr(&row, "data-node-id")
                            .await?
                            .unwrap_or_default(),
                    );
                }
                ids.sort();
                Ok((ids == ALL_NODES).then_some(()))
            },
        )
        .await?;
    ensure!(
        !shown(browser, "#token").await?,
        "the token form still shows"
    );
    let stored = browser
        .execute(
            "return Object.keys(sessionStorage).map(k => sessionStorage.getItem(k))",
            vec![],
        )
        .await?;
    ensure!(stored == json!([token]), "sessionStorage: {stored}");
    let first_row = browser
        .find("#nodes tbody tr[data-node-id=\"gw-1\"]")
        .await?;
    let first_row_text = browser.text(&first_row).await?;
    ensure!(
        first_row_text.contains(PROD) && first_row_text.contains("ready"),
        "gw-1's row: {first_row_text:?}"
    );

    // From here on the page must not load again.
    browser
        .execute("window.__notReloaded = true", vec![])
        .await?;

    // Published, not deployed: a row of absent cells.
    let publisher = PublisherClient::new(url, token);
    let created = publisher
        .create_api(&mock_api("FleetViewAPI", "/fleet-view", "v1"))
        .await?;
    ensure!(created.status.as_u16() == 201, "{}", created.text);
    let id = created.body["id"].as_str().context("id")?.to_owned();
    browser
        .wait_for(
            "the new API's row of absent cells",
            PAGE_DEADLINE,
            || async {
                let cells = cells_of(browser, &id).await?;
                let nodes: Vec<&str> = cells.iter().map(|c| c.0.as_str()).collect();
                Ok((nodes == ALL_NODES && cells.iter().all(|c| c.1 == "absent")).then_some(()))
            },
        )
        .await?;

    // Deployed with the client; the open page shows it on both nodes of the label.
    let printed = deploy_with_the_client(url, token, "FleetViewAPI:1.0").await?;
    let cells = browser
        .wait_for(
            "the API in sync on every node of the label",
            PAGE_DEADLINE,
            || async {
                let cells = cells_of(browser, &id).await?;
                let in_sync = PROD_NODES.iter().all(|node| {
                    cells
                        .iter()
                        .any(|(n, state, text)| n == node && state == "in-sync" && text == "1/1")
                });
                Ok(in_sync.then_some(cells))
            },
        )
        .await?;
    ensure!(
        cells
            .iter()
            .any(|(n, state, _)| n == "gw-3" && state == "absent"),
        "gw-3 does not serve the label: {cells:?} (the client printed {printed})"
    );
    let not_reloaded = browser
        .execute("return window.__notReloaded === true", vec![])
        .await?;
    ensure!(not_reloaded == true, "the page was loaded again");

    // The API's detail: its revision, where it is deployed, and the receipt.
    let sequence = printed["sequence"]
        .as_i64()
        .with_context(|| format!("no change sequence in what the client printed: {printed}"))?;
    browser
        .click(
            &browser
                .find(&format!("#grid button[data-api-id=\"{id}\"]"))
                .await?,
        )
        .await?;
    browser
        .wait_for("the receipt: every node APPLIED", PAGE_DEADLINE, || async {
            let receipt = format!("#detail-receipts .receipt[data-sequence=\"{sequence}\"]");
            let mut applied = Vec::new();
            for row in browser
                .find_all(&format!("{receipt} tr[data-receipt-state=\"APPLIED\"]"))
                .await?
            {
                applied.push(
                    browser
                        .attr(&row, "data-receipt-node")
                        .await?
                        .unwrap_or_default(),
                );
            }
            applied.sort();
            let complete = browser
                .attr(&browser.find(&receipt).await?, "data-complete")
                .await?;
            Ok((applied == PROD_NODES && complete.as_deref() == Some("true")).then_some(()))
        })
        .await?;
    let title = browser.text(&browser.find("#detail-title").await?).await?;
    ensure!(title == "FleetViewAPI:1.0", "detail title: {title:?}");
    let revision = browser
        .text(
            &browser
                .find("#detail-revisions tr[data-revision=\"1\"]")
                .await?,
        )
        .await?;
    ensure!(
        revision.contains(PROD),
        "revision 1 is deployed on {PROD}: {revision:?}"
    );

    let violations = browser
        .execute("return window.__cspViolations", vec![])
        .await?;
    ensure!(violations == json!([]), "CSP violations: {violations}");

    // The whole page in one picture.
    let height = browser
        .execute("return document.documentElement.scrollHeight", vec![])
        .await?
        .as_u64()
        .unwrap_or(900);
    let height = u32::try_from(height).unwrap_or(900).clamp(900, 2000) + 150;
    browser.set_window_size(1400, height).await?;
    let shot = target_dir()?.join("fleet-view.png");
    browser.screenshot(&shot).await?;
    eprintln!("screenshot: {}", shot.display());
    ensure!(up.pid().is_some());
    Ok(())
}
