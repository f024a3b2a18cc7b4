//! End-to-end tests. Some start the built `depot` binary and drive it over HTTP, some run
//! the Lambda binaries under `cargo lambda watch`, and some drive the surfaces' routers
//! in process (`harness::surfaces`, `harness::oneshot`) over the real storage adapters,
//! to count what a request costs at the ports. Run them through `infra/test.sh`, which
//! builds the binaries and starts moto first.
mod access;
mod aps;
mod compat;
mod cli;
mod cost;
mod derived;
mod harness;
mod lambda;
mod ocp;
mod packages;
mod rds;
mod routes;
mod search;
mod serve;
mod strux;
mod uploads;
