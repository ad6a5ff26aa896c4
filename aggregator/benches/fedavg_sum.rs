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
