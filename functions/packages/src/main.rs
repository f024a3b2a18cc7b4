//! The `packages` Lambda function.
fn main() -> Result<(), lambda_http::Error> {
    depot_core::http::lambda::main(&depot_packages::SURFACE)
}
