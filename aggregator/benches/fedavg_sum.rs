//! FedAvg's weighted sum over 100 updates of 1M f32 parameters, in GB/s of update data per core.
//!
//! Run: `cargo bench -p hansa-aggregator --bench fedavg_sum` (release profile, one thread).

use std::hint::black_box;
use std::time::{Duration, Instant};

use hansa_aggregator::strategy::{Strategy, StrategyConfig, WeightedSum};
use hansa_protocol::messages::Update;
use hansa_protocol::{ParameterSet, Scope};

const UPDATES: usize = 100;
/// 2²⁰ = 1,048,576 parameters in four tensors, the shape of a small recommender's shared part.
const LAYOUT: [(&str, &[usize]); 4] = [
    ("item_embedding", &[16_384, 48]),
    ("item_bias", &[16_384]),
    ("mlp.weight", &[1023, 240]),
    ("mlp.bias", &[240]),
];
const REPEATS: usize = 7;

fn main() {
    let updates: Vec<Update> = (0..UPDATES).map(|i| make_update(i as u64)).collect();
    let global = make_set(0, 0.0);
    let layout = global.spec();
    let num_values = global.num_values();
    let bytes = (UPDATES * num_values * std::mem::size_of::<f32>()) as f64;
    println!(
        "{UPDATES} updates x {num_values} f32 parameters = {:.1} MB of update data",
        bytes / 1e6
    );

    let sum_times = time(|| {
        let mut sum = WeightedSum::zeros(num_values);
        for update in &updates {
            sum.add(&layout, &update.delta, update.num_examples as f64)
                .expect("bench updates have the global layout");
        }
        black_box(sum.total_weight());
    });
    report("weighted sum (Σ nᵢΔᵢ)", &sum_times, bytes);

    let mut fedavg = Strategy::new(StrategyConfig::FedAvg).expect("valid config");
    let round_times = time(|| {
        let next = fedavg.aggregate(&global, &updates).expect("aggregates");
        black_box(next.num_values());
    });
    report(
        "full FedAvg round (sum + mean + apply)",
        &round_times,
        bytes,
    );

    commit_time(&global);
}

/// Times committing rounds with a 1M-parameter checkpoint to a sled store on disk.
fn commit_time(global: &ParameterSet) {
    use hansa_aggregator::store::*;
    use hansa_protocol::messages::{DpMode, PrivacySettings, RoundConfig};

    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fedavg-sum-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SledStore::open(&dir, StoreOptions::default()).expect("opens a fresh store");
    store
        .record_initial_model(global, InitialSource::File("bench".into()))
        .expect("records round 0");
    let mut times = Vec::new();
    for round in 1..=REPEATS as u64 {
        let commit = RoundCommit {
            record: RoundRecord {
                round,
                config: RoundConfig {
                    round,
                    cohort_size: 0,
                    local_epochs: 1,
                    learning_rate: 0.1,
                    batch_size: 32,
                    proximal_mu: 0.0,
                    privacy: PrivacySettings {
                        mode: DpMode::Off,
                        clip_norm: 1.0,
                        noise_multiplier: 0.0,
                        grid_step: 1e-3,
                        noise_shares: 1,
                    },
                    secure_aggregation: None,
                    adaptive_clip: None,
                    update_deadline_ms: 1,
                    seed: 0,
                },
                strategy: "fedavg".into(),
                training: TrainingSummary {
                    contributors: vec![],
                    dropped: vec![],
                    num_examples: 1,
                    mean_train_loss: 0.0,
                },
                committed_at_ms: 0,
            },
            global: global.clone(),
            ledger: LedgerEntry {
                round,
                rho_charged: 0.0,
                epsilon_spent: 0.0,
                delta: 1e-5,
                accountant: vec![],
            },
            optimizer: None,
        };
        let start = Instant::now();
        store.commit_round(&commit).expect("commits");
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "sled commit of a round with a 4.2 MB checkpoint, flushed: median {:.1} ms over {REPEATS} rounds",
        times[times.len() / 2].as_secs_f64() * 1e3
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn time(mut run: impl FnMut()) -> Vec<Duration> {
    run(); // warm-up: page in the accumulator.
    let mut times: Vec<Duration> = (0..REPEATS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn report(what: &str, times: &[Duration], bytes: f64) {
    let median = times[times.len() / 2].as_secs_f64();
    let best = times[0].as_secs_f64();
    println!(
        "{what}: median {:.1} ms = {:.2} GB/s per core (best {:.2} GB/s), 1 thread, {REPEATS} runs",
        median * 1e3,
        bytes / median / 1e9,
        bytes / best / 1e9
    );
}

fn make_update(seed: u64) -> Update {
    Update {
        round: 1,
        num_examples: 100 + seed,
        delta: make_set(seed + 1, 0.01),
        train_loss: 0.5,
    }
}

/// Values from a xorshift stream scaled into [−scale, scale]; not for anything but filling.
fn make_set(seed: u64, scale: f32) -> ParameterSet {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    };
    let mut set = ParameterSet::new();
    for (name, shape) in LAYOUT {
        let shape = shape.to_vec();
        let len: usize = shape.iter().product();
        let values = (0..len).map(|_| next()).collect();
        set.push(name, shape, values, Scope::Shared)
            .expect("layout names are unique");
    }
    set
}
