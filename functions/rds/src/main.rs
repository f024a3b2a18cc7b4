//! The RDS Lambda function: loads configuration and runs the router on Lambda.
use depot_core::config::Config;
use depot_core::http::{init_tracing, lambda, AppState};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing(true);
    let state = AppState::open(Config::from_env()?, false).await?;
    lambda::run(depot_rds::router(state).fallback(depot_rds::not_found)).await
}
