//! bordergate: a GDPR-aware cross-border data governance gateway.
//!
//! The request path lives in [`proxy`], as phases over one [`snapshot::Snapshot`]: it calls
//! [`auth`] to know who asks, [`transfer`] to classify the request (with the [`catalog`])
//! and decide it (with the [`policy`] pack), [`audit`] to make the decision durable before
//! any byte crosses the border, and [`respond`] to turn every refusal into its answer.
//! The CLI ([`cli`]) and the admin API ([`admin`]) call the same classification and
//! decision, so no tool can disagree with the gateway.
#![forbid(unsafe_code)]

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod fleet;
pub mod lineage;
pub mod metrics;
pub mod model;
pub mod net;
pub mod pipl;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod respond;
pub mod s3;
pub mod snapshot;
pub mod tls;
pub mod transfer;
pub mod transform;
