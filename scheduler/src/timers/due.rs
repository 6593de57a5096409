//! The leader's in-memory due times: a min-heap of wake-up times with lazy deletion, and per
//! job the `next_run_at` it expects in the database (the value its compare-and-set checks).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What the leader knows about one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// When to look at the job: its tick, or later after a failed attempt.
    pub wake_at: DateTime<Utc>,
    /// The job's `next_run_at` as last read or written.
    pub next_run_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct DueQueue {
    heap: BinaryHeap<Reverse<(DateTime<Utc>, Uuid)>>,
    entries: HashMap<Uuid, Entry>,
}

impl DueQueue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets (or replaces) the job's entry; `None` forgets the job.
    pub fn set(&mut self, job_id: Uuid, entry: Option<Entry>) {
        match entry {
            Some(entry) => {
                if self.entries.insert(job_id, entry).map(|old| old.wake_at) != Some(entry.wake_at)
                {
                    self.heap.push(Reverse((entry.wake_at, job_id)));
                }
            }
            None => {
                self.entries.remove(&job_id);
            }
        }
        self.compact_if_bloated();
    }

    /// The earliest wake-up time.
    pub fn next_wake(&mut self) -> Option<DateTime<Utc>> {
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if self.entries.get(&id).is_some_and(|e| e.wake_at == at) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns every job whose wake-up time is at or before `now`.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<(Uuid, Entry)> {
        let mut due = Vec::new();
        while let Some(at) = self.next_wake() {
            if at > now {
                break;
            }
            let Reverse((_, id)) = self.heap.pop().expect("peeked");
            if let Some(entry) = self.entries.remove(&id) {
                due.push((id, entry));
            }
        }
        due
    }

    /// Replaced and forgotten entries leave stale heap items behind; rebuild when they
    /// outnumber the live ones, so churn cannot grow memory without bound.
    fn compact_if_bloated(&mut self) {
        if self.heap.len() > 1024 && self.heap.len() > 2 * self.entries.len() {
            self.heap = self
                .entries
                .iter()
                .map(|(id, e)| Reverse((e.wake_at, *id)))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn entry(secs: i64) -> Option<Entry> {
        Some(Entry {
            wake_at: at(secs),
            next_run_at: at(secs),
        })
    }

    #[test]
    fn due_jobs_come_out_in_time_order_and_changes_replace_entries() {
        let mut queue = DueQueue::default();
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        queue.set(a, entry(30));
        queue.set(b, entry(10));
        queue.set(c, entry(20));
        queue.set(b, entry(40)); // changed: its old time no longer counts
        queue.set(c, None); // deleted
        assert_eq!(queue.next_wake(), Some(at(30)));
        assert!(queue.take_due(at(29)).is_empty());
        let due = queue.take_due(at(45));
        assert_eq!(
            due.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![a, b]
        );
        assert!(queue.is_empty());
        assert_eq!(queue.next_wake(), None);
    }

    #[test]
    fn churn_does_not_grow_the_heap_without_bound() {
        let mut queue = DueQueue::default();
        let id = Uuid::new_v4();
        for i in 0..100_000 {
            queue.set(id, entry(i));
        }
        assert!(queue.heap.len() <= 2048);
        assert_eq!(queue.len(), 1);
    }
}
