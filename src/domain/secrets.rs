//! Secrets: names, scopes and the create / update / delete rules. Values arrive in clear and leave
//! this layer only as ciphertext (`crate::secret_box`).
//!
//! Scopes: a user secret (no workflow) or a workflow secret (one of the owner's tasks). A workflow
//! secret overrides a user secret of the same name in that task's runs. Organisation scope is
//! refused: there are no organisations here.

use events::Event;
use events::event::{SecretCreated, SecretDeleted, SecretScope, SecretUpdated};
use projections::secrets::SecretRow;

use super::{Code, DomainError, DomainResult};
use crate::config::LimitsConfig;

/// Checks a secret's address: the name, and no organisation.
pub fn scope(
    owner: &str,
    name: &str,
    workflow_id: &str,
    org_id: &str,
    limits: &LimitsConfig,
) -> DomainResult<SecretScope> {
    if !org_id.trim().is_empty() {
        return Err(DomainError::invalid(
            "organisation-scoped secrets are not supported: leave org_id empty for a user secret, or set workflow_id",
        ));
    }
    if name.is_empty() {
        return Err(DomainError::Invalid(
            "the secret has no name".into(),
            Code::MissingRequiredField,
        ));
    }
    if name.len() > limits.max_name_bytes
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(DomainError::invalid(format!(
            "the secret name {name:?} must be letters, digits, '_', '-' or '.', at most {} bytes",
            limits.max_name_bytes
        )));
    }
    Ok(SecretScope {
        owner: owner.to_owned(),
        org_id: String::new(),
        workflow_id: workflow_id.trim().to_owned(),
        name: name.to_owned(),
    })
}

pub fn check_value(value: &str, limits: &LimitsConfig) -> DomainResult<()> {
    if value.is_empty() {
        return Err(DomainError::Invalid(
            "the secret has no value".into(),
            Code::MissingRequiredField,
        ));
    }
    if value.len() > limits.max_secret_bytes {
        return Err(DomainError::invalid(format!(
            "the secret is {} bytes, more than the limit of {}",
            value.len(),
            limits.max_secret_bytes
        )));
    }
    Ok(())
}

/// `CreateSecret`, with `ciphertext` already sealed.
pub fn create(
    existing: Option<&SecretRow>,
    count: u64,
    limit: u64,
    scope: SecretScope,
    ciphertext: String,
) -> DomainResult<Event> {
    if existing.is_some() {
        return Err(DomainError::AlreadyExists(
            format!(
                "a secret named {:?} already exists in this scope: use UpdateSecret",
                scope.name
            ),
            Code::SecretAlreadyExists,
        ));
    }
    if count >= limit {
        return Err(DomainError::QuotaExceeded(format!(
            "an owner may have at most {limit} secrets"
        )));
    }
    Ok(SecretCreated {
        scope,
        ciphertext,
        description: String::new(),
    }
    .into())
}

fn not_found(scope: &SecretScope) -> DomainError {
    DomainError::NotFound(
        format!("secret {:?} not found", scope.name),
        Code::SecretNotFound,
    )
}

/// `UpdateSecret`.
pub fn update(
    existing: Option<&SecretRow>,
    scope: SecretScope,
    ciphertext: String,
) -> DomainResult<Event> {
    if existing.is_none() {
        return Err(not_found(&scope));
    }
    Ok(SecretUpdated { scope, ciphertext }.into())
}

/// `DeleteSecret`.
pub fn delete(existing: Option<&SecretRow>, scope: SecretScope) -> DomainResult<Event> {
    if existing.is_none() {
        return Err(not_found(&scope));
    }
    Ok(SecretDeleted { scope }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_rules() {
        let limits = LimitsConfig::default();
        assert!(
            scope("0xo", "api_key", "", "org1", &limits)
                .unwrap_err()
                .to_string()
                .contains("organisation")
        );
        assert!(scope("0xo", "", "", "", &limits).is_err());
        assert!(scope("0xo", "bad name", "", "", &limits).is_err());
        let s = scope("0xo", "api_key", "01TASK", "", &limits).unwrap();
        assert_eq!(s.workflow_id, "01TASK");
    }

    #[test]
    fn create_update_delete() {
        let limits = LimitsConfig::default();
        let s = scope("0xo", "k", "", "", &limits).unwrap();
        assert!(matches!(
            create(None, 0, 10, s.clone(), "ab".into()).unwrap(),
            Event::SecretCreated(_)
        ));
        assert!(matches!(
            create(None, 10, 10, s.clone(), "ab".into()),
            Err(DomainError::QuotaExceeded(_))
        ));
        assert!(matches!(
            update(None, s.clone(), "ab".into()),
            Err(DomainError::NotFound(..))
        ));
        assert!(matches!(delete(None, s), Err(DomainError::NotFound(..))));
    }
}
