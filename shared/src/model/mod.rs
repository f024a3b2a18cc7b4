//! Domain types: names, projects, repositories, packages, callers and grants, and
//! timestamps. Plain data and rules, with no storage: the table schema is
//! `store::schema`.
mod access;
mod names;
mod package;
mod project;
mod time;

pub use access::*;
pub use names::*;
pub use package::*;
pub use project::*;
pub use time::*;
