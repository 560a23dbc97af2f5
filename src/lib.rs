//! hookgate: a TLS-terminating webhook gateway that verifies, deduplicates, stores and
//! fans out webhooks to internal upstreams.
//!
//! A webhook travels through the modules in one direction:
//! [`ingress`] → [`route`] → [`verify`] → [`store`] → [`deliver`].
//! [`config`] turns `gateway.toml` into the runtime types each stage takes, and
//! [`gateway`] wires the stages together.

pub mod admin;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod fuzzing;
pub mod gateway;
pub mod ingress;
pub mod json;
pub mod route;
pub mod store;
pub mod telemetry;
pub mod verify;
