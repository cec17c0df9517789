//! The fleet check: a task that reads the fleet's events from the shared audit table
//! every `fleet.check_secs`, publishes the [`FleetView`] for the admin listener and the
//! metrics, and posts to the alert webhook when the live replicas' versions change.
//!
//! Every replica runs the check and sees the same fleet; only the live replica whose name
//! sorts first posts, so the officer gets one message per change, not one per replica.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_postgres::Client;

use super::{Fleet, FleetView, sql};
use crate::config::FleetConfig;
use crate::proxy::Gateway;

/// How far before the newest event seen the next read starts: rows committed late (a
/// replica's clock behind, a slow batch) are read on a later check.
const OVERLAP: time::Duration = time::Duration::minutes(5);

/// Where the check reads and who runs it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The audit sink's connection string.
    pub conn: String,
    pub table: String,
    /// This replica's name.
    pub me: Arc<str>,
}

/// Runs the check until the process ends. Needs a tokio runtime.
pub fn spawn(gw: Arc<Gateway>, target: Target, cfg: FleetConfig) {
    tokio::spawn(run(gw, target, cfg));
}

/// Whether `me` is the replica that posts for `view`.
pub fn posts(view: &FleetView, me: &str) -> bool {
    view.live().next().is_some_and(|m| m.replica == me)
}

async fn run(gw: Arc<Gateway>, target: Target, cfg: FleetConfig) {
    let mut fleet = Fleet::default();
    let mut client: Option<Client> = None;
    let mut since =
        OffsetDateTime::now_utc() - time::Duration::days(i64::from(cfg.lookback_days.max(1)));
    // The versions of the last drift told to the officer; `None`: no drift told.
    let mut told: Option<Vec<String>> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.check_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = OffsetDateTime::now_utc();
        let read = read(&mut client, &target, since).await;
        let view = match read {
            Ok(lines) => {
                fleet.observe_all(lines.iter().map(String::as_str));
                if let Some(newest) = fleet.newest() {
                    since = newest - OVERLAP;
                }
                // Whose writer holds its session now: killed or cut-off replicas do not.
                let connected = match &client {
                    Some(c) => match sql::held_chains(c, &target.table, &fleet.names()).await {
                        Ok(names) => Some(names.into_iter().collect()),
                        Err(e) => {
                            tracing::warn!(error = %e, "fleet check: replicas' sessions not read");
                            None
                        }
                    },
                    None => None,
                };
                fleet.view(now, connected.as_ref())
            }
            Err(e) => {
                tracing::warn!(error = %e, "fleet check failed");
                client = None;
                let mut v = gw.fleet().get().map(|v| (*v).clone()).unwrap_or_default();
                v.error = Some(e);
                gw.fleet().set(v);
                continue;
            }
        };
        gw.fleet().set(view.clone());
        let now_drift = view.drift.then(|| view.versions.clone());
        if now_drift == told {
            continue;
        }
        let was_drift = told.is_some();
        told = now_drift;
        if view.drift {
            tracing::warn!(versions = ?view.versions, "policy drift across the fleet");
        }
        if (view.drift || was_drift)
            && posts(&view, &target.me)
            && let Some(hook) = gw.state().webhook.clone()
        {
            hook.post(&view.alert_text()).await;
        }
    }
}

/// The event lines since `since`, connecting first if need be.
async fn read(
    client: &mut Option<Client>,
    target: &Target,
    since: OffsetDateTime,
) -> Result<Vec<String>, String> {
    let c = match client.take() {
        Some(c) if !c.is_closed() => c,
        _ => sql::connect(&target.conn).await?,
    };
    let lines = sql::read_events(&c, &target.table, since).await?;
    *client = Some(c);
    Ok(lines)
}
