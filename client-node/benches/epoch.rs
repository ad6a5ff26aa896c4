//! Seconds per training epoch: MF on MovieLens 100K u1.base (80k ratings, dim 32, batch
//! 1024) through the trainer and as a bare candle loop, and the fraud MLP on the 80 %
//! training part of the card-fraud subsample; with 1 and 2 CPU threads.
//!
//! `cargo bench -p hansa-node --bench epoch` (reads `HANSA_DATA_DIR`). The parent process
//! reruns itself once per thread count with `RAYON_NUM_THREADS` set, which candle reads.

use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use hansa_node::data::creditcard::read_creditcard;
use hansa_node::data::movielens::load_100k_split;
use hansa_node::data::split::stratified_split;
use hansa_node::data::{data_dir, RatingsDataset};
use hansa_node::learner::Learner;
use hansa_node::model::{FraudConfig, FraudMlp, Recommender, RecommenderConfig};
use hansa_node::trainer::TrainConfig;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const REPEATS: usize = 5;
const CHILD_ENV: &str = "HANSA_BENCH_THREADS_CHILD";

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The same model and loss as the trainer's explicit MF, written as a plain candle loop.
fn bare_mf_epoch(
    train: &RatingsDataset,
    dim: usize,
    batch: usize,
    seed: u64,
) -> candle_core::Result<f64> {
    let device = Device::Cpu;
    let users = train.vocab.users.len();
    let items = train.num_items();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut init =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-0.17f32..0.17)).collect() };
    let p = Var::from_tensor(&Tensor::from_vec(init(users * dim), (users, dim), &device)?)?;
    let q = Var::from_tensor(&Tensor::from_vec(init(items * dim), (items, dim), &device)?)?;
    let bu = Var::zeros(users, candle_core::DType::F32, &device)?;
    let bi = Var::zeros(items, candle_core::DType::F32, &device)?;
    let g = Var::from_tensor(&Tensor::new(&[train.mean_value() as f32], &device)?)?;
    let params = ParamsAdamW {
        lr: 0.005,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut adam = AdamW::new(
        vec![g.clone(), bi.clone(), q.clone(), bu.clone(), p.clone()],
        params,
    )?;
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rng);

    let started = Instant::now();
    for chunk in order.chunks(batch) {
        let n = chunk.len();
        let u = Tensor::from_vec(
            chunk
                .iter()
                .map(|&k| train.records[k].user)
                .collect::<Vec<_>>(),
            n,
            &device,
        )?;
        let i = Tensor::from_vec(
            chunk
                .iter()
                .map(|&k| train.records[k].item)
                .collect::<Vec<_>>(),
            n,
            &device,
        )?;
        let r = Tensor::from_vec(
            chunk
                .iter()
                .map(|&k| train.records[k].value)
                .collect::<Vec<_>>(),
            n,
            &device,
        )?;
        let (pu, qi) = (p.index_select(&u, 0)?, q.index_select(&i, 0)?);
        let (bu_b, bi_b) = (bu.index_select(&u, 0)?, bi.index_select(&i, 0)?);
        let pred = ((&pu * &qi)?.sum(1)? + &bu_b + &bi_b)?.broadcast_add(g.as_tensor())?;
        let mse = (pred - r)?.sqr()?.mean_all()?;
        let reg = (((pu.sqr()?.sum_all()? + qi.sqr()?.sum_all()?)? + bu_b.sqr()?.sum_all()?)?
            + bi_b.sqr()?.sum_all()?)?;
        let loss = (mse + reg.affine(0.12 / n as f64, 0.0)?)?;
        adam.backward_step(&loss)?;
        let _ = loss.to_scalar::<f32>()?;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn measure() -> anyhow::Result<()> {
    let threads = hansa_node::device::cpu_threads();
    let (train, _) = load_100k_split(&data_dir().join("movielens-100k"), "u1")?;
    let one_epoch = TrainConfig {
        epochs: 1,
        batch_size: 1024,
        learning_rate: 0.005,
        weight_decay: 0.12,
        proximal_mu: 0.0,
        seed: 1,
    };

    let mut trainer = Vec::new();
    let mut bare = Vec::new();
    for rep in 0..REPEATS {
        let mut model = Recommender::new(&train, RecommenderConfig::default())?;
        let started = Instant::now();
        model.train(
            &TrainConfig {
                seed: rep as u64,
                ..one_epoch.clone()
            },
            None,
        )?;
        trainer.push(started.elapsed().as_secs_f64());
        bare.push(bare_mf_epoch(&train, 32, 1024, rep as u64)?);
    }

    let path = data_dir()
        .join("creditcard-fraud-ulb")
        .join("creditcard_sample.csv.gz");
    let (fraud_train, _) = stratified_split(&read_creditcard(&path)?, 0.2, 7)?;
    let mut fraud = Vec::new();
    for rep in 0..REPEATS {
        let mut mlp = FraudMlp::new(&fraud_train, FraudConfig::default())?;
        let started = Instant::now();
        mlp.train(
            &TrainConfig {
                epochs: 1,
                batch_size: 256,
                learning_rate: 0.002,
                weight_decay: 1e-4,
                proximal_mu: 0.0,
                seed: rep as u64,
            },
            None,
        )?;
        fraud.push(started.elapsed().as_secs_f64());
    }

    let (t, b) = (median(trainer), median(bare));
    println!(
        "threads {threads}: mf epoch (80k, dim 32, batch 1024) trainer {t:.3} s, bare candle {b:.3} s, ratio {:.2}; \
         fraud mlp epoch ({} rows, batch 256) {:.3} s  [median of {REPEATS}]",
        t / b,
        fraud_train.len(),
        median(fraud)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os(CHILD_ENV).is_some() {
        return measure();
    }
    let exe = std::env::current_exe()?;
    for threads in [1, 2] {
        let status = Command::new(&exe)
            .env(CHILD_ENV, "1")
            .env("RAYON_NUM_THREADS", threads.to_string())
            .status()?;
        anyhow::ensure!(
            status.success(),
            "benchmark with {threads} threads failed: {status}"
        );
    }
    Ok(())
}
