//! Stream ids: one stream per aggregate. Each execution is a stream of its own, so concurrent runs
//! of one task never conflict. The ids are built and parsed here only.

const TASK: &str = "task:";
const EXECUTION: &str = "exec:";

pub fn task(task_id: &str) -> String {
    format!("{TASK}{task_id}")
}

/// The task a `task` stream id names; `None` for any other stream.
pub fn task_id_of(stream: &str) -> Option<&str> {
    stream.strip_prefix(TASK)
}

pub fn execution(execution_id: &str) -> String {
    format!("{EXECUTION}{execution_id}")
}

/// The execution an `execution` stream id names; `None` for any other stream.
pub fn execution_id_of(stream: &str) -> Option<&str> {
    stream.strip_prefix(EXECUTION)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ids_it_builds_parse_back_and_no_other() {
        assert_eq!(task_id_of(&task("01J")), Some("01J"));
        assert_eq!(execution_id_of(&execution("01K")), Some("01K"));
        assert_eq!(task_id_of(&execution("01K")), None);
        assert_eq!(execution_id_of(&task("01J")), None);
        assert_eq!(task_id_of(&assignment("01J")), None);
        assert_eq!(task_id_of(&firing("01J", "01J:5")), None);
    }
}
