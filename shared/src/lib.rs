//! depot-core: the domain shared by every depot surface.
//!
//! - [`model`]: plain data and rules: names, projects, repositories, packages and
//!   versions, callers, actions and grants, timestamps. No storage.
//! - [`store`]: the two storage ports ([`store::BlobStore`], [`store::Table`]), their
//!   AWS and embedded adapters, and the table's schema ([`store::schema`]).
//! - [`registry`]: use cases written only against the ports.
//! - [`auth`]: authentication, authorization and account administration.
//! - [`http`]: what every surface shares: the application state (where the adapters are
//!   chosen), the surface kit, the bkrepo envelope, downloads, trace ids.
//! - [`archive`]: reading uploaded archives with every allocation capped.
//! - [`config`]: the settings, as plain data.
//! - [`deadline`]: the time a request has left (on Lambda), which bounds its waits.
pub mod archive;
pub mod auth;
pub mod config;
pub mod deadline;
pub mod error;
pub mod http;
pub mod model;
pub mod registry;
pub mod store;

pub use error::{Error, Result};
