//! Clipping of a merchant's update to L2 norm C, the unit of client-level DP.

use crate::error::{PrivacyError, Result};
use crate::settings::positive;

/// What clipping did to one update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipOutcome {
    /// L2 norm of the update before clipping, in parameter units.
    pub norm_before: f64,
    /// Factor the update was multiplied by: min(1, C / norm); 1 when not clipped.
    pub scale: f64,
}

impl ClipOutcome {
    /// Whether the update fitted inside the clip norm (the bit adaptive clipping counts).
    pub fn within_norm(&self) -> bool {
        self.scale >= 1.0
    }
}

/// L2 norm of `values`, accumulated in f64. Errors on a non-finite value.
pub fn l2_norm(values: &[f32]) -> Result<f64> {
    let mut sum = 0.0f64;
    for (index, &v) in values.iter().enumerate() {
        if !v.is_finite() {
            return Err(PrivacyError::NonFinite {
                what: "update",
                index,
            });
        }
        sum += f64::from(v) * f64::from(v);
    }
    Ok(sum.sqrt())
}

/// Scales `values` in place so that their L2 norm is at most `clip_norm`.
///
/// The scale is computed in f64 and rounded down by a relative 1e-6 so that the f32
/// result cannot exceed C through rounding.
pub fn clip_in_place(values: &mut [f32], clip_norm: f64) -> Result<ClipOutcome> {
    let clip_norm = positive("privacy.clip_norm", clip_norm)?;
    let norm_before = l2_norm(values)?;
    if norm_before <= clip_norm {
        return Ok(ClipOutcome {
            norm_before,
            scale: 1.0,
        });
    }

    let scale = clip_norm / norm_before * (1.0 - 1e-6);
    for v in values.iter_mut() {
        *v = (f64::from(*v) * scale) as f32;
    }
    Ok(ClipOutcome { norm_before, scale })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_a_3_4_vector_to_norm_one() {
        let mut v = vec![3.0f32, 4.0];
        let out = clip_in_place(&mut v, 1.0).unwrap();
        assert_eq!(out.norm_before, 5.0);
        assert!(!out.within_norm());
        assert!(
            (v[0] - 0.6).abs() < 1e-5 && (v[1] - 0.8).abs() < 1e-5,
            "{v:?}"
        );
        assert!(l2_norm(&v).unwrap() <= 1.0);
    }

    #[test]
    fn leaves_a_short_vector_alone() {
        let mut v = vec![0.3f32, -0.4];
        let out = clip_in_place(&mut v, 1.0).unwrap();
        assert_eq!(out.scale, 1.0);
        assert!(out.within_norm());
        assert_eq!(v, vec![0.3, -0.4]);
    }

    #[test]
    fn refuses_nan_in_update_and_bad_clip_norm() {
        let mut v = vec![1.0f32, f32::NAN];
        let err = clip_in_place(&mut v, 1.0).unwrap_err().to_string();
        assert!(err.contains("index 1"), "{err}");
        let err = clip_in_place(&mut [1.0], f64::NAN).unwrap_err().to_string();
        assert!(err.contains("privacy.clip_norm"), "{err}");
    }

    #[test]
    fn clipped_norm_never_exceeds_c_for_large_vectors() {
        let mut v: Vec<f32> = (0..10_000).map(|i| ((i % 7) as f32 - 3.0) * 0.37).collect();
        clip_in_place(&mut v, 0.1).unwrap();
        assert!(l2_norm(&v).unwrap() <= 0.1);
    }
}
