//! Validation of a parsed scenario: every check names the field and the value.

use std::fmt::Display;

use super::{
    Attack, DatasetKind, DelaySpec, DirichletOver, DpMode, Feedback, HeldOutSpec, PartitionSpec,
    Scenario, ScenarioError, StrategySpec, TaskKind,
};

/// Most neighbours a node may have: Shamir sharing over GF(256) has 255 points.
pub const MAX_NEIGHBOURS: u32 = 255;

fn invalid(field: &str, value: impl Display, reason: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// `value` finite and > 0. Written so that NaN fails too.
fn positive(field: &str, value: f64) -> Result<(), ScenarioError> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(invalid(
            field,
            value,
            "must be a finite number greater than 0",
        ))
    }
}

/// `value` finite and ≥ 0.
fn non_negative(field: &str, value: f64) -> Result<(), ScenarioError> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(invalid(field, value, "must be a finite number ≥ 0"))
    }
}

/// `value` a probability in [0, 1].
fn probability(field: &str, value: f64) -> Result<(), ScenarioError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, value, "must be a probability in [0, 1]"))
    }
}

/// `value` in [low, high) (a decay rate or a trim fraction).
fn half_open(field: &str, value: f64, low: f64, high: f64) -> Result<(), ScenarioError> {
    if value >= low && value < high {
        Ok(())
    } else {
        Err(invalid(
            field,
            value,
            format!("must lie in [{low}, {high})"),
        ))
    }
}

fn at_least_one(field: &str, value: u64) -> Result<(), ScenarioError> {
    if value >= 1 {
        Ok(())
    } else {
        Err(invalid(field, value, "must be at least 1"))
    }
}

impl Scenario {
    /// Checks every field that can be checked before the data is loaded. The checks
    /// that need the number of merchants of a `natural` partition without `count` run
    /// again in [`Scenario::validate_merchant_count`] once the partition is made.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.name.trim().is_empty() {
            return Err(invalid("name", "\"\"", "must not be empty"));
        }
        at_least_one("rounds", self.rounds)?;
        if self.rounds > u64::from(u32::MAX) {
            // The fault plan gives each (round, merchant) its own 32-bit-round stream.
            return Err(invalid("rounds", self.rounds, "must be at most 4294967295"));
        }
        self.validate_task()?;
        self.validate_merchants()?;
        self.validate_training()?;
        self.validate_privacy()?;
        self.validate_faults()?;
        if let Some(count) = self.merchants.count {
            self.validate_merchant_count(count)?;
        }
        Ok(())
    }

    fn validate_task(&self) -> Result<(), ScenarioError> {
        let fits = match self.task.kind {
            TaskKind::Recommender => self.dataset.kind != DatasetKind::Creditcard,
            TaskKind::Fraud => self.dataset.kind == DatasetKind::Creditcard,
        };
        if !fits {
            return Err(invalid(
                "task.kind",
                format!("{:?}", self.task.kind).to_lowercase(),
                format!(
                    "does not fit dataset.kind = {} (recommender: online-retail or \
                     movielens-100k; fraud: creditcard)",
                    self.dataset.kind.name()
                ),
            ));
        }
        if self.dataset.kind == DatasetKind::OnlineRetail
            && self.task.feedback == Feedback::Explicit
        {
            return Err(invalid(
                "task.feedback",
                "explicit",
                "online-retail has purchases, not ratings: use feedback = \"implicit\"",
            ));
        }
        Ok(())
    }

    fn validate_merchants(&self) -> Result<(), ScenarioError> {
        let m = &self.merchants;
        match &m.partition {
            PartitionSpec::Natural { attribute, .. } => {
                if attribute.trim().is_empty() {
                    return Err(invalid(
                        "merchants.partition.attribute",
                        "\"\"",
                        "must name an attribute",
                    ));
                }
            }
            PartitionSpec::Iid {} => {}
            PartitionSpec::Dirichlet {
                alpha,
                over,
                min_examples,
            } => {
                positive("merchants.partition.alpha", *alpha)?;
                at_least_one("merchants.partition.min_examples", *min_examples)?;
                let implicit = self.task.kind == TaskKind::Recommender
                    && self.task.feedback == Feedback::Implicit;
                if *over == DirichletOver::Labels && implicit {
                    return Err(invalid(
                        "merchants.partition.over",
                        "labels",
                        "implicit feedback has a single label: use over = \"items\"",
                    ));
                }
                if *over == DirichletOver::Items && self.task.kind == TaskKind::Fraud {
                    return Err(invalid(
                        "merchants.partition.over",
                        "items",
                        "card transactions have no items: use over = \"labels\"",
                    ));
                }
            }
            PartitionSpec::ByAttribute { field } => {
                if field.trim().is_empty() {
                    return Err(invalid(
                        "merchants.partition.field",
                        "\"\"",
                        "must name an attribute",
                    ));
                }
            }
        }
        let needs_count = !matches!(m.partition, PartitionSpec::Natural { .. });
        match m.count {
            None if needs_count => Err(invalid(
                "merchants.count",
                "(missing)",
                format!(
                    "is required for partition kind = \"{}\"",
                    m.partition.name()
                ),
            )),
            Some(0) => Err(invalid("merchants.count", 0, "must be at least 1")),
            _ => Ok(()),
        }?;
        if let Some(cohort) = m.cohort_size {
            at_least_one("merchants.cohort_size", cohort.into())?;
        }
        if let Some(min) = m.min_cohort {
            at_least_one("merchants.min_cohort", min.into())?;
            if let Some(cohort) = m.cohort_size.filter(|&c| min > c) {
                return Err(invalid(
                    "merchants.min_cohort",
                    min,
                    format!("exceeds merchants.cohort_size = {cohort}"),
                ));
            }
        }
        Ok(())
    }

    fn validate_training(&self) -> Result<(), ScenarioError> {
        let t = &self.training;
        at_least_one("training.local_epochs", t.local_epochs.into())?;
        positive("training.learning_rate", t.learning_rate)?;
        at_least_one("training.batch_size", t.batch_size.into())?;
        non_negative("training.weight_decay", t.weight_decay)?;
        at_least_one("training.update_deadline_ms", t.update_deadline_ms)?;
        at_least_one("model.embedding_dim", self.model.embedding_dim.into())?;
        if let Some(i) = self.model.hidden.iter().position(|&w| w == 0) {
            return Err(invalid(
                &format!("model.hidden[{i}]"),
                0,
                "a layer needs at least 1 unit",
            ));
        }
        if let Some(w) = self.model.fraud_weight {
            positive("model.fraud_weight", w)?;
        }
        if self.evaluation.held_out == HeldOutSpec::Pooled && self.task.kind != TaskKind::Fraud {
            return Err(invalid(
                "evaluation.held_out",
                "pooled",
                "a pooled held-out set is built for the fraud task only; recommenders score \
                 each merchant's own customers (use \"per-merchant\")",
            ));
        }
        match &self.strategy {
            StrategySpec::Fedavg {
                server_learning_rate,
            } => positive("strategy.server_learning_rate", *server_learning_rate),
            StrategySpec::Fedprox {
                mu,
                server_learning_rate,
            } => {
                non_negative("strategy.mu", *mu)?;
                positive("strategy.server_learning_rate", *server_learning_rate)
            }
            StrategySpec::Fedadam(a) | StrategySpec::Fedyogi(a) => {
                positive("strategy.server_learning_rate", a.server_learning_rate)?;
                half_open("strategy.beta1", a.beta1, 0.0, 1.0)?;
                half_open("strategy.beta2", a.beta2, 0.0, 1.0)?;
                positive("strategy.tau", a.tau)
            }
            StrategySpec::Median {} => Ok(()),
            StrategySpec::TrimmedMean { trim_fraction } => {
                half_open("strategy.trim_fraction", *trim_fraction, 0.0, 0.5)
            }
        }
    }

    fn validate_privacy(&self) -> Result<(), ScenarioError> {
        let p = &self.privacy;
        positive("privacy.clip_norm", p.clip_norm)?;
        if p.mode != DpMode::Off {
            positive("privacy.noise_multiplier", p.noise_multiplier)?;
        }
        if !(p.delta > 0.0 && p.delta < 1.0) {
            return Err(invalid(
                "privacy.delta",
                p.delta,
                "must lie strictly between 0 and 1",
            ));
        }
        if let Some(eps) = p.max_epsilon {
            positive("privacy.max_epsilon", eps)?;
        }
        for (i, &eps) in p.utility_epsilons.iter().enumerate() {
            positive(&format!("privacy.utility_epsilons[{i}]"), eps)?;
        }
        if !p.utility_epsilons.is_empty() && p.mode == DpMode::Off {
            return Err(invalid(
                "privacy.utility_epsilons",
                format!("{:?}", p.utility_epsilons),
                "needs privacy.mode other than \"off\": with no noise there is no ε to \
                 calibrate the noise multiplier to",
            ));
        }
        let secagg = &p.secure_aggregation;
        if p.mode == DpMode::Distributed && !secagg.enabled {
            return Err(invalid(
                "privacy.mode",
                "distributed",
                "needs privacy.secure_aggregation.enabled = true (the noise shares only \
                 add up to the full noise inside a masked sum)",
            ));
        }
        if secagg.enabled
            && matches!(
                self.strategy,
                StrategySpec::Median {} | StrategySpec::TrimmedMean { .. }
            )
        {
            return Err(invalid(
                "strategy.kind",
                self.strategy.name(),
                "needs every update in the clear; secure aggregation reveals only their sum",
            ));
        }
        if let Some(k) = secagg.neighbours {
            if !(1..=MAX_NEIGHBOURS).contains(&k) {
                return Err(invalid(
                    "privacy.secure_aggregation.neighbours",
                    k,
                    format!("must lie in 1..={MAX_NEIGHBOURS}"),
                ));
            }
        }
        if let Some(t) = secagg.threshold {
            let k = secagg.neighbours.unwrap_or(MAX_NEIGHBOURS);
            if t == 0 || t > k {
                return Err(invalid(
                    "privacy.secure_aggregation.threshold",
                    t,
                    format!("must lie in 1..={k} (privacy.secure_aggregation.neighbours)"),
                ));
            }
        }
        Ok(())
    }

    fn validate_faults(&self) -> Result<(), ScenarioError> {
        let f = &self.faults;
        for (name, p) in f.dropout.by_phase() {
            probability(&format!("faults.dropout.{name}"), p)?;
            if name != "update" && p > 0.0 && !self.privacy.secure_aggregation.enabled {
                return Err(invalid(
                    &format!("faults.dropout.{name}"),
                    p,
                    "this phase exists only with privacy.secure_aggregation.enabled = true",
                ));
            }
        }
        probability("faults.stragglers.probability", f.stragglers.probability)?;
        match f.stragglers.delay {
            DelaySpec::Fixed { delay_ms } => {
                non_negative("faults.stragglers.delay.delay_ms", delay_ms)?
            }
            DelaySpec::Uniform { min_ms, max_ms } => {
                non_negative("faults.stragglers.delay.min_ms", min_ms)?;
                non_negative("faults.stragglers.delay.max_ms", max_ms)?;
                if max_ms < min_ms {
                    return Err(invalid(
                        "faults.stragglers.delay.max_ms",
                        max_ms,
                        format!("must be ≥ min_ms = {min_ms}"),
                    ));
                }
            }
            DelaySpec::Exponential { mean_ms } => {
                positive("faults.stragglers.delay.mean_ms", mean_ms)?
            }
            DelaySpec::LogNormal { median_ms, sigma } => {
                positive("faults.stragglers.delay.median_ms", median_ms)?;
                non_negative("faults.stragglers.delay.sigma", sigma)?;
            }
        }
        if let Some(poison) = &f.poisoned {
            match (&poison.count, &poison.merchants) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(invalid(
                        "faults.poisoned",
                        format!(
                            "count = {:?}, merchants = {:?}",
                            poison.count, poison.merchants
                        ),
                        "give exactly one of count or merchants",
                    ))
                }
                _ => {}
            }
            if let Some(list) = &poison.merchants {
                let mut sorted = list.clone();
                sorted.sort_unstable();
                if let Some(pair) = sorted.windows(2).find(|w| w[0] == w[1]) {
                    return Err(invalid(
                        "faults.poisoned.merchants",
                        pair[0],
                        "is listed twice",
                    ));
                }
            }
            at_least_one("faults.poisoned.from_round", poison.from_round)?;
            if let Attack::ScaledUpdate { factor } = poison.attack {
                if !(factor.is_finite() && factor != 0.0) {
                    return Err(invalid(
                        "faults.poisoned.attack.factor",
                        factor,
                        "must be finite and not 0",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The checks that need the number of merchants: cohort size, secure-aggregation
    /// neighbours and poisoned merchants. Run by [`Scenario::validate`] when `count` is
    /// given, and by the run once a `natural` partition has fixed the number.
    pub fn validate_merchant_count(&self, merchants: u32) -> Result<(), ScenarioError> {
        let cohort = self.merchants.cohort_size.unwrap_or(merchants);
        if cohort > merchants {
            return Err(invalid(
                "merchants.cohort_size",
                cohort,
                format!("exceeds the number of merchants ({merchants})"),
            ));
        }
        let secagg = &self.privacy.secure_aggregation;
        if secagg.enabled {
            if cohort < 2 {
                return Err(invalid(
                    "merchants.cohort_size",
                    cohort,
                    "secure aggregation needs a cohort of at least 2",
                ));
            }
            let k = secagg.neighbours_for(cohort);
            if k > cohort - 1 {
                return Err(invalid(
                    "privacy.secure_aggregation.neighbours",
                    k,
                    format!("exceeds cohort size − 1 = {}", cohort - 1),
                ));
            }
            let t = secagg.threshold_for(k);
            if t > k {
                return Err(invalid(
                    "privacy.secure_aggregation.threshold",
                    t,
                    format!("exceeds privacy.secure_aggregation.neighbours = {k}"),
                ));
            }
        }
        if let Some(poison) = &self.faults.poisoned {
            if let Some(count) = poison.count.filter(|&c| c > merchants) {
                return Err(invalid(
                    "faults.poisoned.count",
                    count,
                    format!("exceeds the number of merchants ({merchants})"),
                ));
            }
            if let Some(&bad) = poison.merchants.iter().flatten().find(|&&i| i >= merchants) {
                return Err(invalid(
                    "faults.poisoned.merchants",
                    bad,
                    format!("is not a merchant index (0..{merchants})"),
                ));
            }
        }
        Ok(())
    }
}
