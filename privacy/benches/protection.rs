//! Phase timings for n = 100 merchants and d = 1M parameters, in memory, no network:
//! a node's protection step (clip, quantise, opendp noise, mask), the aggregator's
//! unmasking with 0 % and 10 % dropouts, and plain f32 summation of the same updates.
//!
//! Run: `cargo bench -p hansa-privacy --bench protection` (env `HANSA_BENCH_DIM` and
//! `HANSA_BENCH_NODES` shrink it for a quick look; `HANSA_BENCH_GRID` sets the grid step,
//! default 1e-4, which with C = 1 gives 10^4 grid steps per clip norm;
//! `HANSA_BENCH_DEGREE` the neighbours per node, default n − 1, the complete graph).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hansa_privacy::clip::clip_in_place;
use hansa_privacy::noise::discrete_gaussian;
use hansa_privacy::protect::protect_for_secagg;
use hansa_privacy::quantise::{to_words, Quantiser};
use hansa_privacy::secagg::{neighbour_graph, SecAggNode, SecAggServer};
use hansa_protocol::messages::{DpMode, MaskedUpdate, PrivacySettings, SecAggSettings};
use hansa_protocol::MerchantId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    println!("{label:<52} {:>9.3} s", took.as_secs_f64());
    (out, took)
}

/// Nodes that have exchanged keys and shares and are ready to mask.
fn ready_nodes(
    n: usize,
    degree: usize,
    threshold: usize,
    words: usize,
) -> (SecAggServer, BTreeMap<MerchantId, SecAggNode>) {
    let cohort: Vec<MerchantId> = (0..n).map(|i| format!("merchant-{i:03}")).collect();
    let graph = neighbour_graph(&cohort, degree, 1);
    let mut server = SecAggServer::new(1, graph.clone(), threshold, words).expect("server");
    let mut nodes = BTreeMap::new();
    for m in &cohort {
        let settings = SecAggSettings {
            neighbours: graph[m].clone(),
            threshold: threshold as u32,
        };
        let (node, keys) = SecAggNode::new(m.clone(), 1, &settings).expect("node");
        server.receive_keys(m, keys).expect("keys");
        nodes.insert(m.clone(), node);
    }
    let rosters = server.key_rosters().expect("rosters");
    for (m, node) in nodes.iter_mut() {
        let shares = node.on_key_roster(rosters[m].clone()).expect("shares");
        server.receive_shares(m, shares).expect("receive shares");
    }
    let deliveries = server.share_deliveries().expect("deliveries");
    for (m, node) in nodes.iter_mut() {
        node.on_share_delivery(deliveries[m].clone())
            .expect("delivery");
    }
    (server, nodes)
}

fn unmask(
    mut server: SecAggServer,
    mut nodes: BTreeMap<MerchantId, SecAggNode>,
    masked: &BTreeMap<MerchantId, MaskedUpdate>,
) -> (Vec<u32>, Duration, Duration) {
    let start = Instant::now();
    for (m, update) in masked {
        server.receive_masked(m, update).expect("masked");
    }
    let summed = start.elapsed();
    let requests = server.unmask_requests().expect("requests");
    for (m, request) in &requests {
        let reply = nodes
            .get_mut(m)
            .expect("node")
            .on_unmask_request(request)
            .expect("reply");
        server
            .receive_unmask_reply(m, reply)
            .expect("receive reply");
    }
    let sum = server.finish().expect("finish");
    (sum.words, summed, start.elapsed() - summed)
}

fn main() {
    let n = env_usize("HANSA_BENCH_NODES", 100);
    let d = env_usize("HANSA_BENCH_DIM", 1_000_000);
    let degree = env_usize("HANSA_BENCH_DEGREE", n - 1);
    let threshold = degree.min(n - 1) / 2;
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("n = {n} merchants, d = {d} parameters, {threads} cores, {degree} neighbours, t = {threshold}");
    let grid_step = std::env::var("HANSA_BENCH_GRID")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1e-4);
    let settings = PrivacySettings {
        mode: DpMode::Distributed,
        clip_norm: 1.0,
        noise_multiplier: 1.0,
        grid_step,
        noise_shares: n as u32,
    };
    println!("clip norm 1, noise multiplier 1, grid step {grid_step}, {n} noise shares");

    println!("-- opendp discrete Gaussian sampler, 20 000 samples on {threads} cores, by scale");
    for scale in [10.0, 1_000.0, 100_000.0] {
        let start = Instant::now();
        discrete_gaussian(20_000, scale).expect("noise");
        let per_sample = start.elapsed().as_secs_f64() / 20_000.0;
        println!(
            "{:<52} {:>9.2} µs/sample",
            format!("scale {scale} grid steps"),
            per_sample * 1e6
        );
    }
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let updates: Vec<Vec<f32>> = (0..n)
        .map(|_| (0..d).map(|_| rng.gen_range(-1e-3f32..1e-3)).collect())
        .collect();

    println!("-- node protection step (one node)");
    let mut delta = updates[0].clone();
    timed("clip", || {
        clip_in_place(&mut delta, settings.clip_norm).expect("clip")
    });
    let quantiser = Quantiser::new(settings.grid_step, settings.clip_norm, d).expect("quantiser");
    timed("quantise (conditional randomised rounding)", || {
        quantiser.quantise(&delta, &mut rng).expect("q")
    });
    let share_sigma = hansa_privacy::accountant::share_sigma_steps(&settings);
    let (_, noise_time) = timed("noise: opendp discrete Gaussian, d samples", || {
        discrete_gaussian(d, share_sigma).expect("noise")
    });
    let (server, mut nodes) = timed("(setup, untimed in the goal) keys + shares for n", || {
        ready_nodes(n, degree, threshold, d + 1)
    })
    .0;
    let first = nodes.keys().next().expect("a node").clone();
    let (protected, protect_time) = timed("clip + quantise + noise (protect_for_secagg)", || {
        protect_for_secagg(updates[0].clone(), 1.0, &settings, None, n, &mut rng).expect("protect")
    });
    let (_, mask_time) = timed("mask: self + pairwise ChaCha12 streams", || {
        nodes
            .get_mut(&first)
            .expect("node")
            .mask(protected.words.clone())
            .expect("mask")
    });
    let total = protect_time + mask_time;
    println!(
        "{:<52} {:>9.3} s",
        "= protection step total (protect + mask)",
        total.as_secs_f64()
    );
    println!(
        "{:<52} {:>9.3} s  (measured alone: {:.0} % of the total)",
        "  of which opendp's sampler, d samples",
        noise_time.as_secs_f64(),
        100.0 * noise_time.as_secs_f64() / total.as_secs_f64()
    );
    drop(nodes);

    println!("-- aggregator");
    let words: Vec<Vec<u32>> = updates
        .iter()
        .map(|u| {
            let mut w = to_words(&quantiser.quantise(u, &mut rng).expect("q"));
            w.push(65_536);
            w
        })
        .collect();
    let (_, plain_time) = timed("plain FedAvg summation of n f32 updates", || {
        let mut sum = vec![0f32; d];
        for u in &updates {
            sum.iter_mut().zip(u).for_each(|(s, x)| *s += x);
        }
        sum
    });
    drop(server);

    for dropout_percent in [0usize, 10] {
        let (server, mut nodes) = ready_nodes(n, degree, threshold, d + 1);
        let dropped = n * dropout_percent / 100;
        let mut masked = BTreeMap::new();
        let masking = Instant::now();
        for (i, (m, node)) in nodes.iter_mut().enumerate() {
            if i >= dropped {
                masked.insert(m.clone(), node.mask(words[i].clone()).expect("mask"));
            }
        }
        println!(
            "{:<52} {:>9.3} s",
            format!("(setup) mask {} nodes", n - dropped),
            masking.elapsed().as_secs_f64()
        );
        let (sum, sum_time, unmask_time) = unmask(server, nodes, &masked);
        let mut expected = vec![0u32; d + 1];
        for w in &words[dropped..] {
            expected
                .iter_mut()
                .zip(w)
                .for_each(|(s, x)| *s = s.wrapping_add(*x));
        }
        assert_eq!(sum, expected, "unmasked sum must equal the plaintext sum");
        let total = sum_time + unmask_time;
        println!(
            "{:<52} {:>9.3} s",
            format!("{dropout_percent} % dropouts: sum masked vectors"),
            sum_time.as_secs_f64()
        );
        println!(
            "{:<52} {:>9.3} s",
            format!("{dropout_percent} % dropouts: remove masks"),
            unmask_time.as_secs_f64()
        );
        println!(
            "{:<52} {:>9.3} s  ({:.2}× plain summation)",
            format!("{dropout_percent} % dropouts: total"),
            total.as_secs_f64(),
            total.as_secs_f64() / plain_time.as_secs_f64()
        );
    }
}
