//! Stream ids: one stream per aggregate. Each execution is a stream of its own, so concurrent runs
//! of one task never conflict.

pub fn task(task_id: &str) -> String {
    format!("task:{task_id}")
}

pub fn execution(execution_id: &str) -> String {
    format!("exec:{execution_id}")
}

pub fn wallet(owner: &str, address: &str) -> String {
    format!("wallet:{owner}:{address}")
}

/// `secret:<org|_>:<owner>:<workflow|_>:<name>`, the layout of the secrets projection's keys.
pub fn secret(org_id: &str, owner: &str, workflow_id: &str, name: &str) -> String {
    let or_blank = |s: &str| {
        if s.is_empty() {
            "_".to_owned()
        } else {
            s.to_owned()
        }
    };
    format!(
        "secret:{}:{owner}:{}:{name}",
        or_blank(org_id),
        or_blank(workflow_id)
    )
}

pub fn operator(address: &str) -> String {
    format!("operator:{address}")
}

/// Assignments of operators to a task.
pub fn assignment(task_id: &str) -> String {
    format!("assign:{task_id}")
}

/// The operators' reports and the attestation of one firing.
pub fn firing(task_id: &str, trigger_request_id: &str) -> String {
    format!("firing:{task_id}:{trigger_request_id}")
}

/// Overload reports of an event trigger.
pub fn overload(task_id: &str) -> String {
    format!("overload:{task_id}")
}

pub fn api_key(jti: &str) -> String {
    format!("apikey:{jti}")
}

/// A `WithdrawFunds` request and its user operation.
pub fn withdrawal(withdrawal_id: &str) -> String {
    format!("withdrawal:{withdrawal_id}")
}

/// The user operations a `RunNodeWithInputs` of a write sent (it is no execution).
pub fn preview(id: &str) -> String {
    format!("preview:{id}")
}
