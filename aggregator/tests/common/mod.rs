//! Fixtures shared by the aggregator's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use hansa_protocol::messages::{DpMode, PrivacySettings, RoundConfig, Update};
use hansa_protocol::{ParameterSet, Round, Scope};

/// A small model: `item_embedding` [2, 2] and `bias` [], all shared.
pub fn model(values: [f32; 5]) -> ParameterSet {
    let mut set = ParameterSet::new();
    set.push(
        "item_embedding",
        vec![2, 2],
        values[..4].to_vec(),
        Scope::Shared,
    )
    .unwrap();
    set.push("bias", vec![], vec![values[4]], Scope::Shared)
        .unwrap();
    set
}

/// The cohort of [`round_config`]: `merchant-a`, `merchant-b`, `merchant-c`.
pub fn cohort() -> std::collections::BTreeSet<String> {
    ["merchant-a", "merchant-b", "merchant-c"]
        .map(String::from)
        .into()
}

/// The config of `round` with a cohort of three (see [`cohort`]).
pub fn round_config(round: Round) -> RoundConfig {
    RoundConfig {
        round,
        cohort_size: 3,
        local_epochs: 1,
        learning_rate: 0.05,
        batch_size: 64,
        proximal_mu: 0.0,
        privacy: PrivacySettings {
            mode: DpMode::Off,
            clip_norm: 1.0,
            noise_multiplier: 0.0,
            grid_step: 1e-3,
            noise_shares: 3,
        },
        secure_aggregation: None,
        adaptive_clip: None,
        update_deadline_ms: 60_000,
        seed: 7,
    }
}

/// An update for `round` with the [`model`] layout.
pub fn update(round: Round, delta: [f32; 5], num_examples: u64) -> Update {
    Update {
        round,
        num_examples,
        delta: model(delta),
        train_loss: 0.25,
    }
}

/// A fresh, empty directory under cargo's per-target temporary folder.
pub fn fresh_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "hansa-aggregator-{name}-{}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
