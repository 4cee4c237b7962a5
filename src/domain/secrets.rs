//! Secrets: names, scopes and the create / update / delete rules. Values arrive in clear and leave
//! this layer only as ciphertext (`crate::secret_box`).
//!
//! Names: `ap_` (in any case) is reserved for the system's own secrets, as in the original.
//!
//! Scopes: a user secret (no workflow) or a workflow secret. As in the original, a workflow
//! secret takes any well-formed workflow id (no task lookup: the owner is part of its key, so a
//! user only ever reaches their own), and `CreateSecret` is an upsert. Organisation scope is
//! refused: there are no organisations here.
//!
//! `DeleteSecret` without a workflow deletes the user secret of that name, else the one workflow
//! secret of that name (as the original since its #772); when several workflows have one, it
//! deletes nothing and names them.

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
    let workflow_id = workflow_id.trim();
    if workflow_id.len() > limits.max_name_bytes
        || !workflow_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(DomainError::invalid(format!(
            "the workflow id {workflow_id:?} must be letters, digits, '_' or '-', at most {} bytes",
            limits.max_name_bytes
        )));
    }
    Ok(SecretScope {
        owner: owner.to_owned(),
        org_id: String::new(),
        workflow_id: workflow_id.to_owned(),
        name: name.to_owned(),
    })
}

/// The prefix the original keeps for its own secrets (`ap_notify_bot_token`, …), in any case.
pub const RESERVED_PREFIX: &str = "ap_";

/// `CreateSecret` refuses a name in the reserved prefix, as the original, with its words first.
/// Only creation: a secret saved before the rule can still be updated or deleted.
pub fn check_new_name(name: &str) -> DomainResult<()> {
    let reserved = name
        .get(..RESERVED_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(RESERVED_PREFIX));
    if reserved {
        return Err(DomainError::invalid(format!(
            "secret name cannot start with ap_: {name:?} is in the prefix reserved (in any case) for the system's own secrets"
        )));
    }
    Ok(())
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

/// `CreateSecret`, with `ciphertext` already sealed: an upsert, as the original's (an existing
/// secret of that scope gets the new value).
pub fn create(
    existing: Option<&SecretRow>,
    count: u64,
    limit: u64,
    scope: SecretScope,
    ciphertext: String,
) -> DomainResult<Event> {
    if existing.is_some() {
        return Ok(SecretUpdated { scope, ciphertext }.into());
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

/// The secrets of a deleted task's workflow, among its owner's: nothing can read them once the
/// task is gone, and no call could delete them afterwards, so they go with it.
pub fn of_deleted_task(task_id: &str, owners: Vec<SecretRow>) -> Vec<SecretRow> {
    owners
        .into_iter()
        .filter(|r| r.scope.workflow_id == task_id && r.scope.org_id.is_empty())
        .collect()
}

/// Which secret a `DeleteSecret` without a workflow means, among the owner's secrets of that
/// name (`candidates`): the user secret if there is one, else the only workflow secret.
pub fn delete_target<'r>(
    name: &str,
    candidates: &'r [SecretRow],
) -> DomainResult<Option<&'r SecretRow>> {
    if let Some(user) = candidates.iter().find(|r| r.scope.workflow_id.is_empty()) {
        return Ok(Some(user));
    }
    match candidates {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        several => {
            let ids: Vec<&str> = several
                .iter()
                .map(|r| r.scope.workflow_id.as_str())
                .collect();
            Err(DomainError::FailedPrecondition(
                format!(
                    "several workflows have a secret named {name:?} ({}): give the workflow_id of the one to delete",
                    ids.join(", ")
                ),
                Code::InvalidRequest,
            ))
        }
    }
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
        assert!(scope("0xo", "api_key", "a/b", "", &limits).is_err());
    }

    #[test]
    fn given_a_name_in_the_reserved_prefix_when_created_then_refused_in_the_originals_words() {
        for name in ["ap_token", "AP_token", "Ap_x", "ap_"] {
            let err = check_new_name(name).unwrap_err().to_string();
            assert!(
                err.starts_with("secret name cannot start with ap_"),
                "{name}: {err}"
            );
        }
        for name in ["api_key", "map_key", "ap", "a", "apx_", "é"] {
            assert!(check_new_name(name).is_ok(), "{name}");
        }
    }

    fn row(workflow: &str) -> SecretRow {
        SecretRow {
            scope: SecretScope {
                owner: "0xo".into(),
                org_id: String::new(),
                workflow_id: workflow.into(),
                name: "k".into(),
            },
            ciphertext: String::new(),
            description: String::new(),
            created_at: 0,
            updated_at: 0,
            created_by: String::new(),
        }
    }

    #[test]
    fn given_secrets_of_a_name_when_deleted_without_workflow_then_the_originals_choice() {
        assert!(delete_target("k", &[]).unwrap().is_none());
        let user_and_wf = [row("W1"), row("")];
        assert_eq!(
            delete_target("k", &user_and_wf)
                .unwrap()
                .unwrap()
                .scope
                .workflow_id,
            ""
        );
        let one = [row("W1")];
        assert_eq!(
            delete_target("k", &one).unwrap().unwrap().scope.workflow_id,
            "W1"
        );
        let err = delete_target("k", &[row("W1"), row("W2")]).unwrap_err();
        assert!(err.to_string().contains("W1, W2"), "{err}");
    }

    #[test]
    fn create_update_delete() {
        let limits = LimitsConfig::default();
        let s = scope("0xo", "k", "", "", &limits).unwrap();
        assert!(matches!(
            create(None, 0, 10, s.clone(), "ab".into()).unwrap(),
            Event::SecretCreated(_)
        ));
        // An upsert, as the original: the existing secret is updated, whatever the quota.
        assert!(matches!(
            create(Some(&row("")), 10, 10, s.clone(), "cd".into()).unwrap(),
            Event::SecretUpdated(_)
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
