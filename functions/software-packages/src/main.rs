//! The `software-packages` Lambda function.
fn main() -> Result<(), lambda_http::Error> {
    depot_core::http::lambda::main(&depot_ocp::SURFACE)
}
