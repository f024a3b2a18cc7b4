//! The `aps` Lambda function.
fn main() -> Result<(), lambda_http::Error> {
    depot_core::http::lambda::main(&depot_aps::SURFACE)
}
