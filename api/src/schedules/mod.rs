//! Scheduled jobs as the API keeps them: written from timer nodes when a workflow is saved and
//! through `/api/v1/jobs/scheduled`; the scheduler's leader fires them.

pub mod registry;
pub mod store;
