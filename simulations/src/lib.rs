//! Hansa's simulator: scenario files, partitions of real data into merchants, fault
//! plans, progress display and the business-value report of a simulated federation.
//!
//! ```
//! use hansa_sim::faults::FaultPlan;
//! use hansa_sim::partition::{split, PartitionInput};
//! use hansa_sim::scenario::Scenario;
//!
//! let scenario = Scenario::from_toml_str(r#"
//!     name = "tiny"
//!     rounds = 3
//!     dataset = { kind = "creditcard" }
//!     task = { kind = "fraud" }
//!     merchants = { count = 3, partition = { kind = "dirichlet", alpha = 0.5 } }
//!     faults = { dropout = { update = 0.2 } }
//! "#, "inline", &[]).unwrap();
//!
//! // One label per example, as the data loader would give them.
//! let labels: Vec<u64> = (0..300).map(|i| u64::from(i % 10 == 0)).collect();
//! let input = PartitionInput {
//!     examples: labels.len(),
//!     labels: Some(&labels),
//!     ..Default::default()
//! };
//! let merchants = &scenario.merchants;
//! let partition = split(&merchants.partition, merchants.count, &input, scenario.seed).unwrap();
//! assert_eq!(partition.sizes().iter().sum::<usize>(), 300);
//!
//! let plan = FaultPlan::new(&scenario.faults, 3, false, scenario.seed).unwrap();
//! let round_1: Vec<_> = (0..3).map(|m| plan.for_merchant(1, m).drop).collect();
//! assert_eq!(round_1.len(), 3);
//! ```
#![warn(missing_docs)]

pub mod demo;
pub mod faults;
pub mod partition;
pub mod progress;
pub mod report;
pub mod run;
pub mod scenario;
