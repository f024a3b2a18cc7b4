//! Domain types: names, projects, repositories, the table key scheme and timestamps.
mod keys;
mod names;
mod package;
mod project;
mod time;

pub use keys::*;
pub use names::*;
pub use package::*;
pub use project::*;
pub use time::*;
