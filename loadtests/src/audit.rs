//! The audit after a run: what became of every accepted request. Each request carries a
//! sequence number in its payload and each accepted one got an execution id back; the
//! executions the deployment recorded are matched against both. An accepted request without an
//! execution is *missing*; a request behind more than one execution is *duplicated*. Either is
//! a failure of the run.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use uuid::Uuid;

/// A request the deployment accepted (2xx), with the execution id it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub seq: u64,
    pub execution_id: Uuid,
}

/// An execution the deployment recorded for this run's workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub id: Uuid,
    /// The sequence number of the request behind it (from its inputs), when it has one.
    pub seq: Option<u64>,
    /// `completed`, `failed` or `running`.
    pub status: String,
    /// From the API accepting the request to the execution finishing, by the deployment's own
    /// timestamps (`enqueued_at` and `completed_at` of the execution).
    pub end_to_end: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Audit {
    pub sent: u64,
    pub accepted: u64,
    /// Answers that were not 2xx, by status (`0`: no answer).
    pub rejected: BTreeMap<u16, u64>,
    pub completed: u64,
    pub failed: u64,
    /// Recorded but not finished when the audit gave up waiting.
    pub unfinished: u64,
    pub missing: u64,
    pub duplicated: u64,
    /// The execution id of every missing request, so a real loss can be looked into.
    pub missing_ids: Vec<Uuid>,
    /// Requests answered with an error that ran all the same: a refusal after the job was
    /// stored but before its storage was confirmed ("it may still run"). Not a loss or a
    /// duplicate, but worth knowing.
    pub refused_but_ran: u64,
}

impl Audit {
    /// Executions lost or run twice: what makes a run fail whatever its thresholds.
    pub fn lost(&self) -> u64 {
        self.missing
    }

    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.duplicated == 0
    }

    /// Accepted requests whose execution is not recorded yet (the audit waits for these).
    pub fn outstanding(&self) -> u64 {
        self.missing + self.unfinished
    }
}

/// Matches what was accepted with what was recorded. `statuses` are the answers by status.
pub fn audit(statuses: &BTreeMap<u16, u64>, accepted: &[Accepted], found: &[Found]) -> Audit {
    let mut per_seq: HashMap<u64, u64> = HashMap::new();
    for execution in found {
        if let Some(seq) = execution.seq {
            *per_seq.entry(seq).or_default() += 1;
        }
    }
    let found_ids: HashSet<Uuid> = found.iter().map(|e| e.id).collect();
    let accepted_ids: HashSet<Uuid> = accepted.iter().map(|a| a.execution_id).collect();
    let mut report = Audit {
        sent: statuses.values().sum(),
        accepted: accepted.len() as u64,
        rejected: statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(s, n)| (*s, *n))
            .collect(),
        ..Default::default()
    };
    for request in accepted {
        if !found_ids.contains(&request.execution_id) {
            report.missing += 1;
            report.missing_ids.push(request.execution_id);
        }
    }
    for execution in found {
        // Only this run's executions count (its sequence numbers or its execution ids).
        let ours = accepted_ids.contains(&execution.id) || execution.seq.is_some();
        if !ours {
            continue;
        }
        match execution.status.as_str() {
            "completed" => report.completed += 1,
            "failed" => report.failed += 1,
            _ => report.unfinished += 1,
        }
    }
    report.duplicated = per_seq.values().map(|n| n.saturating_sub(1)).sum();
    let accepted_seqs: HashSet<u64> = accepted.iter().map(|a| a.seq).collect();
    report.refused_but_ran = per_seq
        .keys()
        .filter(|seq| !accepted_seqs.contains(seq))
        .count() as u64;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(seq: u64) -> Accepted {
        Accepted {
            seq,
            execution_id: Uuid::from_u128(seq as u128),
        }
    }

    fn found(seq: u64, status: &str) -> Found {
        Found {
            id: Uuid::from_u128(seq as u128),
            seq: Some(seq),
            status: status.to_owned(),
            end_to_end: None,
        }
    }

    #[test]
    fn a_clean_run_accounts_for_every_request() {
        let statuses = BTreeMap::from([(202, 3), (429, 1)]);
        let report = audit(
            &statuses,
            &[accepted(0), accepted(1), accepted(2)],
            &[
                found(0, "completed"),
                found(1, "completed"),
                found(2, "failed"),
            ],
        );
        assert_eq!(report.sent, 4);
        assert_eq!(report.accepted, 3);
        assert_eq!(report.rejected, BTreeMap::from([(429, 1)]));
        assert_eq!((report.completed, report.failed), (2, 1));
        assert!(report.is_clean());
    }

    #[test]
    fn missing_and_duplicated_executions_are_found() {
        let statuses = BTreeMap::from([(202, 3)]);
        let twin = Found {
            id: Uuid::from_u128(99),
            seq: Some(1),
            status: "completed".into(),
            end_to_end: None,
        };
        let report = audit(
            &statuses,
            &[accepted(0), accepted(1), accepted(2)],
            &[
                found(0, "completed"),
                found(1, "completed"),
                twin,
                found(7, "running"),
            ],
        );
        assert_eq!(report.missing, 1, "request 2 has no execution");
        assert_eq!(report.missing_ids, vec![Uuid::from_u128(2)]);
        assert_eq!(report.duplicated, 1, "request 1 ran twice");
        assert_eq!(report.unfinished, 1);
        assert!(!report.is_clean());
    }

    #[test]
    fn a_refused_request_that_ran_is_counted_apart_not_as_a_loss() {
        // Request 1 was answered 503 (its storage unconfirmed) and ran once all the same.
        let statuses = BTreeMap::from([(202, 1), (503, 1)]);
        let report = audit(
            &statuses,
            &[accepted(0)],
            &[found(0, "completed"), found(1, "completed")],
        );
        assert_eq!(report.refused_but_ran, 1);
        assert_eq!((report.missing, report.duplicated), (0, 0));
        assert!(report.is_clean());
    }
}
