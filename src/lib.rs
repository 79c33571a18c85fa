//! ciosync keeps a customer.io workspace in step with AIESEC's GIS, from cron.
//!
//! `main.rs` is the process edge; everything else lives here.

pub mod cio;
pub mod cli;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod data_dir;
#[cfg(feature = "fake")]
pub mod demo;
pub mod error;
pub mod explain;
#[cfg(feature = "fake")]
pub mod fake;
pub mod forget;
pub mod gis;
pub mod http;
pub mod init;
pub mod lock;
pub mod logging;
pub mod model;
pub mod monitoring;
pub mod plan;
pub mod state;
pub mod summary;
pub mod sync;
