//! depot-core: the domain shared by every depot surface.
//!
//! - [`model`]: projects, repositories, names, keys and timestamps.
//! - [`store`]: the two storage ports ([`store::BlobStore`], [`store::Table`]) and their
//!   AWS and embedded adapters.
//! - [`registry`]: use cases written only against the ports.
//! - [`auth`]: users, password hashes and request identity.
//! - [`http`]: what every surface shares: `AppState`, identity extractor, trace ids,
//!   the route table.
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod model;
pub mod registry;
pub mod store;

pub use error::{Error, Result};
