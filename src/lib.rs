//! bordergate: a GDPR-aware cross-border data governance gateway.
//!
//! The request path lives in [`proxy`]; it calls [`auth`] to know who asks,
//! [`catalog`] to know what the data is, [`policy`] to decide, and [`audit`] to
//! make the decision durable before any byte crosses the border.
#![forbid(unsafe_code)]

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod model;
pub mod net;
pub mod pipl;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod tls;
