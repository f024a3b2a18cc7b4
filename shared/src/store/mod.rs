//! The two storage ports, their adapters, and the table's schema.
//!
//! Nothing outside this module knows which adapter it talks to; the adapters are chosen
//! where the application state is built (`http::AppState::open`).
mod blob;
mod counting;
mod digest;
pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "embedded")]
mod flush;
#[cfg(feature = "embedded")]
pub mod fs;
pub mod s3;
pub mod schema;
pub mod secret;
mod signer;
#[cfg(feature = "embedded")]
mod small;
mod table;

pub use blob::*;
pub use counting::{CountingBlobs, CountingTable};
pub use digest::*;
pub use signer::*;
pub use table::*;
