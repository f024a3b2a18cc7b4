//! The `worker` Lambda function (see the library's documentation).
use lambda_http::lambda_runtime::{run, service_fn, LambdaEvent};
use serde_json::Value;

fn main() -> Result<(), lambda_http::Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        depot_core::http::init_tracing(true);
        let state = depot_core::http::lambda::lambda_state()?;
        let sweep = depot_worker::SweepSettings::from_env()?;
        let (registry, sweep) = (&state.registry, &sweep);
        run(service_fn(move |event: LambdaEvent<Value>| async move {
            let task = depot_worker::task_of(&event.payload)?;
            let report = depot_worker::handle(registry, task, sweep).await?;
            Ok::<Value, lambda_http::Error>(report)
        }))
        .await
    })
}
