//! The plan: which targets a request may try, in order (DESIGN.md §2 "Routing
//! semantics").
//!
//! The model's targets by priority (lower first), in a weighted random order
//! within a priority; then each fallback model's targets the same way. A target
//! appears once even when a fallback shares it. Whether a candidate is skipped
//! (unhealthy, circuit open, cooling down) is decided by the attempt loop at the
//! moment it would be tried, because that can change while earlier tries run.

use std::sync::Arc;

use rand::Rng;

use crate::config::{Config, Model, Target};

/// The candidates for `model`, in the order they are tried.
pub fn plan(config: &Config, model: &Model) -> Vec<Arc<Target>> {
    let mut rng = rand::thread_rng();
    let mut out: Vec<Arc<Target>> = Vec::with_capacity(model.targets.len());
    append(&mut out, &model.targets, &mut rng);
    for name in &model.fallbacks {
        if let Some(fallback) = config.models.get(name) {
            append(&mut out, &fallback.targets, &mut rng);
        }
    }
    out
}

/// Appends `targets` not yet in `out`: by priority, then by weighted draw.
fn append(out: &mut Vec<Arc<Target>>, targets: &[Arc<Target>], rng: &mut impl Rng) {
    if let [only] = targets {
        if !out.iter().any(|t| t.id == only.id) {
            out.push(only.clone());
        }
        return;
    }
    // Weighted sampling without replacement (Efraimidis–Spirakis): each target
    // draws u^(1/weight) and larger keys go first, so a target's chance to come
    // first among its priority is its share of the weights.
    let mut keyed: Vec<(u32, f64, &Arc<Target>)> = targets
        .iter()
        .filter(|t| !out.iter().any(|o| o.id == t.id))
        .map(|t| {
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            (t.priority, u.powf(1.0 / f64::from(t.weight)), t)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
    out.extend(keyed.into_iter().map(|(_, _, t)| t.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const CONFIG: &str = "\
keys: [{ name: app, key: sk-app }]
providers:
  a: { type: mock }
  b: { type: mock }
  c: { type: mock }
models:
  main:
    targets:
      - { provider: a, model: m, weight: 3 }
      - { provider: b, model: m, weight: 1 }
      - { provider: c, model: m, priority: 2 }
    fallbacks: [spare]
  spare:
    targets:
      - { provider: c, model: m }
      - { provider: c, model: s }
";

    fn ids(plan: &[Arc<Target>]) -> Vec<&str> {
        plan.iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn priorities_first_then_fallbacks_each_target_once() {
        let config = parse(CONFIG, "t.yaml").unwrap();
        let plan = plan(&config, &config.models["main"]);
        let ids = ids(&plan);
        assert_eq!(ids.len(), 4);
        assert!(ids[..2].contains(&"a/m") && ids[..2].contains(&"b/m"));
        assert_eq!(&ids[2..], ["c/m", "c/s"]);
    }

    #[test]
    fn weights_share_the_first_place() {
        let config = parse(CONFIG, "t.yaml").unwrap();
        let model = &config.models["main"];
        let first_a = (0..4000)
            .filter(|_| plan(&config, model)[0].id == "a/m")
            .count();
        // 3:1 means a goes first 75% of the time: 3000 ± 4.5 standard deviations.
        assert!((2880..=3120).contains(&first_a), "{first_a}");
    }
}
