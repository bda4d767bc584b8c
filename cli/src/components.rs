//! `artisync run <component>`: one component in this process, composed as
//! its own binary composes it (for a machine that has only `artisync`).

use std::path::Path;
use std::process::ExitCode;

use artisync_backends::Storage;
use artisync_telemetry::signals::run_until_signalled;

pub async fn publisher(config: Option<&Path>) -> ExitCode {
    use artisync_publisher::{app, config};
    run_until_signalled(
        "publisher",
        config::load(config),
        |settings: config::Settings, shutdown| async move {
            let storage = Storage::open(&settings.database, &settings.storage_options()).await?;
            let mut backends = storage.for_publisher(&settings.amqp_url, &settings.topology);
            if let Some(push) = &settings.direct_push {
                backends.push_targets = artisync_backends::push_targets(
                    push.gateways.iter().map(|g| {
                        (
                            g.service_url.as_str(),
                            g.token.as_str(),
                            g.labels.as_slice(),
                        )
                    }),
                    push.timeout,
                )?;
            }
            let running = app::start(settings, backends, shutdown).await?;
            anyhow::Ok(storage.close_after(running.task, None))
        },
    )
    .await
}

pub async fn traffic_manager(config: Option<&Path>) -> ExitCode {
    use artisync_traffic_manager::{app, config};
    run_until_signalled(
        "traffic-manager",
        config::load(config),
        |settings: config::Settings, shutdown| async move {
            let (storage, watch) = Storage::open_source(
                &settings.database_source,
                &settings.storage_options(),
                shutdown.clone(),
            )
            .await?;
            let backends = storage.for_traffic_manager()?;
            let running = app::start(settings, backends, shutdown).await?;
            anyhow::Ok(storage.close_after(running.task, watch))
        },
    )
    .await
}

pub async fn gateway(config: Option<&Path>) -> ExitCode {
    use artisync_gateway::{config, start};
    run_until_signalled(
        "gateway-node",
        config::load(config),
        |settings: config::Settings, shutdown| async move {
            if let config::DeploySource::Publisher { .. } = settings.deploy_source {
                return anyhow::Ok(start::start_pushed(settings, shutdown).await?.task);
            }
            let backends = artisync_backends::gateway_with_tls(
                &settings.traffic_manager_url,
                &settings.traffic_manager_token,
                settings.traffic_manager_timeout,
                &artisync_backends::ClientTls {
                    ca_file: settings.traffic_manager_tls.ca_file.clone(),
                    identity: settings.traffic_manager_tls.client_identity.clone(),
                },
                &settings.amqp_url,
                &settings.topology,
            )?;
            anyhow::Ok(start::start(settings, backends, shutdown).await?.task)
        },
    )
    .await
}
