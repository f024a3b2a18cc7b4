//! End-to-end tests: they start the built `depot` binary and the Lambda binaries under
//! `cargo lambda watch`, and drive them over HTTP. Run them through `infra/test.sh`,
//! which builds the binaries and starts moto first.
mod access;
mod harness;
mod lambda;
mod packages;
mod rds;
mod routes;
mod search;
mod serve;
mod uploads;
