//! The plan: which targets a request may try, in order.
//!
//! A model has exactly one target in this version (the config refuses more), so the
//! plan is that target. Priorities, weights, fallbacks and skipping unhealthy
//! targets grow here without touching the attempt loop that walks the plan.

use std::sync::Arc;

use crate::config::{Model, Target};

/// The candidates for `model`, in the order they are tried.
pub fn plan(model: &Model) -> Vec<Arc<Target>> {
    model.targets.clone()
}
