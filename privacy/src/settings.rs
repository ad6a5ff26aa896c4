//! Validation of every numeric privacy and secure-aggregation setting, by name.

use hansa_protocol::messages::{DpMode, PrivacySettings, SecAggSettings};

use crate::error::{PrivacyError, Result};

/// Returns `value` when it is finite and greater than zero, else an error naming the
/// setting. Written as `value > 0.0 && value.is_finite()` so that NaN is refused too
/// (NaN fails every comparison, so a `value <= 0.0` check would let it through).
pub fn positive(name: &'static str, value: f64) -> Result<f64> {
    if value > 0.0 && value.is_finite() {
        Ok(value)
    } else {
        Err(PrivacyError::NotPositive { name, value })
    }
}

/// Returns `value` when it lies strictly between 0 and 1 (a probability such as δ).
pub fn open_unit(name: &'static str, value: f64) -> Result<f64> {
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(PrivacyError::OutOfRange {
            name,
            detail: format!("must lie strictly between 0 and 1, got {value}"),
        })
    }
}

/// Checks a round's privacy settings: the clip norm always; the noise multiplier when
/// noise is added, and the grid step noise lands on; the number of noise shares in
/// `distributed` mode.
pub fn validate_privacy(settings: &PrivacySettings) -> Result<()> {
    positive("privacy.clip_norm", settings.clip_norm)?;
    if settings.mode != DpMode::Off {
        positive("privacy.noise_multiplier", settings.noise_multiplier)?;
        positive("privacy.grid_step", settings.grid_step)?;
    }
    if settings.mode == DpMode::Distributed && settings.noise_shares == 0 {
        return Err(PrivacyError::OutOfRange {
            name: "privacy.noise_shares",
            detail: "must be at least 1 in distributed mode, got 0".into(),
        });
    }
    Ok(())
}

/// Checks a node's secure-aggregation settings: the threshold t must satisfy
/// 1 ≤ t ≤ number of neighbours (shares go to neighbours only) and at most 255
/// (Shamir sharing over GF(256) has 255 distinct evaluation points).
pub fn validate_secagg(settings: &SecAggSettings) -> Result<()> {
    let neighbours = settings.neighbours.len();
    let threshold = settings.threshold as usize;
    if neighbours > 255 {
        return Err(PrivacyError::OutOfRange {
            name: "secure_aggregation.neighbours",
            detail: format!("at most 255 neighbours are supported, got {neighbours}"),
        });
    }
    if threshold == 0 || threshold > neighbours {
        return Err(PrivacyError::OutOfRange {
            name: "secure_aggregation.threshold",
            detail: format!("must lie in 1..={neighbours} (the neighbour count), got {threshold}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: DpMode) -> PrivacySettings {
        PrivacySettings {
            mode,
            clip_norm: 1.0,
            noise_multiplier: 1.1,
            grid_step: 1e-4,
            noise_shares: 5,
        }
    }

    #[test]
    fn refuses_nan_infinite_zero_and_negative_by_name() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -1.0] {
            let mut s = settings(DpMode::Distributed);
            s.clip_norm = bad;
            let err = validate_privacy(&s).unwrap_err().to_string();
            assert!(err.contains("privacy.clip_norm"), "{err}");

            let mut s = settings(DpMode::Central);
            s.noise_multiplier = bad;
            let err = validate_privacy(&s).unwrap_err().to_string();
            assert!(err.contains("privacy.noise_multiplier"), "{err}");

            let mut s = settings(DpMode::Distributed);
            s.grid_step = bad;
            let err = validate_privacy(&s).unwrap_err().to_string();
            assert!(err.contains("privacy.grid_step"), "{err}");
        }
    }

    #[test]
    fn accepts_good_settings_and_ignores_noise_when_off() {
        validate_privacy(&settings(DpMode::Distributed)).unwrap();
        let mut off = settings(DpMode::Off);
        off.noise_multiplier = 0.0;
        off.grid_step = f64::NAN;
        validate_privacy(&off).unwrap();
    }

    #[test]
    fn refuses_zero_noise_shares_and_bad_threshold() {
        let mut s = settings(DpMode::Distributed);
        s.noise_shares = 0;
        assert!(validate_privacy(&s)
            .unwrap_err()
            .to_string()
            .contains("noise_shares"));

        let sa = SecAggSettings {
            neighbours: vec!["a".into(), "b".into()],
            threshold: 3,
        };
        assert!(validate_secagg(&sa)
            .unwrap_err()
            .to_string()
            .contains("1..=2"));
        validate_secagg(&SecAggSettings { threshold: 2, ..sa }).unwrap();
    }

    #[test]
    fn delta_must_be_a_probability() {
        assert!(open_unit("budget.delta", 1e-5).is_ok());
        for bad in [0.0, 1.0, f64::NAN, -0.1] {
            assert!(open_unit("budget.delta", bad).is_err());
        }
    }
}
