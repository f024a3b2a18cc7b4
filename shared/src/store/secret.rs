//! The bootstrap administrator's password, from a Secrets Manager secret
//! (`DEPOT_ADMIN_SECRET`, an ARN or a name). It is read only while the table has no
//! administrator yet: once in the life of a deployment.
use crate::{Error, Result};

/// A secret whose `SecretString` is the password (the template's `GenerateSecretString`
/// makes one), or a JSON object with a `password` field.
#[cfg(feature = "admin-secret")]
pub struct SecretsManagerSecret {
    client: aws_sdk_secretsmanager::Client,
    id: String,
}

#[cfg(feature = "admin-secret")]
impl SecretsManagerSecret {
    pub fn new(sdk: &aws_config::SdkConfig, id: &str) -> Self {
        SecretsManagerSecret { client: aws_sdk_secretsmanager::Client::new(sdk), id: id.to_string() }
    }
}

/// The password a secret's string holds.
pub fn password_of(secret: &str) -> Result<String> {
    let trimmed = secret.trim();
    let password = match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(serde_json::Value::Object(o)) => o
            .get("password")
            .and_then(|p| p.as_str())
            .ok_or_else(|| Error::Internal("the admin secret is a JSON object without a \"password\" string".into()))?
            .to_string(),
        _ => trimmed.to_string(),
    };
    if password.is_empty() {
        return Err(Error::Internal("the admin secret is empty".into()));
    }
    Ok(password)
}

#[cfg(feature = "admin-secret")]
#[async_trait::async_trait]
impl crate::auth::AdminSecret for SecretsManagerSecret {
    async fn read(&self) -> Result<String> {
        use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
        let out = self.client.get_secret_value().secret_id(&self.id).send().await.map_err(|e| {
            Error::Internal(format!(
                "reading the admin secret {}: {}",
                self.id,
                e.message().or(e.code()).map(str::to_string).unwrap_or_else(|| e.to_string())
            ))
        })?;
        password_of(out.secret_string().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_of_secrets() {
        assert_eq!(super::password_of("s3cret-generated\n").unwrap(), "s3cret-generated");
        assert_eq!(super::password_of(r#"{"password": "p4ss-word-long"}"#).unwrap(), "p4ss-word-long");
        assert!(super::password_of(r#"{"user": "admin"}"#).is_err());
        assert!(super::password_of("  ").is_err());
    }
}
