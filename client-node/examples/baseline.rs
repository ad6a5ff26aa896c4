//! Prints a centralised baseline's metrics on a real data set.
//!
//! `cargo run -p hansa-node --release --example baseline -- --dataset movielens-100k --task recommender`

use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use hansa_node::baseline;
use hansa_node::data::{bundled_online_retail, data_dir};
use hansa_protocol::messages::Metric;

#[derive(Parser)]
struct Args {
    /// movielens-100k, online-retail or creditcard.
    #[arg(long)]
    dataset: String,
    /// recommender (MovieLens, Online Retail) or fraud (creditcard).
    #[arg(long)]
    task: String,
    /// Override the tuned number of epochs.
    #[arg(long)]
    epochs: Option<u32>,
    /// Override the tuned learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Override the tuned L2 penalty.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Override the tuned embedding dimension (recommenders).
    #[arg(long)]
    dim: Option<usize>,
    /// Override the tuned batch size.
    #[arg(long)]
    batch: Option<usize>,
}

fn print(label: &str, metrics: &[Metric]) {
    let cells: Vec<String> = metrics
        .iter()
        .map(|m| format!("{} {:.4}", m.name, m.value))
        .collect();
    println!("{label:<14} {}", cells.join("  "));
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    match (args.dataset.as_str(), args.task.as_str()) {
        ("movielens-100k", "recommender") | ("online-retail", "recommender") => {
            let movielens = args.dataset == "movielens-100k";
            let mut s = if movielens {
                baseline::movielens_settings()
            } else {
                baseline::online_retail_settings()
            };
            s.train.epochs = args.epochs.unwrap_or(s.train.epochs);
            s.train.learning_rate = args.lr.unwrap_or(s.train.learning_rate);
            s.train.weight_decay = args.weight_decay.unwrap_or(s.train.weight_decay);
            s.train.batch_size = args.batch.unwrap_or(s.train.batch_size);
            s.model.dim = args.dim.unwrap_or(s.model.dim);
            if movielens {
                let dir = data_dir().join("movielens-100k");
                let m = baseline::movielens(&dir, "u1", &s)
                    .with_context(|| format!("MovieLens 100K in {}", dir.display()))?;
                print("mf (u1)", &m);
            } else {
                let r = baseline::online_retail(&bundled_online_retail(), &s)?;
                println!("{} customers evaluated", r.cases);
                print("bpr-mf", &r.model);
                print("most-popular", &r.most_popular);
            }
        }
        ("creditcard", "fraud") => {
            let (model, mut train) = baseline::creditcard_settings();
            train.epochs = args.epochs.unwrap_or(train.epochs);
            train.learning_rate = args.lr.unwrap_or(train.learning_rate);
            train.weight_decay = args.weight_decay.unwrap_or(train.weight_decay);
            train.batch_size = args.batch.unwrap_or(train.batch_size);
            let path = data_dir()
                .join("creditcard-fraud-ulb")
                .join("creditcard_sample.csv.gz");
            print("mlp", &baseline::creditcard(&path, &model, &train)?);
        }
        (d, t) => bail!("no baseline for dataset {d:?} with task {t:?}"),
    }
    println!("took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
