//! The two storage ports and their adapters.
//!
//! Nothing outside this module knows which adapter it talks to.
mod blob;
mod digest;
pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod fs;
pub mod s3;
mod signer;
mod table;

pub use blob::*;
pub use digest::*;
pub use signer::*;
pub use table::*;
